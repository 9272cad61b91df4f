//! RS256 and PS256 checks by rsa_pkcs1 against ring's on the same signatures: both must decide
//! alike, and neither panic. The first byte picks the padding (bit 1: PSS, with its own key) and
//! the candidate (bit 0): the input itself, or a valid signature with the rest of the input
//! XORed onto it (near misses of every kind).
#![no_main]
use api_warden::auth::jwt::rsa_pkcs1::{Hash, PublicKey};
use libfuzzer_sys::fuzz_target;
use ring::signature::{
    RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
};

/// A 2048-bit RSA modulus (exponent 65537), and its signature of [`MESSAGE`].
const MODULUS: &str = "f5b16517a2ded736a2d8761b3e9698e86dc65805b05d1176a6ca59f851a6fa5edd8022339775b57db76ca72405879ef503c38c29fa04a09c274602d62459b6e7220f2de2a422f40eee0b5a5a37908d03854f574b5956c3d00417953b3e9fd10857177401e0f199069ada02124fd4efce0cf47225db66c2b5a99e93c2b352aad758e0b7440a7b7803ee5152d83e2bbf19cff76f2cb3aecbcb4b02f5e142a8e76d1b6bdddca021d6a08a54ec84478f347a33af630fdb91e9d000de61ddb983ed413edb5bf897c831d9243878cdcda046ba3631550adb5bb268c7b7070d6d447a8b5adef092970e3132331d6407d67f808045b479e0e70dfc4db1d14813e7ae868b";
const EXPONENT: [u8; 3] = [1, 0, 1];
const MESSAGE: &[u8] = b"api-warden fuzz message";
const VALID: &[u8] = include_bytes!("../seeds/rsa_pkcs1_signature.bin");
/// Another 2048-bit modulus (exponent 65537), and its PSS signature of [`MESSAGE`] (SHA-256,
/// MGF1, a 32-byte salt; made with Python's `cryptography`).
const PSS_MODULUS: &str = "edc3d4c565f8ad156d41781aa9715366af27cd73f12cdfd28302a2f918d3a32b85c731af84736e1907079b088a8512519fffccf872e92a7ee32dc53e494bc7ca6eaca3d641cc16d50f0d21313a7dc1f368cdcd6765a4be3c31bd5e57147e7eb0d00cdd59706884377af9c637c72e82551b8959aa1a94040eb38fa6fdd21ace27ccb6925ff8fb4e41d74c055c1fbf10754cd05a90a457f15415e2942e8462c0461a4fb3d7284d6db611d192be83c38a6c323bbd096701875eb1a6e18555e5337976c1a9ca864dd61eb241e7d49c5f05a1a14c8d228288303bed4a487ddf9a0ed1f1a102232857decf00d8a0dfe7fbbbf5ff0a7497bc3ebdc85626eb5918cc5ec9";
const PSS_VALID: &[u8] = include_bytes!("../seeds/rsa_pss_signature.bin");

fn key(modulus: &str) -> (Vec<u8>, PublicKey) {
    let n = hex::decode(modulus).expect("hex");
    let key = PublicKey::new(&n, &EXPONENT).expect("a key ring takes");
    (n, key)
}

thread_local! {
    static KEY: (Vec<u8>, PublicKey) = key(MODULUS);
    static PSS_KEY: (Vec<u8>, PublicKey) = key(PSS_MODULUS);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let pss = mode & 2 != 0;
    let candidate: Vec<u8> = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut s = if pss { PSS_VALID } else { VALID }.to_vec();
        for (b, x) in s.iter_mut().zip(rest) {
            *b ^= x;
        }
        s
    };
    let check = |(n, key): &(Vec<u8>, PublicKey)| {
        let (ours, params) = if pss {
            let ours = key.verify_pss(Hash::Sha256, MESSAGE, &candidate);
            (ours, &RSA_PSS_2048_8192_SHA256)
        } else {
            let ours = key.verify(Hash::Sha256, MESSAGE, &candidate);
            (ours, &RSA_PKCS1_2048_8192_SHA256)
        };
        let ring = RsaPublicKeyComponents {
            n: &n[..],
            e: &EXPONENT[..],
        }
        .verify(params, MESSAGE, &candidate)
        .is_ok();
        assert_eq!(ours, ring, "rsa_pkcs1 and ring disagree (PSS: {pss})");
    };
    if pss {
        PSS_KEY.with(check);
    } else {
        KEY.with(check);
    }
});
