//! The ES256 and ES384 checks against the Wycheproof vectors, against ring on the same
//! signatures, and their tables' multiplication against the curve crates' own.

use super::super::wycheproof_verdicts::expect_verdicts;
use super::*;
use ring::rand::SystemRandom;
use ring::signature::{
    self as sig, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair,
};

/// n - d, for small d.
fn order_minus<C: PrimeCurveParams>(d: u64) -> Scalar<C> {
    -Scalar::<C>::from(d)
}

/// Scalars where digit handling could go wrong: zero, small ones around a window's edges,
/// powers of two across the limbs, the largest, and a spread of others.
fn edge_scalars<C: PrimeCurveParams>() -> Vec<Scalar<C>> {
    let mut out: Vec<Scalar<C>> = [0u64, 1, 2, 31, 32, 33, 63, 64, 65, 2047, 2048, 4095]
        .into_iter()
        .map(Scalar::<C>::from)
        .collect();
    let bits = 8 * FieldBytes::<C>::default().len();
    for bit in [
        6, 63, 64, 127, 128, 191, 192, 251, 252, 255, 256, 320, 377, 378, 383,
    ] {
        if bit < bits - 1 {
            let mut power = Scalar::<C>::ONE;
            for _ in 0..bit {
                power = power.double();
            }
            out.push(power);
        }
    }
    for d in 1..=3 {
        out.push(order_minus::<C>(d));
    }
    // Bytes of all digits 32 (the largest positive) or alternating signs, where below n.
    for byte in [0x82u8, 0x7e, 0x41] {
        let mut repr = FieldBytes::<C>::default();
        repr.iter_mut().for_each(|b| *b = byte);
        if let Some(k) = Option::<Scalar<C>>::from(Scalar::<C>::from_repr(repr)) {
            out.push(k);
        }
    }
    let mut x = Scalar::<C>::from(0x1234_5678_9abc_def1u64);
    for _ in 0..40 {
        x = x * x + Scalar::<C>::from(7u64);
        out.push(x);
    }
    out
}

fn digits_add_back_up<C: PrimeCurveParams>() {
    let radix = Scalar::<C>::from(1u64 << WINDOW);
    for k in edge_scalars::<C>() {
        let (digits, count) = signed_digits::<C>(&k);
        assert_eq!(count, digits_of::<C>());
        let mut sum = Scalar::<C>::ZERO;
        for d in digits[..count].iter().rev() {
            let magnitude = Scalar::<C>::from(u64::from(d.unsigned_abs()));
            sum = sum * radix + if *d < 0 { -magnitude } else { magnitude };
            assert!((-32..=32).contains(d), "digit {d} out of range");
        }
        assert_eq!(sum, k);
    }
}

#[test]
fn signed_digits_add_back_up_to_the_scalar() {
    digits_add_back_up::<NistP256>();
    digits_add_back_up::<NistP384>();
    assert_eq!(digits_of::<NistP256>(), 43);
    assert_eq!(digits_of::<NistP384>(), MAX_DIGITS);
}

fn tables_multiply<C: EcdsaCurve>() {
    let q = ProjectivePoint::<C>::GENERATOR * Scalar::<C>::from(0xdead_beef_u64);
    for (point, table) in [
        (ProjectivePoint::<C>::GENERATOR, C::generator()),
        (q, &Table::new(q)),
    ] {
        for k in edge_scalars::<C>() {
            let mut sum = ProjectivePoint::<C>::IDENTITY;
            table.add_multiple(&mut sum, &k).unwrap();
            assert_eq!(sum, point * k, "k = {:?}", k.to_repr());
        }
    }
}

#[test]
fn tables_multiply_as_the_curve_crates_do() {
    tables_multiply::<NistP256>();
    tables_multiply::<NistP384>();
}

fn wycheproof_set<C: EcdsaCurve>(name: wycheproof::ecdsa::TestName) {
    let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
    let verdicts = set.test_groups.into_iter().flat_map(|group| {
        let key = PublicKey::<C>::new(&group.key.key);
        group.tests.into_iter().map(move |t| {
            let ok = key.as_ref().is_some_and(|k| k.verify(&t.msg, &t.sig));
            (ok, t.result, t.tc_id)
        })
    });
    let (valid, invalid) = expect_verdicts(&format!("{name:?}"), verdicts);
    assert!(
        valid > 100 && invalid > 50,
        "{name:?}: {valid} valid, {invalid} invalid"
    );
}

#[test]
fn every_wycheproof_vector_is_decided_as_expected() {
    use wycheproof::ecdsa::TestName;
    wycheproof_set::<NistP256>(TestName::EcdsaSecp256r1Sha256P1363);
    wycheproof_set::<NistP384>(TestName::EcdsaSecp384r1Sha384P1363);
}

fn agrees_with_ring<C: EcdsaCurve>(
    signing: &'static EcdsaSigningAlgorithm,
    verifying: &'static EcdsaVerificationAlgorithm,
) {
    let rng = SystemRandom::new();
    let half = FieldBytes::<C>::default().len();
    for round in 0..4 {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let ours = PublicKey::<C>::new(&public).unwrap();
        let ring = sig::UnparsedPublicKey::new(verifying, &public);
        for i in 0..6 {
            let message = format!("round {round} message {i}").into_bytes();
            let good = pair.sign(&rng, &message).unwrap().as_ref().to_vec();
            let mut candidates = vec![good.clone()];
            for bit in [
                0,
                7,
                100,
                8 * half - 1,
                8 * half,
                8 * half + 44,
                16 * half - 1,
            ] {
                let mut c = good.clone();
                c[bit / 8] ^= 1 << (bit % 8);
                candidates.push(c);
            }
            let (r, s) = good.split_at(half);
            let order = {
                // n itself, as bytes: n - 1 plus one, carried by hand.
                let mut bytes = order_minus::<C>(1).to_repr().to_vec();
                for b in bytes.iter_mut().rev() {
                    let (v, carry) = b.overflowing_add(1);
                    *b = v;
                    if !carry {
                        break;
                    }
                }
                bytes
            };
            let s_scalar = Option::<Scalar<C>>::from(Scalar::<C>::from_repr(
                FieldBytes::<C>::try_from(s).unwrap(),
            ))
            .unwrap();
            // s and n - s are both valid for the same r (ECDSA's malleability).
            let n_minus_s = (-s_scalar).to_repr().to_vec();
            for (r2, s2) in [
                (r.to_vec(), n_minus_s),
                (s.to_vec(), r.to_vec()),
                (vec![0; half], s.to_vec()),
                (r.to_vec(), vec![0; half]),
                (order.clone(), s.to_vec()),
                (r.to_vec(), order.clone()),
                (order_minus::<C>(1).to_repr().to_vec(), s.to_vec()),
                (vec![0xff; half], s.to_vec()),
            ] {
                candidates.push([r2, s2].concat());
            }
            candidates.push(good[..2 * half - 1].to_vec());
            candidates.push([&good[..], &[0]].concat());
            candidates.push(vec![]);
            for c in &candidates {
                for m in [&message[..], b"another message"] {
                    let want = ring.verify(m, c).is_ok();
                    assert_eq!(ours.verify(m, c), want, "round {round}, {i}: {c:02x?}");
                }
            }
        }
    }
}

#[test]
fn it_decides_as_ring_on_real_and_altered_signatures() {
    agrees_with_ring::<NistP256>(
        &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        &sig::ECDSA_P256_SHA256_FIXED,
    );
    agrees_with_ring::<NistP384>(
        &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        &sig::ECDSA_P384_SHA384_FIXED,
    );
}

#[test]
fn keys_off_the_curve_are_refused() {
    let rng = SystemRandom::new();
    let signing = &sig::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    assert!(PublicKey::<NistP256>::new(&public).is_some());
    assert!(
        PublicKey::<NistP384>::new(&public).is_none(),
        "another curve's point"
    );
    let mut off = public.clone();
    off[64] ^= 1;
    assert!(
        PublicKey::<NistP256>::new(&off).is_none(),
        "a point off the curve"
    );
    assert!(
        PublicKey::<NistP256>::new(&[0]).is_none(),
        "the point at infinity"
    );
    assert!(
        PublicKey::<NistP256>::new(&public[..64]).is_none(),
        "cut short"
    );
    assert!(PublicKey::<NistP256>::new(&[]).is_none());
}
