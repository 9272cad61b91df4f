//! Signed-request parsing and verification, both schemes: credentials extraction, the seed's
//! timestamp and signature checks, RFC 9421 Signature-Input / Signature parsing, the signature
//! base and Content-Digest. Nothing made up verifies.
#![no_main]
use api_warden::auth::credentials::{self, MessageSignature};
use api_warden::auth::hmac_signature::{self, SignedRequest};
use api_warden::auth::http_signature::{self, base::SignedParts, digest};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-signing-secret-0123456789";

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0xff);
    let (a, b, c, d) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let headers = vec![
        ("signature-input".to_string(), a.to_vec()),
        ("signature".to_string(), b.to_vec()),
        ("content-digest".to_string(), c.to_vec()),
        ("x-signature".to_string(), b.to_vec()),
        ("x-timestamp".to_string(), c.to_vec()),
        ("x-client-id".to_string(), a.to_vec()),
        (":authority".to_string(), d.to_vec()),
        (":scheme".to_string(), b"https".to_vec()),
    ];
    let headers = api_warden::wire::HeaderMap::of(&headers);
    let _ = credentials::extract(&headers);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let _ = hmac_signature::check_timestamp(&text(c), 1_800_000_000, 300);
    let seed = SignedRequest {
        client_id: text(a),
        timestamp: text(c),
        signature: text(b),
        nonce: None,
    };
    let key = hmac_signature::SigningKey::new(SECRET).unwrap();
    assert!(hmac_signature::verify(&key, "POST", &text(d), c, &seed).is_err());
    let _ = digest::verify(c, d);
    if let Ok(presented) = http_signature::parse(&MessageSignature {
        input: a.to_vec(),
        signature: b.to_vec(),
    }) {
        let target = text(d);
        let signed = SignedParts {
            method: "POST",
            target: &target,
            headers: &headers,
        };
        let _ =
            http_signature::base::signature_base(&signed, &presented.components, &presented.params);
    }
});
