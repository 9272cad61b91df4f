//! PS256/384/512 checks against the Wycheproof vectors and against ring on the same signatures.

use super::super::rsa_pkcs1::{without_leading_zeros, Hash, PublicKey};
use super::super::wycheproof_verdicts::expect_verdicts;
use jwt_simple::prelude::*;
use ring::signature::{self as sig, RsaPublicKeyComponents};
use wycheproof::TestResult;

/// Every set whose salt is as long as its digest, with MGF1 over the same digest: the
/// parameters JWS fixes for PS256/384/512.
#[test]
fn every_wycheproof_pss_vector_with_jws_parameters_is_decided_as_expected() {
    use wycheproof::rsa_pss_verify::{TestName as T, TestSet};
    for (name, hash) in [
        (T::RsaPss2048Sha256Mgf1SaltLen32, Hash::Sha256),
        (T::RsaPss3072Sha256Mgf1SaltLen32, Hash::Sha256),
        (T::RsaPss4096Sha256Mgf1SaltLen32, Hash::Sha256),
        (T::RsaPss2048Sha384Mgf1SaltLen48, Hash::Sha384),
        (T::RsaPss4096Sha384Mgf1SaltLen48, Hash::Sha384),
        (T::RsaPss4096Sha512Mgf1SaltLen64, Hash::Sha512),
    ] {
        let set = TestSet::load(name).unwrap();
        let verdicts = set.test_groups.into_iter().flat_map(|group| {
            assert_eq!(group.salt_size, hash.len(), "{name:?}");
            let key = PublicKey::new(&group.key.n, &group.key.e)
                .unwrap_or_else(|| panic!("{name:?}: key refused"));
            group
                .tests
                .into_iter()
                .map(move |t| (key.verify_pss(hash, &t.msg, &t.sig), t.result, t.tc_id))
        });
        let (valid, invalid) = expect_verdicts(&format!("{name:?}"), verdicts);
        assert!(
            valid > 0 && invalid > 20,
            "{name:?}: {valid} valid, {invalid} invalid"
        );
    }
}

/// Signatures valid with another salt length (none, 20 bytes) are refused, as ring refuses
/// them: JWS fixes the salt's length.
#[test]
fn another_salt_length_is_refused_as_ring_refuses_it() {
    use wycheproof::rsa_pss_verify::{TestName as T, TestSet};
    let mut checked = 0;
    for name in [T::RsaPss2048Sha256Mgf1SaltLen0, T::RsaPssmisc] {
        for group in TestSet::load(name).unwrap().test_groups {
            let hash = match group.hash {
                wycheproof::HashFunction::Sha2_256 => Hash::Sha256,
                _ => continue,
            };
            if group.salt_size == hash.len() {
                continue;
            }
            let (n, e) = (
                without_leading_zeros(&group.key.n),
                without_leading_zeros(&group.key.e),
            );
            let Some(key) = PublicKey::new(n, e) else {
                continue;
            };
            for t in group.tests.iter().filter(|t| t.result == TestResult::Valid) {
                assert!(!key.verify_pss(hash, &t.msg, &t.sig), "#{}", t.tc_id);
                let ring = RsaPublicKeyComponents { n, e }
                    .verify(&sig::RSA_PSS_2048_8192_SHA256, &t.msg, &t.sig)
                    .is_ok();
                assert!(!ring, "#{}: ring took it", t.tc_id);
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "only {checked}");
}

fn ring_says(n: &[u8], e: &[u8], hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    let params = match hash {
        Hash::Sha256 => &sig::RSA_PSS_2048_8192_SHA256,
        Hash::Sha384 => &sig::RSA_PSS_2048_8192_SHA384,
        Hash::Sha512 => &sig::RSA_PSS_2048_8192_SHA512,
    };
    RsaPublicKeyComponents { n, e }
        .verify(params, message, signature)
        .is_ok()
}

/// Signatures by OpenSSL (Python's `cryptography`) for moduli of 2049 bits, whose encoding is a
/// byte shorter than the modulus, and of 2050 and 2055 bits, whose top byte holds 1 and 6
/// unused bits: accepted, and refused once altered, as ring decides.
#[test]
fn moduli_of_odd_lengths_are_handled_as_ring_handles_them() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("rsa_pss_odd_moduli.json")).unwrap();
    for v in vectors.as_array().unwrap() {
        let hex = |field: &str| hex::decode(v[field].as_str().unwrap()).unwrap();
        let (n, e, signature) = (hex("n"), hex("e"), hex("sig"));
        let message = v["msg"].as_str().unwrap().as_bytes();
        let key = PublicKey::new(&n, &e).unwrap();
        assert!(
            key.verify_pss(Hash::Sha256, message, &signature),
            "{}",
            v["bits"]
        );
        for bit in (0..16).chain((16..8 * signature.len()).step_by(61)) {
            let mut c = signature.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                key.verify_pss(Hash::Sha256, message, &c),
                ring_says(&n, &e, Hash::Sha256, message, &c),
                "{} bits, bit {bit} flipped",
                v["bits"]
            );
        }
    }
}

/// Real PS256/384/512 signatures from jwt-simple, for moduli of 2048 and 3072 bits, then
/// altered: this check and ring agree.
#[test]
fn it_agrees_with_ring_on_real_and_altered_signatures() {
    for bits in [2048, 3072] {
        let pair = PS256KeyPair::generate(bits).unwrap();
        let parts = pair.public_key().to_components();
        agrees(Hash::Sha256, &parts.n, &parts.e, &|s| {
            pair.sign(claims(s)).unwrap()
        });
        let pair = PS384KeyPair::generate(bits).unwrap();
        let parts = pair.public_key().to_components();
        agrees(Hash::Sha384, &parts.n, &parts.e, &|s| {
            pair.sign(claims(s)).unwrap()
        });
        let pair = PS512KeyPair::generate(bits).unwrap();
        let parts = pair.public_key().to_components();
        agrees(Hash::Sha512, &parts.n, &parts.e, &|s| {
            pair.sign(claims(s)).unwrap()
        });
    }
}

/// Tokens signed by `sign` with the key (n, e), and their signatures altered, decided alike by
/// this check and by ring, for the key's digest and another.
fn agrees(hash: Hash, n: &[u8], e: &[u8], sign: &dyn Fn(&str) -> String) {
    let key = PublicKey::new(n, e).unwrap();
    for round in 0..6 {
        let token = sign(&format!("subject {round}"));
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .unwrap();
        assert!(
            key.verify_pss(hash, signed.as_bytes(), &signature),
            "{hash:?}"
        );
        let mut altered = vec![signature.clone()];
        for bit in [0, 1, 7, 8, 100 + round, 8 * signature.len() - 1] {
            let mut c = signature.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            altered.push(c);
        }
        altered.push(n.to_vec());
        altered.push(vec![0; n.len()]);
        altered.push(signature[1..].to_vec());
        altered.push([&[0][..], &signature].concat());
        for candidate in &altered {
            for (h, text) in [
                (hash, signed.as_bytes()),
                (Hash::Sha256, signed.as_bytes()),
                (hash, b"another message".as_slice()),
            ] {
                assert_eq!(
                    key.verify_pss(h, text, candidate),
                    ring_says(n, e, h, text, candidate),
                    "{} bits, {hash:?} key, {h:?} check, round {round}",
                    n.len() * 8
                );
            }
        }
    }
}

fn claims(subject: &str) -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_mins(5)).with_subject(subject)
}
