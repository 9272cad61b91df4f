//! The PKCS#1 v1.5 checks against the Wycheproof vectors, against ring on the same signatures,
//! and their arithmetic against num-bigint's.

use super::super::wycheproof_verdicts::expect_verdicts;
use super::*;
use num_bigint::BigUint;
use ring::signature::{self as sig, RsaPublicKeyComponents};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }

    fn vec(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

#[test]
fn every_wycheproof_pkcs1_vector_is_decided_as_expected() {
    use wycheproof::rsa_pkcs1_verify::{TestName as T, TestSet};
    let sets = [
        (T::Rsa2048Sha256, Hash::Sha256),
        (T::Rsa2048Sha384, Hash::Sha384),
        (T::Rsa2048Sha512, Hash::Sha512),
        (T::Rsa3072Sha256, Hash::Sha256),
        (T::Rsa3072Sha384, Hash::Sha384),
        (T::Rsa3072Sha512, Hash::Sha512),
        (T::Rsa4096Sha256, Hash::Sha256),
        (T::Rsa4096Sha384, Hash::Sha384),
        (T::Rsa4096Sha512, Hash::Sha512),
        (T::Rsa8192Sha256, Hash::Sha256),
        (T::Rsa8192Sha384, Hash::Sha384),
        (T::Rsa8192Sha512, Hash::Sha512),
    ];
    for (name, hash) in sets {
        let set = TestSet::load(name).unwrap();
        let verdicts = set.test_groups.into_iter().flat_map(|group| {
            let key = PublicKey::new(&group.key.n, &group.key.e)
                .unwrap_or_else(|| panic!("{name:?}: key refused"));
            group
                .tests
                .into_iter()
                .map(move |t| (key.verify(hash, &t.msg, &t.sig), t.result, t.tc_id))
        });
        let (valid, invalid) = expect_verdicts(&format!("{name:?}"), verdicts);
        assert!(
            valid > 0 && invalid > 30,
            "{name:?}: {valid} valid, {invalid} invalid"
        );
    }
}

fn ring_says(n: &[u8], e: &[u8], hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    let params = match hash {
        Hash::Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Hash::Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Hash::Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
    };
    RsaPublicKeyComponents { n, e }
        .verify(params, message, signature)
        .is_ok()
}

/// Real signatures, then the same signatures altered (a flipped bit, the modulus itself and
/// beyond, zero, one, shorter, longer): this check and ring agree on every one.
#[test]
fn it_agrees_with_ring_on_real_and_altered_signatures() {
    use jwt_simple::prelude::*;
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    for bits in [2048, 3072] {
        let pair = RS256KeyPair::generate(bits).unwrap();
        let parts = pair.public_key().to_components();
        let (n, e) = (parts.n, parts.e);
        let key = PublicKey::new(&n, &e).unwrap();
        for round in 0..12 {
            let message = rng.vec(round * 17);
            let token = pair.sign(Claims::create(Duration::from_mins(5))).unwrap();
            // A real signature, of a real token's signed part.
            let (signed, signature) = token.rsplit_once('.').unwrap();
            let signature = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                signature,
            )
            .unwrap();
            assert!(key.verify(Hash::Sha256, signed.as_bytes(), &signature));
            assert!(ring_says(
                &n,
                &e,
                Hash::Sha256,
                signed.as_bytes(),
                &signature
            ));
            let mut altered: Vec<Vec<u8>> = Vec::new();
            let mut flipped = signature.clone();
            flipped[round * 13 % signature.len()] ^= 1 << (round % 8);
            altered.push(flipped);
            altered.push(n.clone());
            let mut above = n.clone();
            *above.last_mut().unwrap() = above.last().unwrap().wrapping_add(2);
            altered.push(above);
            altered.push(vec![0; n.len()]);
            let mut one = vec![0; n.len()];
            *one.last_mut().unwrap() = 1;
            altered.push(one);
            altered.push(signature[1..].to_vec());
            altered.push([&[0][..], &signature].concat());
            altered.push(rng.vec(n.len()));
            for candidate in altered.iter().chain([&signature]) {
                for (hash, text) in [
                    (Hash::Sha256, signed.as_bytes()),
                    (Hash::Sha384, signed.as_bytes()),
                    (Hash::Sha256, &message[..]),
                ] {
                    assert_eq!(
                        key.verify(hash, text, candidate),
                        ring_says(&n, &e, hash, text, candidate),
                        "{bits} bits, round {round}, {hash:?}"
                    );
                }
            }
        }
    }
}

/// The exponentiation against num-bigint's, for odd moduli of every accepted size and the
/// exponents keys use (3, 17, 65537, others up to 2^33 - 1).
#[test]
fn its_arithmetic_matches_num_bigint() {
    let mut rng = Bytes(0x0123_4567_89ab_cdef);
    for bytes in [256, 257, 300, 384, 512, 1024] {
        for e in [3u64, 17, 65_537, 0x26_0445, (1 << 33) - 1] {
            let mut n = rng.vec(bytes);
            n[0] |= 0x80;
            *n.last_mut().unwrap() |= 1;
            let key = PublicKey::new(&n, &e.to_be_bytes()).unwrap();
            let big_n = BigUint::from_bytes_be(&n);
            for _ in 0..2 {
                let mut s = rng.vec(bytes);
                s[0] &= 0x7f;
                let limbs = to_limbs(&s, key.n.len());
                let ours = key.power(&limbs);
                let theirs = BigUint::from_bytes_be(&s).modpow(&BigUint::from(e), &big_n);
                let mut expected = theirs.to_bytes_be();
                while expected.len() < bytes {
                    expected.insert(0, 0);
                }
                assert_eq!(ours, expected, "{bytes} bytes, e = {e}");
            }
        }
    }
}

#[test]
fn keys_ring_refuses_are_refused() {
    let mut n = vec![0xc5; 256];
    let e = [1, 0, 1];
    assert!(PublicKey::new(&n, &e).is_some());
    // A leading zero byte is not a longer modulus.
    assert!(PublicKey::new(&[&[0, 0][..], &n].concat(), &e).is_some());
    // Sizes: 2047 and 8193 bits.
    let mut short = n.clone();
    short[0] = 0x7f;
    assert!(PublicKey::new(&short, &e).is_none());
    assert!(PublicKey::new(&[&[1][..], &vec![0xc5; 1024]].concat(), &e).is_none());
    assert!(PublicKey::new(&vec![0xc5; 1024], &e).is_some());
    assert!(PublicKey::new(&[], &e).is_none());
    // An even modulus.
    *n.last_mut().unwrap() = 0xc4;
    assert!(PublicKey::new(&n, &e).is_none());
    *n.last_mut().unwrap() = 0xc5;
    // Exponents: 1, even, 2^33, six bytes, none.
    for bad in [&[1][..], &[4], &[2, 0, 0, 0, 0], &[1, 0, 0, 0, 0, 1], &[]] {
        assert!(PublicKey::new(&n, bad).is_none(), "{bad:?}");
    }
    assert!(PublicKey::new(&n, &[1, 255, 255, 255, 255]).is_some());
}
