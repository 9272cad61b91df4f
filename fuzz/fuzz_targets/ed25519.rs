//! The Ed25519 check by the ed25519 module against ring's on the same keys and signatures:
//! both must decide alike, and neither panic. The first byte's low two bits pick the case:
//! 0, the input as a signature under a fixed key; 1, that key's valid signature with the rest
//! XORed onto it (near misses of every kind); 2, the valid signature under the key with the
//! rest XORed onto the key (keys ring decodes oddly); 3, the input as key, signature, message.
#![no_main]
use api_warden::auth::jwt::ed25519::PublicKey;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

const MESSAGE: &[u8] = b"api-warden fuzz message";

thread_local! {
    /// A fixed key pair's public key, its check, and its signature of [`MESSAGE`].
    static FIXED: (Vec<u8>, PublicKey, Vec<u8>) = {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a seed");
        let public = pair.public_key().as_ref().to_vec();
        let key = PublicKey::new(&public).expect("a point on the curve");
        (public, key, pair.sign(MESSAGE).as_ref().to_vec())
    };
}

fn xored(base: &[u8], onto: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for (b, x) in out.iter_mut().zip(onto) {
        *b ^= x;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    FIXED.with(|(public, key, valid)| {
        let (public, signature, message) = match mode & 3 {
            0 => (public.clone(), rest.to_vec(), MESSAGE),
            1 => (public.clone(), xored(valid, rest), MESSAGE),
            2 => (xored(public, rest), valid.clone(), MESSAGE),
            _ => {
                let (public, tail) = rest.split_at(rest.len().min(32));
                let (signature, message) = tail.split_at(tail.len().min(64));
                (public.to_vec(), signature.to_vec(), message)
            }
        };
        let ours = if mode & 3 < 2 {
            key.verify(message, &signature)
        } else {
            PublicKey::new(&public).is_some_and(|k| k.verify(message, &signature))
        };
        let ring = UnparsedPublicKey::new(&ED25519, &public)
            .verify(message, &signature)
            .is_ok();
        assert_eq!(ours, ring, "ed25519 and ring disagree (case {})", mode & 3);
    });
});
