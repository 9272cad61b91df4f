//! The Ed25519 check against the Wycheproof vectors, and against ring (the filter's check
//! before this one) on real signatures, their near misses, and keys of every awkward kind.

use super::super::wycheproof_verdicts::expect_verdicts;
use super::*;
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::EdwardsPoint;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn ring_says(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, signature)
        .is_ok()
}

fn ours(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    PublicKey::new(public).is_some_and(|key| key.verify(message, signature))
}

/// Little-endian addition of two 32-byte numbers, the carry out of the top byte dropped.
fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut carry = 0u16;
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let sum = u16::from(*x) + u16::from(*y) + carry;
            carry = sum >> 8;
            sum as u8
        })
        .collect()
}

fn pair(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

#[test]
fn ed25519_passes_wycheproof() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut disagreements = 0;
    let verdicts: Vec<_> = set
        .test_groups
        .into_iter()
        .flat_map(|g| {
            let public = g.key.pk.to_vec();
            g.tests.into_iter().map(move |t| (public.clone(), t))
        })
        .map(|(public, t)| {
            let accepted = ours(&public, &t.msg, &t.sig);
            disagreements += usize::from(accepted != ring_says(&public, &t.msg, &t.sig));
            (accepted, t.result, t.tc_id)
        })
        .collect();
    let (valid, invalid) = expect_verdicts("Ed25519", verdicts);
    assert!(
        valid > 50 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
    assert_eq!(disagreements, 0);
}

/// Each alteration of a real signature, decided as ring decides it.
#[test]
fn near_misses_are_decided_as_ring_decides() {
    let message = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJjbGllbnQtMSJ9";
    let mut checked = 0;
    for seed in 1..=4u8 {
        let pair = pair(seed);
        let public = pair.public_key().as_ref().to_vec();
        let good = pair.sign(message).as_ref().to_vec();
        let (r, s) = good.split_at(32);
        let mut candidates = vec![good.clone()];
        for bit in (0..512).step_by(7) {
            let mut c = good.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            candidates.push(c);
        }
        // S + L (the same scalar, not canonical), S = L, S = 0, S all ones.
        candidates.push([r, &add(s, &L)].concat());
        candidates.push([r, &L[..]].concat());
        candidates.push([r, &[0; 32][..]].concat());
        candidates.push([r, &[0xff; 32][..]].concat());
        // R and S swapped; R as the identity; R's y with its sign bit flipped.
        candidates.push([s, r].concat());
        let mut identity = [0u8; 32];
        identity[0] = 1;
        candidates.push([&identity[..], s].concat());
        let mut flipped = good.clone();
        flipped[31] ^= 0x80;
        candidates.push(flipped);
        // One byte short or long, empty.
        candidates.push(good[..63].to_vec());
        candidates.push([&good[..], &[0]].concat());
        candidates.push(Vec::new());
        for c in &candidates {
            for m in [&message[..], b"another message", b""] {
                assert_eq!(
                    ours(&public, m, c),
                    ring_says(&public, m, c),
                    "seed {seed}, message {m:?}, signature {c:02x?}"
                );
                checked += 1;
            }
        }
        assert!(ours(&public, message, &good));
    }
    assert!(checked > 400);
}

/// Keys ring decodes differently from a plain point would still be decided alike: the
/// eight small-order points, y at or above p, x = 0 with its sign bit set, and bytes that
/// are no point at all.
#[test]
fn awkward_keys_are_decided_as_ring_decides() {
    let mut keys: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
    // p = 2^255 - 19: y = p, p + 1 (y = 0 and 1 not reduced), and 2^255 - 1.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    keys.push(p);
    let mut one = [0u8; 32];
    one[0] = 1;
    keys.push(add(&p, &one).try_into().unwrap());
    keys.push([0xff; 32]);
    let mut top = [0xffu8; 32];
    top[31] = 0x7f;
    keys.push(top);
    // The identity with the sign bit set (x = 0 claimed negative).
    let mut negative_zero = [0u8; 32];
    negative_zero[0] = 1;
    negative_zero[31] = 0x80;
    keys.push(negative_zero);
    for i in 0..64u8 {
        keys.push([i.wrapping_mul(37).wrapping_add(3); 32]);
    }
    let real = pair(9);
    keys.push(real.public_key().as_ref().try_into().unwrap());

    let message = b"api-warden";
    let mut decoded = 0;
    for key in &keys {
        decoded += usize::from(PublicKey::new(key).is_some());
        // Signatures any key might take: a real one, and R = [S]B with S small, which a key
        // of small order accepts under the cofactorless check.
        let mut candidates = vec![real.sign(message).as_ref().to_vec()];
        for s in [0u8, 1, 2, 5] {
            let mut s_bytes = [0u8; 32];
            s_bytes[0] = s;
            let r = (ED25519_BASEPOINT_POINT * Scalar::from(s)).compress().0;
            candidates.push([&r[..], &s_bytes].concat());
        }
        for c in &candidates {
            assert_eq!(
                ours(key, message, c),
                ring_says(key, message, c),
                "key {key:02x?}, signature {c:02x?}"
            );
        }
    }
    assert!(
        decoded > 10 && decoded < keys.len(),
        "{decoded} of {} keys decoded",
        keys.len()
    );
    // The identity key takes R = [S]B for any message: ring accepts it too (asserted above).
    let identity = EIGHT_TORSION[0].compress().0;
    assert_eq!(EIGHT_TORSION[0], EdwardsPoint::default());
    let signature = [ED25519_BASEPOINT_POINT.compress().0, one].concat();
    assert!(ours(&identity, message, &signature));
}

/// The key's table multiplies as the crate's plain scalar multiplication does.
#[test]
fn the_key_table_multiplies_as_the_crate_does() {
    let key = PublicKey::new(pair(3).public_key().as_ref()).unwrap();
    let table = EdwardsBasepointTable::create(&key.minus_a);
    let mut x = Scalar::from(0x1234_5678_9abc_def1u64);
    let mut scalars = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, Scalar::from(16u64)];
    for _ in 0..20 {
        x = x * x + Scalar::from(7u64);
        scalars.push(x);
    }
    for k in scalars {
        assert_eq!(table.mul_base(&k), key.minus_a * k);
    }
}

#[test]
fn the_table_is_built_on_the_first_check_only() {
    let pair = pair(5);
    let key = PublicKey::new(pair.public_key().as_ref()).unwrap();
    assert!(format!("{key:?}").contains("table built: false"));
    assert!(
        !key.verify(b"m", &[0; 64]),
        "S = 0 with R = 0 is no signature"
    );
    // S = 0 is canonical, so that check built the table.
    assert!(format!("{key:?}").contains("table built: true"));
    assert!(key.verify(b"m", pair.sign(b"m").as_ref()));
}
