use super::*;
use crate::config::{self, Config};
use crate::pipeline::{self, RequestHead, Source, Verdict};
use crate::store::MemoryStore;
use base64::Engine;
use serde_json::json;

const SECRET: &str = "marketing-hmac-secret-0123456789";
const NOW: u64 = 1_800_000_000;

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn h(list: &[(&str, &str)]) -> crate::wire::HeaderMap {
    crate::wire::HeaderMap::from_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

/// RFC 9421 Appendix B.2.5: the standard's own `hmac-sha256` example verifies.
#[test]
fn rfc_9421_b_2_5_vector_verifies() {
    let headers = h(&[
        (":scheme", "https"),
        (":authority", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
    ]);
    let presented = parse(&MessageSignature {
        input: br#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#.to_vec(),
        signature: b"sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:".to_vec(),
    })
    .unwrap();
    assert_eq!(presented.keyid, "test-shared-secret");
    assert_eq!(presented.created, 1_618_884_473);
    let parts = SignedParts {
        method: "POST",
        target: "/foo?param=Value&Pet=dog",
        headers: &headers,
    };
    let base = signature_base(&parts, &presented.components, &presented.params).unwrap();
    assert_eq!(
        String::from_utf8(base.clone()).unwrap(),
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    let key = b64(
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==",
    );
    // The key as the filter holds it (hashed once, at configuration) against the RFC's value.
    let key = SigningKey::new(&key).unwrap();
    assert!(mac(&key, &base).verify_slice(&presented.signature).is_ok());
    // RFC 9530's sha-512 example for the same request's body.
    assert!(digest::verify(
        b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        b"{\"hello\": \"world\"}"
    )
    .is_ok());
}

#[test]
fn malformed_inputs_are_refused_not_guessed() {
    let sig = |input: &str, signature: &str| {
        parse(&MessageSignature {
            input: input.as_bytes().to_vec(),
            signature: signature.as_bytes().to_vec(),
        })
    };
    let good_sig = "sig1=:AAAA:";
    for (input, signature, why) in [
        ("", good_sig, "empty input"),
        ("sig1=(\"@method\");created=1", good_sig, "no keyid"),
        ("sig1=(\"@method\");keyid=\"a\"", good_sig, "no created"),
        (
            "sig1=(\"@method\");keyid=\"a\";created=-5",
            good_sig,
            "negative created",
        ),
        (
            "sig1=(\"@method\");keyid=a;created=1",
            good_sig,
            "keyid a token",
        ),
        (
            "sig1=(\"@method\" \"@method\");keyid=\"a\";created=1",
            good_sig,
            "duplicate component",
        ),
        (
            "sig1=(@method);keyid=\"a\";created=1",
            good_sig,
            "component a token",
        ),
        (
            "sig1=(\"@method\");keyid=\"a\";created=1",
            "sig2=:AAAA:",
            "no signature with that label",
        ),
        (
            "sig1=(\"@method\");keyid=\"a\";created=1",
            "sig1=\"AAAA\"",
            "signature not bytes",
        ),
        ("sig1=(\"@method\";x);keyid=\"a\"", good_sig, "unterminated"),
    ] {
        assert!(sig(input, signature).is_err(), "{why}");
    }
    assert_eq!(
        sig(
            "sig1=(\"@method\");keyid=\"a\";created=1;alg=\"rsa-pss-sha512\"",
            good_sig
        ),
        Err(Refusal::Unsupported)
    );
    // The algorithm is a string; as a token it is malformed, not another algorithm.
    assert_eq!(
        sig(
            "sig1=(\"@method\");keyid=\"a\";created=1;alg=hmac-sha256",
            good_sig
        ),
        Err(Refusal::Malformed)
    );
    assert!(sig(
        "sig1=(\"@method\");keyid=\"a\";created=1;alg=\"hmac-sha256\"",
        good_sig
    )
    .is_ok());
    assert_eq!(
        sig("sig1=(\"content-type\";sf);keyid=\"a\";created=1", good_sig),
        Err(Refusal::Unsupported)
    );
    // Another party's signature first (no keyid): ours is found after it.
    let p = sig(
        "proxy=(\"@method\");created=1, sig1=(\"@method\");keyid=\"a\";created=2",
        "proxy=:AAAA:, sig1=:BBBB:",
    )
    .unwrap();
    assert_eq!((p.keyid.as_str(), p.created), ("a", 2));
}

#[test]
fn required_coverage() {
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let none: [String; 0] = [];
    assert!(sufficient(&ids(&["@method", "@target-uri"]), false, &none));
    assert!(sufficient(
        &ids(&["@method", "@path", "@query"]),
        false,
        &none
    ));
    assert!(
        !sufficient(&ids(&["@method", "@path"]), false, &none),
        "query unsigned"
    );
    assert!(!sufficient(&ids(&["@target-uri"]), false, &none));
    assert!(
        !sufficient(&ids(&["@method", "@target-uri"]), true, &none),
        "body unsigned"
    );
    assert!(sufficient(
        &ids(&["@method", "@target-uri", "content-digest"]),
        true,
        &none
    ));
    assert!(!sufficient(
        &ids(&["@method", "@target-uri"]),
        false,
        &ids(&["content-type"])
    ));
}

fn cfg(extra: serde_json::Value) -> Config {
    let mut base = json!({
        "auth_methods": ["http_signature"],
        "clients": [
            {"client_id": "marketing", "allowed_endpoints": ["/api/send/*"],
             "client_secret": SECRET},
            {"client_id": "nosecret", "allowed_endpoints": ["/api/send/*"]}
        ],
        "hmac": {"max_body_bytes": 100}
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    config::parse(base.to_string().as_bytes()).unwrap()
}

struct Req {
    method: &'static str,
    target: &'static str,
    headers: crate::wire::HeaderMap,
}

impl Req {
    fn new(method: &'static str, target: &'static str, body: Option<&[u8]>) -> Req {
        let mut headers = h(&[
            (":method", method),
            (":path", target),
            (":scheme", "http"),
            (":authority", "api.example.com"),
        ]);
        if let Some(body) = body {
            headers.push("content-digest", digest::content_digest(body).as_bytes());
        }
        Req {
            method,
            target,
            headers,
        }
    }

    fn signed(mut self, components: &[&str], created: u64, nonce: Option<&str>) -> Req {
        let parts = SignedParts {
            method: self.method,
            target: self.target,
            headers: &self.headers,
        };
        let (input, signature) = sign(
            SECRET.as_bytes(),
            "marketing",
            &parts,
            components,
            created,
            nonce,
        )
        .unwrap();
        self.headers.push("signature-input", input.as_bytes());
        self.headers.push("signature", signature.as_bytes());
        self
    }

    /// The `index`th header's value, and the same request with it replaced.
    fn value(&self, index: usize) -> String {
        let (_, v) = self.headers.iter().nth(index).unwrap();
        String::from_utf8(v.to_vec()).unwrap()
    }

    fn replace(&mut self, index: usize, value: &[u8]) {
        let pairs: Vec<(&[u8], &[u8])> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (k.as_bytes(), if i == index { value } else { v }))
            .collect();
        self.headers = crate::wire::HeaderMap::from_pairs(pairs.into_iter());
    }

    fn head(&self, has_body: bool) -> RequestHead<'_> {
        RequestHead {
            method: self.method.as_bytes(),
            path: self.target.as_bytes(),
            headers: &self.headers,
            source: Source::known(None),
            has_body,
            peer: None,
        }
    }
}

const FULL: [&str; 3] = ["@method", "@target-uri", "content-digest"];

fn code(v: Verdict) -> (u16, &'static str) {
    match v {
        Verdict::Deny(r) => (r.denial.status, r.denial.code),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allow(g) if g.identity.as_ref().is_some_and(|i| i.method == AuthMethod::HttpSignature))
}

#[test]
fn a_signed_body_verifies_once_and_a_tampered_one_never() {
    let c = cfg(json!({}));
    let store = MemoryStore::new();
    c.auth
        .hmac
        .replay
        .prepare(&store, ["marketing"].into_iter())
        .unwrap();
    let body = br#"{"to":"a@example.com"}"#;
    let req = Req::new("POST", "/api/send/one?x=1", Some(body)).signed(&FULL, NOW, Some("n1"));
    let suspended = || match pipeline::on_request_headers(&c, &req.head(true), NOW, &store) {
        Verdict::Suspend(pending, _) => pending,
        other => panic!("should wait for the body: {other:?}"),
    };
    let tampered = pipeline::on_request_body(
        &c,
        suspended(),
        b"{\"to\":\"evil\"}",
        NOW,
        &store,
        &nowhere(),
    );
    assert_eq!(code(tampered), (401, "digest_mismatch"));
    let v = pipeline::on_request_body(&c, suspended(), body, NOW, &store, &nowhere());
    assert!(allowed(&v), "{v:?}");
    if let Verdict::Allow(g) = &v {
        assert!(g.remove_headers.iter().any(|h| h == "signature-input"));
        assert!(g.remove_headers.iter().any(|h| h == "signature"));
    }
    let again = pipeline::on_request_body(&c, suspended(), body, NOW, &store, &nowhere());
    assert_eq!(code(again), (401, "signature_replayed"));
}

#[test]
fn what_the_signature_covers_cannot_change() {
    let c = cfg(json!({}));
    let store = MemoryStore::new();
    c.auth
        .hmac
        .replay
        .prepare(&store, ["marketing"].into_iter())
        .unwrap();
    let run = |req: &Req| pipeline::on_request_headers(&c, &req.head(false), NOW, &store);
    let signed = |method, target| {
        Req::new(method, target, None).signed(&["@method", "@target-uri"], NOW, None)
    };
    // Each tampering: method, path, query, authority.
    let mut req = signed("GET", "/api/send/status?id=1");
    req.method = "DELETE";
    assert_eq!(code(run(&req)), (401, "signature_mismatch"));
    let mut req = signed("GET", "/api/send/status?id=1");
    req.target = "/api/send/status?id=2";
    assert_eq!(code(run(&req)), (401, "signature_mismatch"));
    let mut req = signed("GET", "/api/send/status?id=1");
    req.replace(3, b"evil.example.com");
    assert_eq!(code(run(&req)), (401, "signature_mismatch"));
    // Untouched: accepted.
    let req = signed("GET", "/api/send/status?id=1");
    assert!(allowed(&run(&req)));
    // A body the signature does not cover is refused before anything is read.
    let req = Req::new("POST", "/api/send/one", Some(b"x")).signed(
        &["@method", "@target-uri"],
        NOW,
        None,
    );
    let v = pipeline::on_request_headers(&c, &req.head(true), NOW, &store);
    assert_eq!(code(v), (401, "signature_insufficient"));
}

#[test]
fn time_key_and_coverage_rules() {
    let c = cfg(json!({"http_signature": {"required_components": ["content-type"]}}));
    let store = MemoryStore::new();
    c.auth
        .hmac
        .replay
        .prepare(&store, ["marketing"].into_iter())
        .unwrap();
    let run = |req: &Req| pipeline::on_request_headers(&c, &req.head(false), NOW, &store);
    let mut base = Req::new("GET", "/api/send/s", None);
    base.headers.push("content-type", b"application/json");
    let with = |components: &[&str], created| {
        let mut r = Req::new("GET", "/api/send/s", None);
        r.headers.push("content-type", b"application/json");
        r.signed(components, created, None)
    };
    let full = ["@method", "@target-uri", "content-type"];
    assert!(allowed(&run(&with(&full, NOW))));
    assert_eq!(
        code(run(&with(&["@method", "@target-uri"], NOW))),
        (401, "signature_insufficient")
    );
    assert_eq!(
        code(run(&with(&full, NOW - 301))),
        (401, "signature_expired")
    );
    assert_eq!(
        code(run(&with(&full, NOW + 301))),
        (401, "signature_from_future")
    );
    let mut status = with(&full, NOW);
    let input = status.value(5);
    status.replace(
        5,
        input
            .replace("\"content-type\")", "\"content-type\" \"@status\")")
            .as_bytes(),
    );
    assert_eq!(code(run(&status)), (401, "signature_unsupported"));
    // An unknown key and a client without a secret get the mismatch answer.
    for keyid in ["nobody", "nosecret"] {
        let mut r = with(&full, NOW + 1);
        let input = r.value(5);
        r.replace(
            5,
            input
                .replace("keyid=\"marketing\"", &format!("keyid=\"{keyid}\""))
                .as_bytes(),
        );
        assert_eq!(code(run(&r)), (401, "signature_mismatch"), "{keyid}");
    }
    drop(base);
}

#[test]
fn the_seed_scheme_needs_the_client_to_opt_in() {
    let seed = |opt_in: bool| {
        let c = config::parse(
            json!({
                "auth_methods": ["hmac_signature"],
                "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"],
                             "client_secret": SECRET, "seed_signatures": opt_in}]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let store = MemoryStore::new();
        c.auth
            .hmac
            .replay
            .prepare(&store, ["marketing"].into_iter())
            .unwrap();
        let ts = NOW.to_string();
        let sig = crate::auth::hmac_signature::sign(
            SECRET.as_bytes(),
            "GET",
            "/api/send/s",
            b"",
            &ts,
            None,
        );
        let headers = h(&[
            ("x-client-id", "marketing"),
            ("x-timestamp", &ts),
            ("x-signature", &sig),
        ]);
        let head = RequestHead {
            method: b"GET",
            path: b"/api/send/s",
            headers: &headers,
            source: Source::known(None),
            has_body: false,
            peer: None,
        };
        pipeline::on_request_headers(&c, &head, NOW, &store)
    };
    assert!(matches!(seed(true), Verdict::Allow(_)));
    assert_eq!(code(seed(false)), (401, "signature_mismatch"));
}

#[test]
fn new_configurations_default_to_rfc_9421() {
    let c = config::parse(
        json!({"clients": [{"client_id": "m", "allowed_endpoints": ["/*"], "client_secret": SECRET}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert!(c.auth.methods.contains(&AuthMethod::HttpSignature));
    assert!(!c.auth.methods.contains(&AuthMethod::Hmac));
    let bad = config::parse(
        json!({"clients": [], "routes": [{"pattern": "/*", "security_level": "public"}],
               "http_signature": {"required_components": ["@status"]}})
        .to_string()
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(bad.field, "http_signature.required_components[0]");
}

/// The caller's address in the body phase: none, as the heads here give.
fn nowhere() -> Source<'static> {
    Source::known(None)
}
