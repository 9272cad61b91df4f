//! Identity from outside the configuration, as a user sees it: a real Envoy (2 workers) with the
//! built filter and a small identity provider on loopback serving a JWK set it can rotate, fail,
//! garble or hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use jwt_simple::prelude::*;
use serde_json::{json, Value};
use std::time::Instant;
type StdDuration = std::time::Duration;
use support::http::{self, request, Response};
use support::idp::{Answer, Idp};
use support::Envoy;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key(kid: &str) -> (ES256KeyPair, Value) {
    let pair = ES256KeyPair::generate().with_key_id(kid);
    let mut jwk: Value = serde_json::from_str(&pair.public_key().to_jwk()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    (pair, jwk)
}

fn token(pair: &ES256KeyPair) -> String {
    let custom = json!({"client_id": "marketing", "scope": "send:email"});
    let mut c =
        Claims::with_custom_claims(custom, Duration::from_secs(600)).with_audience("email-api");
    c.issued_at = Some(UnixTimeStamp::from_secs(now()));
    c.expires_at = Some(UnixTimeStamp::from_secs(now() + 600));
    pair.sign(c).unwrap()
}

fn config() -> Value {
    json!({
        "auth_methods": ["jwt"],
        "jwt": {
            "audience": "email-api",
            "jwks_uri": {"cluster": "idp", "path": "/jwks", "refresh_seconds": 5, "timeout_ms": 500}
        },
        "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"]}],
        // Rate limiting has its own tests; here it would only throttle the polling.
        "rate_limiting": {"enabled": false}
    })
}

fn send(envoy: &Envoy, token: &str) -> Response {
    let bearer = format!("Bearer {token}");
    let h: Vec<(&str, &[u8])> = vec![("Authorization", bearer.as_bytes())];
    http::send(envoy.port, &request("GET", b"/api/send/x", &h, b"")).unwrap()
}

fn set(idp: &Idp, keys: &[&Value]) {
    idp.set(
        "/jwks",
        Answer::Json(200, json!({ "keys": keys }).to_string()),
    );
}

/// Polls (both workers must agree: several requests each time) until `ok`.
fn eventually(what: &str, secs: u64, mut ok: impl FnMut() -> bool, detail: impl Fn() -> String) {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while Instant::now() < deadline {
        if (0..6).all(|_| ok()) {
            return;
        }
        std::thread::sleep(StdDuration::from_millis(200));
    }
    panic!("timed out waiting for {what}: {}", detail());
}

#[test]
fn a_remote_jwk_set_is_fetched_rotated_and_kept_through_failures() {
    let idp = Idp::start();
    idp.set("/jwks", Answer::Hang);
    let envoy = Envoy::start_with(&config(), 2, &[("idp", idp.port)]);
    let (a, jwk_a) = key("idp-a");
    let (b, jwk_b) = key("idp-b");
    // The identity provider does not answer yet: 503 with a clear error, never a pass.
    let resp = send(&envoy, &token(&a));
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.error_code(), "jwks_unavailable");
    assert!(!resp.reached_upstream());
    // It answers: tokens verify on every worker.
    set(&idp, &[&jwk_a]);
    let detail = || {
        format!(
            "a: {}, b: {}, fetches {}, updated {}, failed {}",
            send(&envoy, &token(&a)).status,
            send(&envoy, &token(&b)).status,
            idp.hits("/jwks"),
            envoy.counter("wasmcustom.api_warden.jwt.jwks.updated.total"),
            envoy.counter("wasmcustom.api_warden.jwt.jwks.failed.total")
        )
    };
    eventually(
        "the first set",
        10,
        || send(&envoy, &token(&a)).status == 200,
        detail,
    );
    let resp = send(&envoy, &token(&a));
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    // Rotation: b is published, a removed. Tokens of a are refused from then on, even ones
    // verified (and cached) before.
    let old = token(&a);
    assert_eq!(send(&envoy, &old).status, 200);
    set(&idp, &[&jwk_b]);
    eventually(
        "the rotation",
        15,
        || send(&envoy, &token(&b)).status == 200 && send(&envoy, &old).status == 401,
        detail,
    );
    assert_eq!(send(&envoy, &old).error_code(), "token_unknown_kid");
    // The provider fails, garbles or publishes a symmetric key: the last good set stays.
    let fetched = idp.hits("/jwks");
    for answer in [
        Answer::Json(500, "{}".into()),
        Answer::Json(200, "<html>".into()),
        Answer::Json(
            200,
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string(),
        ),
    ] {
        idp.set("/jwks", answer);
        let before = idp.hits("/jwks");
        eventually("another fetch", 15, || idp.hits("/jwks") > before, detail);
        for _ in 0..4 {
            assert_eq!(send(&envoy, &token(&b)).status, 200);
        }
    }
    assert!(idp.hits("/jwks") > fetched);
    assert!(envoy.counter("wasmcustom.api_warden.jwt.jwks.failed.total") >= 3);
    assert!(envoy.counter("wasmcustom.api_warden.jwt.jwks.updated.total") >= 2);
    let log = envoy.log_text();
    assert!(log.contains("remote JWK set not refreshed"), "{log}");
    let prom = envoy.admin_get("/stats/prometheus").text();
    assert!(
        prom.contains("api_warden_jwt_jwks_total{fetch=\"failed\"}"),
        "{prom}"
    );
}

fn introspecting(idp: &Idp) -> Envoy {
    let cfg = json!({
        "auth_methods": ["api_key", "oauth2"],
        "oauth2": {"cluster": "idp", "path": "/introspect", "client_id": "api-warden",
                   "client_secret": "introspection-secret", "timeout_ms": 500},
        "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"]}],
        "rate_limiting": {"enabled": false}
    });
    Envoy::start_with(&cfg, 2, &[("idp", idp.port)])
}

#[test]
fn opaque_bearer_tokens_are_introspected_cached_and_fail_closed() {
    let idp = Idp::start();
    let envoy = introspecting(&idp);
    let path = "/introspect";
    idp.set(
        path,
        Answer::Json(
            200,
            json!({"active": true, "client_id": "marketing", "scope": "send",
                   "exp": now() + 300})
            .to_string(),
        ),
    );
    let resp = send(&envoy, "opaque-token-1");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.upstream_header("x-client-id").as_deref(),
        Some("marketing")
    );
    assert_eq!(
        resp.upstream_header("x-auth-method").as_deref(),
        Some("oauth2")
    );
    assert_eq!(
        resp.upstream_header("x-client-scopes").as_deref(),
        Some("send")
    );
    assert_eq!(
        resp.upstream_header("authorization"),
        None,
        "the token stays here"
    );
    // The filter authenticated itself (client_secret_basic) and sent the token as a form.
    let (head, body) = idp.last(path).unwrap();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "api-warden:introspection-secret",
    );
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "authorization: basic {}",
            basic.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert_eq!(body, b"token=opaque-token-1&token_type_hint=access_token");
    // Cached in shared data: every worker answers without asking again.
    let asked = idp.hits(path);
    for _ in 0..8 {
        assert_eq!(send(&envoy, "opaque-token-1").status, 200);
    }
    assert_eq!(idp.hits(path), asked);
    // An inactive token is refused (and remembered briefly).
    idp.set(
        path,
        Answer::Json(200, json!({"active": false}).to_string()),
    );
    let resp = send(&envoy, "opaque-token-2");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (401, "token_inactive")
    );
    assert!(!resp.reached_upstream());
    // A provider that fails, garbles or hangs: 503, never a pass.
    for (n, answer) in [
        Answer::Json(500, "{}".into()),
        Answer::Json(200, "<html>".into()),
        Answer::Hang,
    ]
    .into_iter()
    .enumerate()
    {
        idp.set(path, answer);
        let resp = send(&envoy, &format!("opaque-token-fail-{n}"));
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert_eq!(resp.error_code(), "introspection_unavailable");
        assert!(!resp.reached_upstream());
    }
    assert!(envoy.counter("wasmcustom.api_warden.auth.oauth2.success.total") >= 9);
    assert!(envoy.counter("wasmcustom.api_warden.denied.introspection_unavailable.total") >= 3);
}

/// A CA, a server certificate for 127.0.0.1, and client certificates, made with openssl.
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("aw-pki-{}-{}", std::process::id(), now()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        pki.issue("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1");
        pki
    }

    fn openssl(&self, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `name.pem` and `name.key`, signed by the CA.
    fn issue(&self, name: &str, subject: &str, ext: &str) {
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.join(&extf), format!("{ext}\n")).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extf,
        ]);
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// The TLS listener: client certificates asked for and checked against the CA.
    fn tls_listener(&self, yaml: String) -> String {
        let socket = format!(
            "    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          require_client_certificate: false\n          common_tls_context:\n            tls_certificates:\n            - certificate_chain: {{ filename: {} }}\n              private_key: {{ filename: {} }}\n            validation_context:\n              trusted_ca: {{ filename: {} }}\n      filters:\n",
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem")
        );
        yaml.replacen("    - filters:\n", &socket, 1)
    }

    /// A request over TLS with curl, with this client certificate (or none): status and body.
    fn get(&self, port: u16, path: &str, client: Option<&str>) -> (u16, Value) {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-sS",
            "--cacert",
            &self.path("ca.pem"),
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(c) = client {
            cmd.args(["--cert", &self.path(&format!("{c}.pem"))]);
            cmd.args(["--key", &self.path(&format!("{c}.key"))]);
        }
        let out = cmd
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn client_certificates_identify_clients_over_tls() {
    let pki = Pki::new();
    pki.issue("acme", "/CN=acme", "subjectAltName=URI:spiffe://test/acme");
    pki.issue(
        "lowly",
        "/CN=lowly",
        "subjectAltName=URI:spiffe://test/lowly",
    );
    pki.issue(
        "stranger",
        "/CN=stranger",
        "subjectAltName=URI:spiffe://test/stranger",
    );
    let cfg = json!({
        "auth_methods": ["mtls", "api_key"],
        "clients": [
            {"client_id": "acme", "security_level": "critical", "allowed_endpoints": ["/api/*"],
             "certificate": {"uri_san": "spiffe://test/acme", "subject": "CN=acme"},
             "require_mtls": true,
             "api_keys": [hex::encode(api_warden::auth::api_key::digest(b"ak_acme_key_000000000000000000000001"))]},
            {"client_id": "lowly", "allowed_endpoints": ["/api/*"],
             "certificate": {"uri_san": "spiffe://test/lowly"}}
        ],
        "routes": [{"pattern": "/api/admin/*", "security_level": "critical"}],
        "rate_limiting": {"enabled": false}
    });
    let envoy = Envoy::try_start_edited(&cfg, 2, &[], &|y| pki.tls_listener(y)).unwrap();
    // The certificate is the credential: the client it maps to reaches the upstream.
    let (status, body) = pki.get(envoy.port, "/api/admin/x", Some("acme"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-client-id"], "acme");
    assert_eq!(body["headers"]["x-auth-method"], "mtls");
    // No certificate: no credential. A certificate the CA signed for no configured client: 401.
    let (status, body) = pki.get(envoy.port, "/api/send/x", None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_credentials"))
    );
    let (status, body) = pki.get(envoy.port, "/api/send/x", Some("stranger"));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unknown_certificate"))
    );
    // A client below the route's level is refused there, allowed elsewhere.
    let (status, body) = pki.get(envoy.port, "/api/admin/x", Some("lowly"));
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_security_level"))
    );
    assert_eq!(pki.get(envoy.port, "/api/send/x", Some("lowly")).0, 200);
    // A client that must use its certificate cannot use its API key instead.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &pki.path("ca.pem"),
            "-H",
            "X-API-Key: ak_acme_key_000000000000000000000001",
        ])
        .arg(format!("https://127.0.0.1:{}/api/send/x", envoy.port))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"], "mtls_required", "{body}");
}

/// The decision reaches Envoy's access log through filter state (`filter_state: true`), with
/// the format the README shows.
#[test]
fn the_decision_reaches_the_access_log_as_filter_state() {
    const KEY: &str = "ak_access_log_client_key_0000000001";
    let cfg = json!({
        "auth_methods": ["api_key"],
        "filter_state": true,
        "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"],
                     "api_keys": [api_warden::admin::hash_key(KEY)]}],
    });
    let dir = std::env::temp_dir().join(format!("aw-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let format = "%RESPONSE_CODE% client=%FILTER_STATE(wasm.api_warden.client_id:PLAIN)% \
                  method=%FILTER_STATE(wasm.api_warden.auth_method:PLAIN)% \
                  level=%FILTER_STATE(wasm.api_warden.security_level:PLAIN)% \
                  limit=%FILTER_STATE(wasm.api_warden.rate_limit:PLAIN)% \
                  denial=%FILTER_STATE(wasm.api_warden.denial:PLAIN)%\n";
    let access_log = format!(
        "          stat_prefix: api\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format: {{ text_format_source: {{ inline_string: {:?} }} }}\n",
        log.display(),
        format
    );
    let envoy = Envoy::try_start_edited(&cfg, 2, &[], &|y| {
        y.replacen("          stat_prefix: api\n", &access_log, 1)
    })
    .unwrap();
    let ok: Vec<(&str, &[u8])> = vec![("X-API-Key", KEY.as_bytes())];
    assert_eq!(
        http::send(envoy.port, &request("GET", b"/api/send/x", &ok, b""))
            .unwrap()
            .status,
        200
    );
    let bad: Vec<(&str, &[u8])> = vec![("X-API-Key", b"ak_not_a_key_00000000000000000001")];
    assert_eq!(
        http::send(envoy.port, &request("GET", b"/api/send/x", &bad, b""))
            .unwrap()
            .status,
        401
    );
    let deadline = Instant::now() + StdDuration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(StdDuration::from_millis(100));
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!("access log:\n{lines}");
    assert!(
        lines.contains("200 client=marketing method=api_key level=standard limit=allowed denial=-"),
        "{lines}"
    );
    assert!(
        lines.contains("401 client=- method=- level=standard limit=")
            && lines.contains("denial=invalid_api_key"),
        "{lines}"
    );
}
