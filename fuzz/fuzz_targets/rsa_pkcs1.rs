//! RS256 checks by rsa_pkcs1 against ring's on the same signatures: both must decide alike, and
//! neither panic. The first byte picks the candidate: the input itself, or a valid signature
//! with the rest of the input XORed onto it (near misses of every kind).
#![no_main]
use api_warden::auth::jwt::rsa_pkcs1::{Hash, PublicKey};
use libfuzzer_sys::fuzz_target;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};

/// A 2048-bit RSA modulus (exponent 65537), and its signature of [`MESSAGE`].
const MODULUS: &str = "f5b16517a2ded736a2d8761b3e9698e86dc65805b05d1176a6ca59f851a6fa5edd8022339775b57db76ca72405879ef503c38c29fa04a09c274602d62459b6e7220f2de2a422f40eee0b5a5a37908d03854f574b5956c3d00417953b3e9fd10857177401e0f199069ada02124fd4efce0cf47225db66c2b5a99e93c2b352aad758e0b7440a7b7803ee5152d83e2bbf19cff76f2cb3aecbcb4b02f5e142a8e76d1b6bdddca021d6a08a54ec84478f347a33af630fdb91e9d000de61ddb983ed413edb5bf897c831d9243878cdcda046ba3631550adb5bb268c7b7070d6d447a8b5adef092970e3132331d6407d67f808045b479e0e70dfc4db1d14813e7ae868b";
const EXPONENT: [u8; 3] = [1, 0, 1];
const MESSAGE: &[u8] = b"api-warden fuzz message";
const VALID: &[u8] = include_bytes!("../seeds/rsa_pkcs1_signature.bin");

thread_local! {
    static KEY: (Vec<u8>, PublicKey) = {
        let n = hex::decode(MODULUS).expect("hex");
        let key = PublicKey::new(&n, &EXPONENT).expect("a key ring takes");
        (n, key)
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
    KEY.with(|(n, key)| {
        let ours = key.verify(Hash::Sha256, MESSAGE, &candidate);
        let ring = RsaPublicKeyComponents {
            n: &n[..],
            e: &EXPONENT[..],
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, MESSAGE, &candidate)
        .is_ok();
        assert_eq!(ours, ring, "rsa_pkcs1 and ring disagree");
    });
});
