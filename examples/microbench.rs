//! Micro-benchmarks of the core's steps (a benchmark, not a test): each step is timed natively
//! and, built for wasm32-wasip1, inside V8 by node's WASI, so the wasm-versus-native factor of
//! each is known. `make microbench` runs both and prints the factors (bench/microbench.sh).
//!
//! Whole requests go through the adapter and the test host (the same code the proxy runs, with
//! the test double's bookkeeping in place of host calls); single steps call the core directly.
//! Output: one `<step>\t<ns per operation>` line per step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark fails loudly

use api_warden::adapter::request::RequestFilter;
use api_warden::adapter::root::RootFilter;
use api_warden::adapter::test_host::TestHost;
use api_warden::adapter::Action;
use jwt_simple::prelude::*;
use serde_json::json;
use std::time::Instant;

const NOW_MS: u64 = 1_800_000_010_000;
const KEY: &str = "ak_bench_marketing_key_00000000000001";
const JWT_SECRET: &str = "bench-jwt-secret-of-at-least-32-bytes!!";
const HMAC_SECRET: &str = "bench-marketing-hmac-secret-0123456789";

/// Runs `step` until about `budget_ms` have passed (at least 20 times) and returns ns per call.
fn time(budget_ms: u128, step: impl FnMut(u64)) -> f64 {
    time_at_most(budget_ms, u64::MAX, step)
}

/// `time`, with `step` given at most `calls` distinct indices (warm-up included).
fn time_at_most(budget_ms: u128, calls: u64, mut step: impl FnMut(u64)) -> f64 {
    for i in 0..10 {
        step(i);
    }
    let started = Instant::now();
    if let Some(n) = fixed_iterations() {
        measured(n.min(calls.saturating_sub(10)), &mut step);
        return started.elapsed().as_nanos() as f64 / n.max(1) as f64;
    }
    let mut n = 0u64;
    while (n < 20 || started.elapsed().as_millis() < budget_ms) && 10 + n < calls {
        step(10 + n);
        n += 1;
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

/// `MICROBENCH_ITERS=n`: each step runs exactly n times after its warm-up, all inside one call
/// of `measured`, so `bench/instructions.sh` counts each step's instructions under callgrind
/// (deterministic, where times on a shared VM are not).
fn fixed_iterations() -> Option<u64> {
    static ITERS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *ITERS.get_or_init(|| std::env::var("MICROBENCH_ITERS").ok()?.parse().ok())
}

#[inline(never)]
fn measured(n: u64, step: &mut dyn FnMut(u64)) {
    for i in 0..n {
        step(10 + i);
    }
}

/// Signed requests made ready for the HMAC step: more than it sends within the default budget.
const SIGNED_REQUESTS: u64 = 1 << 17;

/// As many as the run will send: all of them when timing, the fixed count plus warm-up when
/// counting instructions (signing 2^17 requests under callgrind would take minutes).
fn signed_requests() -> u64 {
    fixed_iterations().map_or(SIGNED_REQUESTS, |n| n + 10)
}

fn configured(config: serde_json::Value) -> (TestHost, RootFilter) {
    let host = TestHost::new(&config.to_string(), NOW_MS);
    let mut root = RootFilter::default();
    assert!(root.on_configure(&host), "{:?}", host.logs.borrow());
    (host, root)
}

fn limits() -> serde_json::Value {
    json!({"requests_per_minute": 1_000_000_000u64, "requests_per_hour": 1_000_000_000u64,
           "requests_per_day": 1_000_000_000u64, "burst_limit": 1_000_000_000u64})
}

fn client(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"client_id": "marketing", "allowed_endpoints": ["/api/send/*"],
                       "api_keys": [hex::encode(api_warden::auth::api_key::digest(KEY.as_bytes()))],
                       "client_secret": HMAC_SECRET, "seed_signatures": true,
                       "rate_limits": limits()});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// One request with `headers` (and `body`) through the filter; it must be forwarded.
fn forward(host: &TestHost, root: &RootFilter, headers: &[(&str, &str)], body: &[u8]) {
    host.request(headers, body, Some("10.1.1.1:5000"));
    let mut request: RequestFilter = root.new_request();
    let mut action = request.on_request_headers(host, body.is_empty());
    if !body.is_empty() && action == Action::Pause && host.replies.borrow().is_empty() {
        action = request.on_request_body(host, body.len(), true);
    }
    assert_eq!(
        action,
        Action::Continue,
        "{:?}",
        host.replies.borrow().last()
    );
    request.on_response_headers(host);
}

fn main() {
    let budget: u128 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let mut results: Vec<(&str, f64)> = Vec::new();

    results.push((
        "api key digest (SHA-256)",
        time(budget, |_| {
            std::hint::black_box(api_warden::auth::api_key::digest(KEY.as_bytes()));
        }),
    ));
    // The same work as `bench/host-calls`' `sha256_1k` in Envoy (`CALL_COSTS=1 make bench`).
    results.push((
        "SHA-256, 1 KiB",
        time(budget, |i| {
            use sha2::Digest;
            let block = [i as u8; 1024];
            std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&block)));
        }),
    ));
    let pattern = api_warden::authz::endpoints::EndpointPattern::parse("p", "/api/send/*").unwrap();
    results.push((
        "path normalise + pattern",
        time(budget, |_| {
            let target = api_warden::authz::path::normalise(b"/api/send/bulk?to=a").unwrap();
            assert!(pattern.matches(std::hint::black_box(&target.path)));
        }),
    ));
    let hs256 = HS256Key::from_bytes(JWT_SECRET.as_bytes());
    let claims = Claims::create(Duration::from_hours(1)).with_audience("email-api");
    let token = hs256.authenticate(claims).unwrap();
    results.push((
        "HS256 verify (jwt-simple)",
        time(budget, |_| {
            let options = VerificationOptions {
                allowed_audiences: Some(HashSet::from_strings(&["email-api"])),
                ..Default::default()
            };
            hs256
                .verify_token::<NoCustomClaims>(&token, Some(options))
                .unwrap();
        }),
    ));
    // One RS256 and one PS256 signature (Wycheproof's first valid 2048-bit vector of each, the
    // PSS one with JWS's parameters) checked by ring, which reads the key each time, and by
    // rsa_pkcs1, whose key was read at configuration.
    use api_warden::auth::jwt::rsa_pkcs1::{self, Hash};
    let strip = |b: &[u8]| b[b.iter().position(|x| *x != 0).unwrap()..].to_vec();
    let pkcs1 = {
        use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
        let set = TestSet::load(TestName::Rsa2048Sha256).unwrap();
        let group = &set.test_groups[0];
        let t = group
            .tests
            .iter()
            .find(|t| t.result == wycheproof::TestResult::Valid);
        let t = t.unwrap();
        let (n, e) = (strip(&group.key.n), strip(&group.key.e));
        [n, e, t.msg.to_vec(), t.sig.to_vec()]
    };
    let pss = {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        let set = TestSet::load(TestName::RsaPss2048Sha256Mgf1SaltLen32).unwrap();
        let group = &set.test_groups[0];
        let t = group
            .tests
            .iter()
            .find(|t| t.result == wycheproof::TestResult::Valid);
        let t = t.unwrap();
        let (n, e) = (strip(&group.key.n), strip(&group.key.e));
        [n, e, t.msg.to_vec(), t.sig.to_vec()]
    };
    for ([n, e, message, signature], ring_params, is_pss, names) in [
        (
            &pkcs1,
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            false,
            [
                "RS256 check, 2048 bits (ring)",
                "RS256 check, 2048 bits (rsa_pkcs1)",
            ],
        ),
        (
            &pss,
            &ring::signature::RSA_PSS_2048_8192_SHA256,
            true,
            [
                "PS256 check, 2048 bits (ring)",
                "PS256 check, 2048 bits (rsa_pkcs1)",
            ],
        ),
    ] {
        results.push((
            names[0],
            time(budget, |_| {
                ring::signature::RsaPublicKeyComponents { n, e }
                    .verify(ring_params, message, signature)
                    .unwrap();
            }),
        ));
        let key = rsa_pkcs1::PublicKey::new(n, e).unwrap();
        results.push((
            names[1],
            time(budget, |_| {
                let ok = if is_pss {
                    key.verify_pss(Hash::Sha256, message, signature)
                } else {
                    key.verify(Hash::Sha256, message, signature)
                };
                assert!(ok);
            }),
        ));
    }
    let [n, e, ..] = &pkcs1;
    results.push((
        "RS256 key read, 2048 bits (rsa_pkcs1)",
        time(budget, |_| {
            rsa_pkcs1::PublicKey::new(n, e).unwrap();
        }),
    ));
    // One ES256, one ES384 and one Ed25519 signature (Wycheproof's first valid vector of each)
    // checked by ring and by the filter's own checks, whose key table is built on a key's first
    // check.
    use api_warden::auth::jwt::{ecdsa, ed25519};
    use ring::signature::{
        VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519,
    };
    use wycheproof::ecdsa::TestName;
    fn first_ecdsa_vector(set: TestName) -> [Vec<u8>; 3] {
        let set = wycheproof::ecdsa::TestSet::load(set).unwrap();
        let group = &set.test_groups[0];
        let t = group
            .tests
            .iter()
            .find(|t| t.result == wycheproof::TestResult::Valid)
            .unwrap();
        [group.key.key.to_vec(), t.msg.to_vec(), t.sig.to_vec()]
    }
    let ed25519_vector = {
        let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
        let group = &set.test_groups[0];
        let t = group
            .tests
            .iter()
            .find(|t| t.result == wycheproof::TestResult::Valid)
            .unwrap();
        [group.key.pk.to_vec(), t.msg.to_vec(), t.sig.to_vec()]
    };
    /// A key made ready for the filter's own check, as that check.
    type Check = Box<dyn Fn(&[u8], &[u8]) -> bool>;
    fn p256(p: &[u8]) -> Option<Check> {
        let k = ecdsa::PublicKey::<ecdsa::NistP256>::new(p)?;
        Some(Box::new(move |m, s| k.verify(m, s)))
    }
    fn p384(p: &[u8]) -> Option<Check> {
        let k = ecdsa::PublicKey::<ecdsa::NistP384>::new(p)?;
        Some(Box::new(move |m, s| k.verify(m, s)))
    }
    fn ed(p: &[u8]) -> Option<Check> {
        let k = ed25519::PublicKey::new(p)?;
        Some(Box::new(move |m, s| k.verify(m, s)))
    }
    type Row = (
        &'static str,
        &'static dyn VerificationAlgorithm,
        [Vec<u8>; 3],
        fn(&[u8]) -> Option<Check>,
    );
    let checks: [Row; 3] = [
        (
            "ES256 ecdsa",
            &ECDSA_P256_SHA256_FIXED,
            first_ecdsa_vector(TestName::EcdsaSecp256r1Sha256P1363),
            p256,
        ),
        (
            "ES384 ecdsa",
            &ECDSA_P384_SHA384_FIXED,
            first_ecdsa_vector(TestName::EcdsaSecp384r1Sha384P1363),
            p384,
        ),
        ("Ed25519 ed25519", &ED25519, ed25519_vector, ed),
    ];
    // Each: ring's check, the filter's key table with a first check, and its check alone.
    for (alg_module, ring_algorithm, [public, message, signature], new) in checks {
        let (alg, module) = alg_module.split_once(' ').unwrap();
        let names = [
            format!("{alg} check (ring)"),
            format!("{alg} key table + check ({module})"),
            format!("{alg} check ({module})"),
        ]
        .map(|n| &*Box::leak(n.into_boxed_str()));
        results.push((
            names[0],
            time(budget, |_| {
                ring::signature::UnparsedPublicKey::new(ring_algorithm, &public)
                    .verify(&message, &signature)
                    .unwrap();
            }),
        ));
        results.push((
            names[1],
            time(budget, |_| {
                assert!(new(&public).unwrap()(&message, &signature));
            }),
        ));
        let check = new(&public).unwrap();
        results.push((
            names[2],
            time(budget, |_| {
                assert!(check(&message, &signature));
            }),
        ));
    }
    let config = json!({
        "auth_methods": ["api_key", "jwt", "hmac_signature", "http_signature"],
        "jwt": {"audience": "email-api", "keys": [{"alg": "HS256", "secret": JWT_SECRET}]},
        "hmac": {"replay_cache_slots": 4096, "replay_slot_entries": 4096},
        "clients": [client(json!({}))],
        "routes": [{"pattern": "/health", "security_level": "public"}],
        "rate_limiting": {"address_limits": limits()}
    });
    results.push((
        "configuration (parse and compile)",
        time(budget, |_| {
            api_warden::config::parse(config.to_string().as_bytes()).unwrap();
        }),
    ));

    let (host, root) = configured(config.clone());
    results.push((
        "request: API key, local limits",
        time(budget, |_| {
            forward(
                &host,
                &root,
                &[
                    (":method", "GET"),
                    (":path", "/api/send/bulk"),
                    ("x-api-key", KEY),
                ],
                b"",
            )
        }),
    ));
    results.push((
        "request: public route",
        time(budget, |_| {
            forward(
                &host,
                &root,
                &[(":method", "GET"), (":path", "/health")],
                b"",
            )
        }),
    ));
    let bearer = format!(
        "Bearer {}",
        api_warden::admin::mint_jwt(
            JWT_SECRET.as_bytes(),
            "marketing",
            "email-api",
            &[],
            NOW_MS / 1000,
            3600,
            "b1"
        )
        .unwrap()
    );
    results.push((
        "request: JWT HS256 (cached)",
        time(budget, |_| {
            forward(
                &host,
                &root,
                &[
                    (":method", "GET"),
                    (":path", "/api/send/bulk"),
                    ("authorization", &bearer),
                ],
                b"",
            )
        }),
    ));
    let body = vec![b'x'; 1024];
    let ts = (NOW_MS / 1000).to_string();
    let sign = |nonce: &str| {
        api_warden::auth::hmac_signature::sign(
            HMAC_SECRET.as_bytes(),
            "POST",
            "/api/send/bulk",
            &body,
            &ts,
            Some(nonce),
        )
    };
    results.push((
        "seed HMAC sign, 1 KiB body (the client's side)",
        time(budget, |i| {
            std::hint::black_box(sign(&format!("n{i}")));
        }),
    ));
    // Signed before the clock starts (each request needs its own nonce), so the step is the
    // filter's work alone; at most as many requests as were signed.
    let signed: Vec<(String, String)> = (0..signed_requests())
        .map(|i| {
            let nonce = format!("s{i}");
            let sig = sign(&nonce);
            (nonce, sig)
        })
        .collect();
    results.push((
        "request: seed HMAC, 1 KiB body",
        time_at_most(budget, signed_requests(), |i| {
            let (nonce, sig) = &signed[i as usize];
            forward(
                &host,
                &root,
                &[
                    (":method", "POST"),
                    (":path", "/api/send/bulk"),
                    ("x-client-id", "marketing"),
                    ("x-timestamp", &ts),
                    ("x-nonce", nonce),
                    ("x-signature", sig),
                    ("content-length", "1024"),
                ],
                &body,
            )
        }),
    ));
    // The same POSTs signed with RFC 9421 (`make bench`'s warden_rfc9421_1k), also signed
    // before the clock starts.
    let content_digest = api_warden::auth::http_signature::digest::content_digest(&body);
    let digest_header =
        api_warden::wire::HeaderMap::of(&[("content-digest", content_digest.as_bytes())]);
    let message_signed: Vec<(String, String)> = (0..signed_requests())
        .map(|i| {
            let parts = api_warden::auth::http_signature::base::SignedParts {
                method: "POST",
                target: "/api/send/bulk",
                headers: &digest_header,
            };
            api_warden::auth::http_signature::sign(
                HMAC_SECRET.as_bytes(),
                "marketing",
                &parts,
                &["@method", "@request-target", "content-digest"],
                NOW_MS / 1000,
                Some(&format!("m{i}")),
            )
            .unwrap()
        })
        .collect();
    results.push((
        "request: RFC 9421, 1 KiB body",
        time_at_most(budget, signed_requests(), |i| {
            let (input, signature) = &message_signed[i as usize];
            forward(
                &host,
                &root,
                &[
                    (":method", "POST"),
                    (":path", "/api/send/bulk"),
                    ("content-digest", &content_digest),
                    ("signature-input", input),
                    ("signature", signature),
                    ("content-length", "1024"),
                ],
                &body,
            )
        }),
    ));

    // Counting in Redis, then in a rate limit service: the same request, paused for one call,
    // answered (as webdis and tools/rls-server answer), then forwarded.
    let counted = |host: &TestHost, root: &RootFilter, answer: &dyn Fn(&mut RequestFilter, u32)| {
        host.request(
            &[
                (":method", "GET"),
                (":path", "/api/send/bulk"),
                ("x-api-key", KEY),
            ],
            b"",
            Some("10.1.1.1:5000"),
        );
        let mut request: RequestFilter = root.new_request();
        assert_eq!(request.on_request_headers(host, true), Action::Pause);
        let (token, _) = host.last_call().unwrap();
        answer(&mut request, token);
        assert!(
            host.replies.borrow().is_empty(),
            "{:?}",
            host.replies.borrow()
        );
        request.on_response_headers(host);
    };
    let (host, root) = configured(json!({
        "auth_methods": ["api_key"],
        "clients": [client(json!({}))],
        "rate_limiting": {"mode": "redis", "redis": {"cluster": "webdis", "timeout_ms": 1000}}
    }));
    const GRANTED: &str = r#"{"EVALSHA":[1,3,3,3,40000]}"#;
    results.push((
        "request: API key, Redis counting",
        time(budget, |_| {
            counted(&host, &root, &|request, token| {
                host.answer_with(Some(200), GRANTED);
                request.on_callout(&host, token, GRANTED.len());
            })
        }),
    ));
    let (host, root) = configured(json!({
        "auth_methods": ["api_key"],
        "clients": [client(json!({}))],
        "rate_limiting": {"mode": "rls", "rls": {"cluster": "ratelimit", "domain": "bench",
                          "send_limits": false, "timeout_ms": 1000}}
    }));
    let rls_answer = api_warden::adapter::test_host::rls_granted();
    results.push((
        "request: API key, RLS counting",
        time(budget, |_| {
            counted(&host, &root, &|request, token| {
                host.answer_grpc(&rls_answer);
                request.on_grpc_callout(&host, token, 0, rls_answer.len());
            })
        }),
    ));

    // Asymmetric tokens, each distinct (more than the verified-token cache holds), so every
    // request checks a signature: ES256 through the ecdsa module, EdDSA through the ed25519 module.
    for (name, alg) in [
        ("request: JWT ES256, distinct tokens", "ES256"),
        ("request: JWT EdDSA, distinct tokens", "EdDSA"),
    ] {
        let (jwk, tokens) = mint(alg, 5000);
        let (host, root) = configured(json!({
            "auth_methods": ["jwt"],
            "jwt": {"audience": "email-api", "jwks": {"keys": [jwk]}},
            "clients": [client(json!({}))]
        }));
        results.push((
            name,
            time(budget, |i| {
                let bearer = format!("Bearer {}", tokens[i as usize % tokens.len()]);
                forward(
                    &host,
                    &root,
                    &[
                        (":method", "GET"),
                        (":path", "/api/send/bulk"),
                        ("authorization", &bearer),
                    ],
                    b"",
                )
            }),
        ));
    }

    for (step, ns) in results {
        println!("{step}\t{ns:.0}");
    }
    // Straight out, without dropping what the steps built: returning from here, node 20
    // crashed (signal 11) after the last line in 1 to 2 runs of 4 (2026-12-07).
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// A key as a JWK and `n` distinct tokens signed with it (client marketing, audience
/// email-api, an hour from the benchmark's clock).
fn mint(alg: &str, n: usize) -> (serde_json::Value, Vec<String>) {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let claims = |i: usize| {
        let mut c =
            Claims::with_custom_claims(json!({"client_id": "marketing"}), Duration::from_hours(1))
                .with_audience("email-api")
                .with_jwt_id(format!("t{i}"));
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 + 3600));
        c
    };
    match alg {
        "ES256" => {
            let pair = ES256KeyPair::generate().with_key_id("es");
            let point = pair.key_pair().public_key().to_bytes_uncompressed();
            let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256",
                             "x": b64(&point[1..33]), "y": b64(&point[33..65])});
            let tokens = (0..n).map(|i| pair.sign(claims(i)).unwrap()).collect();
            (jwk, tokens)
        }
        _ => {
            let pair = Ed25519KeyPair::generate().with_key_id("ed");
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
                             "x": b64(&pair.public_key().to_bytes())});
            let tokens = (0..n).map(|i| pair.sign(claims(i)).unwrap()).collect();
            (jwk, tokens)
        }
    }
}
