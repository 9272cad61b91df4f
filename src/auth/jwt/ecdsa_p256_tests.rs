//! The ES256 checks against the Wycheproof vectors, against ring on the same signatures, and
//! their tables' multiplication against `p256`'s own.

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{
    self as sig, EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use wycheproof::TestResult;

/// The group order n, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// n - d as big-endian bytes, for small d.
fn order_minus(d: u8) -> [u8; 32] {
    let mut out = ORDER;
    let mut borrow = d;
    for b in out.iter_mut().rev() {
        let (v, o) = b.overflowing_sub(borrow);
        *b = v;
        borrow = u8::from(o);
    }
    out
}

fn scalar_of(bytes: [u8; 32]) -> Scalar {
    Option::<Scalar>::from(Scalar::from_repr(bytes.into())).unwrap()
}

/// Scalars where digit handling could go wrong: zero, small ones around a window's edges,
/// powers of two across the limbs, the largest, and a spread of others.
fn edge_scalars() -> Vec<Scalar> {
    let mut out: Vec<Scalar> = [0u64, 1, 2, 31, 32, 33, 63, 64, 65, 2047, 2048, 4095]
        .into_iter()
        .map(Scalar::from)
        .collect();
    for bit in [6, 63, 64, 127, 128, 191, 192, 251, 252, 255] {
        let mut bytes = [0u8; 32];
        bytes[31 - bit / 8] = 1 << (bit % 8);
        out.push(scalar_of(bytes));
    }
    for d in 1..=3 {
        out.push(scalar_of(order_minus(d)));
    }
    // All digits 32 (the largest positive), and a pattern of alternating signs.
    out.push(scalar_of([0x82; 32]));
    out.push(scalar_of([0x7e; 32]));
    let mut x = Scalar::from(0x1234_5678_9abc_def1u64);
    for _ in 0..40 {
        x = x * x + Scalar::from(7u64);
        out.push(x);
    }
    out
}

#[test]
fn signed_digits_add_back_up_to_the_scalar() {
    let radix = Scalar::from(1u64 << WINDOW);
    for k in edge_scalars() {
        let digits = signed_digits(&k);
        let mut sum = Scalar::ZERO;
        for d in digits.iter().rev() {
            let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
            sum = sum * radix + if *d < 0 { -magnitude } else { magnitude };
            assert!((-32..=32).contains(d), "digit {d} out of range");
        }
        assert_eq!(sum, k);
    }
}

#[test]
fn tables_multiply_as_p256_does() {
    let q = ProjectivePoint::GENERATOR * Scalar::from(0xdead_beef_u64);
    for (point, table) in [
        (ProjectivePoint::GENERATOR, generator()),
        (q, &Table::new(q)),
    ] {
        for k in edge_scalars() {
            let mut sum = ProjectivePoint::IDENTITY;
            table.add_multiple(&mut sum, &k).unwrap();
            assert_eq!(sum, point * k, "k = {:?}", k.to_repr());
        }
    }
}

#[test]
fn every_wycheproof_p256_vector_is_decided_as_expected() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        let key = PublicKey::new(&group.key.key);
        for t in group.tests {
            let ok = key.as_ref().is_some_and(|k| k.verify(&t.msg, &t.sig));
            match t.result {
                TestResult::Valid => {
                    assert!(ok, "#{}: a valid signature was refused", t.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!ok, "#{}: an invalid signature passed", t.tc_id);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(
        valid > 100 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn it_decides_as_ring_on_real_and_altered_signatures() {
    let rng = SystemRandom::new();
    for round in 0..4 {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let ours = PublicKey::new(&public).unwrap();
        let ring = sig::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public);
        for i in 0..8 {
            let message = format!("round {round} message {i}").into_bytes();
            let good = pair.sign(&rng, &message).unwrap().as_ref().to_vec();
            let mut candidates = vec![good.clone()];
            for bit in [0, 7, 100, 255, 256, 300, 511] {
                let mut c = good.clone();
                c[bit / 8] ^= 1 << (bit % 8);
                candidates.push(c);
            }
            let (r, s) = good.split_at(32);
            // s and n - s are both valid for the same r (ECDSA's malleability).
            let n_minus_s = (-scalar_of(s.try_into().unwrap())).to_repr();
            for (r2, s2) in [
                (r.to_vec(), n_minus_s.to_vec()),
                (s.to_vec(), r.to_vec()),
                (vec![0; 32], s.to_vec()),
                (r.to_vec(), vec![0; 32]),
                (ORDER.to_vec(), s.to_vec()),
                (r.to_vec(), ORDER.to_vec()),
                (order_minus(1).to_vec(), s.to_vec()),
                (vec![0xff; 32], s.to_vec()),
            ] {
                candidates.push([r2, s2].concat());
            }
            candidates.push(good[..63].to_vec());
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
fn keys_off_the_curve_are_refused() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    assert!(PublicKey::new(&public).is_some());
    let mut off = public.clone();
    off[64] ^= 1;
    assert!(PublicKey::new(&off).is_none(), "a point off the curve");
    assert!(PublicKey::new(&[0]).is_none(), "the point at infinity");
    assert!(PublicKey::new(&public[..64]).is_none(), "cut short");
    assert!(PublicKey::new(&[]).is_none());
}
