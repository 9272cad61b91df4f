//! Replay protection across proxies. The per-proxy table (`replay.rs`) cannot see a signature
//! another Envoy accepted, so with Redis configured every signature that is fresh here is also
//! recorded there (`SET key 1 NX EX ttl` through webdis), and the request waits for the answer:
//! stored means fresh everywhere; already there means replayed on another proxy.

use super::super::{unauthorized, Attempt, AuthContext, AuthMethod, Failure, Identity};
use super::super::{RequestFacts, Resume, Suspension, Wait};
use crate::callout::{CalloutAnswer, CalloutSpec};
use crate::denial::Denial;
use crate::ratelimit::redis::encode;
use serde_json::Value;

/// Where signatures are recorded cluster-wide (the rate limiter's webdis, when configured).
#[derive(Debug, Clone)]
pub struct SharedReplay {
    pub upstream: String,
    pub authority: String,
    pub authorization: Option<String>,
    pub timeout_ms: u64,
    pub key_prefix: String,
    /// Redis could not answer: accept what the local check accepted (`failure_mode: allow`),
    /// or refuse with 503 (`deny`, the default).
    pub fail_open: bool,
}

impl SharedReplay {
    /// The call that records `fingerprint` for `client_id` until `ttl_seconds` from now.
    pub fn record_call(
        &self,
        client_id: &str,
        fingerprint: &[u8; 16],
        ttl_seconds: u64,
    ) -> CalloutSpec {
        let key = format!(
            "{}:replay:{client_id}:{}",
            self.key_prefix,
            hex::encode(fingerprint)
        );
        CalloutSpec {
            upstream: self.upstream.clone(),
            authority: self.authority.clone(),
            method: "GET",
            path: format!("/SET/{}/1/NX/EX/{}", encode(&key), ttl_seconds.max(1)),
            headers: self
                .authorization
                .iter()
                .map(|v| ("authorization".to_string(), v.clone()))
                .collect(),
            body: Vec::new(),
            timeout_ms: self.timeout_ms,
            grpc: None,
        }
    }

    /// Suspends a verified, locally fresh signature until Redis has recorded it.
    pub fn suspend(&self, identity: Identity, call: CalloutSpec) -> Attempt {
        Attempt::Suspended(Suspension {
            method: identity.method,
            claimed: Some(identity.client),
            wait: Wait::Call(call),
            resume: Box::new(Recording {
                identity,
                fail_open: self.fail_open,
            }),
        })
    }
}

/// What webdis said to `SET ... NX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    AlreadyThere,
    Failed,
}

pub fn parse(answer: &CalloutAnswer) -> Recorded {
    let CalloutAnswer::Response { status: 200, body } = answer else {
        return Recorded::Failed;
    };
    match serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("SET").cloned())
    {
        Some(Value::Null) => Recorded::AlreadyThere,
        Some(Value::Array(a)) if a.first() == Some(&Value::Bool(true)) => Recorded::Stored,
        _ => Recorded::Failed,
    }
}

#[derive(Debug)]
struct Recording {
    identity: Identity,
    fail_open: bool,
}

impl Resume for Recording {
    fn with_body(self: Box<Self>, _: &AuthContext, _: &RequestFacts, _: &[u8]) -> Attempt {
        Attempt::Failed(unavailable_for(self.identity.method))
    }

    fn with_answer(self: Box<Self>, _ctx: &AuthContext, answer: &CalloutAnswer) -> Attempt {
        match parse(answer) {
            Recorded::Stored => Attempt::Verified(self.identity),
            Recorded::AlreadyThere => Attempt::Failed(replayed(self.identity.method)),
            Recorded::Failed if self.fail_open => Attempt::Verified(self.identity),
            Recorded::Failed => Attempt::Failed(unavailable_for(self.identity.method)),
        }
    }
}

/// A signature already used, here or on another proxy.
pub fn replayed(method: AuthMethod) -> Failure {
    let hint = match method {
        AuthMethod::HttpSignature => "a distinct nonce allows identical requests",
        _ => "X-Nonce allows identical requests",
    };
    unauthorized(
        method,
        "signature_replayed",
        &format!("this signature was already used; sign each request anew ({hint})"),
    )
}

pub fn unavailable() -> Failure {
    unavailable_for(AuthMethod::Hmac)
}

pub fn unavailable_for(method: AuthMethod) -> Failure {
    Failure {
        method,
        denial: Denial::new(
            503,
            "replay_cache_unavailable",
            "signed requests cannot be checked for replay right now; retry shortly",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webdis_answers_decide_fresh_replayed_or_failed() {
        let ok = |body: &str| CalloutAnswer::Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(parse(&ok(r#"{"SET":[true,"OK"]}"#)), Recorded::Stored);
        assert_eq!(parse(&ok(r#"{"SET":null}"#)), Recorded::AlreadyThere);
        assert_eq!(parse(&ok(r#"{"SET":[false,"ERR x"]}"#)), Recorded::Failed);
        assert_eq!(parse(&ok("<html>")), Recorded::Failed);
        assert_eq!(parse(&CalloutAnswer::NoResponse), Recorded::Failed);
        let forbidden = CalloutAnswer::Response {
            status: 403,
            body: vec![],
        };
        assert_eq!(parse(&forbidden), Recorded::Failed);
    }

    #[test]
    fn the_record_call_is_a_set_nx_with_the_window_as_ttl() {
        let r = SharedReplay {
            upstream: "webdis".into(),
            authority: "webdis".into(),
            authorization: Some("Basic eA==".into()),
            timeout_ms: 100,
            key_prefix: "aw".into(),
            fail_open: false,
        };
        let call = r.record_call("team/a", &[0xab; 16], 300);
        assert_eq!(
            call.path,
            format!(
                "/SET/aw%3Areplay%3Ateam%2Fa%3A{}/1/NX/EX/300",
                "ab".repeat(16)
            )
        );
        assert_eq!(call.headers[0].1, "Basic eA==");
    }
}
