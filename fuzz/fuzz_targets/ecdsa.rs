//! ES256 and ES384 checks by the ecdsa module against ring's on the same signatures: both must
//! decide alike, and neither panic. The first byte picks the curve (bit 1: P-384) and the
//! candidate (bit 0): the input itself, or a valid signature with the rest of the input XORed
//! onto it (near misses of every kind).
#![no_main]
use api_warden::auth::jwt::ecdsa::{NistP256, NistP384, PublicKey};
use libfuzzer_sys::fuzz_target;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};

/// A P-256 public key (SEC 1, uncompressed), and its signature of [`MESSAGE`].
const P256_KEY: &str = "045306b174a79c73ccd430d7094689bf71a59286214c13fb543fa7f6558da5d33c479c4140a149774c3d2dafbec6528134cb19e2bc25fbebf28d22a021305c7440";
const P256_VALID: &[u8] = include_bytes!("../seeds/ecdsa_p256_signature.bin");
/// A P-384 public key, and its signature of [`MESSAGE`] (made with Python's `cryptography`).
const P384_KEY: &str = "040c4723945ec7fba7389b3383a4966cd5b5ff26ba454f730787553176aaa2beb08ae5b702270324cf2161c3a1d7f74099972a0b72eeb04dae7c62cd70141983ad8370a60b011a3a1b282e601f3468a9548e35eea477aadfdbdf684ed7b8b5ba24";
const P384_VALID: &[u8] = include_bytes!("../seeds/ecdsa_p384_signature.bin");
const MESSAGE: &[u8] = b"api-warden fuzz message";

thread_local! {
    static P256: (Vec<u8>, PublicKey<NistP256>) = {
        let public = hex::decode(P256_KEY).expect("hex");
        let key = PublicKey::new(&public).expect("a point on the curve");
        (public, key)
    };
    static P384: (Vec<u8>, PublicKey<NistP384>) = {
        let public = hex::decode(P384_KEY).expect("hex");
        let key = PublicKey::new(&public).expect("a point on the curve");
        (public, key)
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let p384 = mode & 2 != 0;
    let candidate: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut s = if p384 { P384_VALID } else { P256_VALID }.to_vec();
        for (b, x) in s.iter_mut().zip(rest) {
            *b ^= x;
        }
        s
    };
    let (ours, ring) = if p384 {
        P384.with(|(public, key)| {
            let ring = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, public);
            (key.verify(MESSAGE, &candidate), ring.verify(MESSAGE, &candidate).is_ok())
        })
    } else {
        P256.with(|(public, key)| {
            let ring = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public);
            (key.verify(MESSAGE, &candidate), ring.verify(MESSAGE, &candidate).is_ok())
        })
    };
    assert_eq!(ours, ring, "ecdsa and ring disagree (P-384: {p384})");
});
