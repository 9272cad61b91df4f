//! JWT parsing and verification against HS256 and JWK-set keys: no panic, and nothing forged
//! verifies (the fuzzer cannot know the secrets).
#![no_main]
use api_warden::auth::jwt::{looks_like_jwt, JwtVerifier, RawJwt};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // Per thread, as in the filter (a verifier keeps a per-worker token cache).
    static VERIFIER: JwtVerifier = verifier();
}

fn verifier() -> JwtVerifier {
    {
        let raw: RawJwt = serde_json::from_value(serde_json::json!({
            "keys": [{"kid": "hs", "alg": "HS256", "secret": "fuzz-secret-0123456789abcdef0123"}],
            "jwks": {"keys": [{"kty": "oct", "kid": "oct-1", "alg": "HS384",
                               "k": "ZnV6ei1qd2stc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVm"}]},
            "audience": "email-api",
            "clock_skew_seconds": 60
        }))
        .expect("a valid jwt section");
        JwtVerifier::compile(raw).expect("compiles")
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_jwt(data);
    VERIFIER.with(|v| {
        assert!(
            v.verify(data, 1_800_000_000).is_err(),
            "a token the fuzzer made up verified"
        )
    });
});
