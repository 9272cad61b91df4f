//! ES256 checks by ecdsa_p256 against ring's on the same signatures: both must decide alike, and
//! neither panic. The first byte picks the candidate: the input itself, or a valid signature
//! with the rest of the input XORed onto it (near misses of every kind).
#![no_main]
use api_warden::auth::jwt::ecdsa_p256::PublicKey;
use libfuzzer_sys::fuzz_target;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

/// A P-256 public key (SEC 1, uncompressed), and its signature of [`MESSAGE`].
const KEY: &str = "045306b174a79c73ccd430d7094689bf71a59286214c13fb543fa7f6558da5d33c479c4140a149774c3d2dafbec6528134cb19e2bc25fbebf28d22a021305c7440";
const MESSAGE: &[u8] = b"api-warden fuzz message";
const VALID: &[u8] = include_bytes!("../seeds/ecdsa_p256_signature.bin");

thread_local! {
    static KEYS: (Vec<u8>, PublicKey) = {
        let public = hex::decode(KEY).expect("hex");
        let key = PublicKey::new(&public).expect("a point on the curve");
        (public, key)
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let candidate: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut s = VALID.to_vec();
        for (b, x) in s.iter_mut().zip(rest) {
            *b ^= x;
        }
        s
    };
    KEYS.with(|(public, key)| {
        let ours = key.verify(MESSAGE, &candidate);
        let ring = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(MESSAGE, &candidate)
            .is_ok();
        assert_eq!(ours, ring, "ecdsa_p256 and ring disagree");
    });
});
