//! HMAC-SHA256 request signatures (the seed's scheme, for clients with `seed_signatures`; new
//! integrations use RFC 9421, `http_signature`). The client signs
//! `METHOD \n TARGET \n BODY \n TIMESTAMP [\n NONCE]` with its secret and sends the lowercase hex
//! digest in `X-Signature`, with `X-Client-Id`, `X-Timestamp` (Unix seconds) and optionally
//! `X-Nonce`. TARGET is the request target as sent, query included: an unsigned query string
//! would let anyone replay a signature with other parameters.

pub mod replay;
pub mod shared_replay;

use super::credentials::Credentials;
use super::{
    unauthorized, Attempt, AuthContext, AuthMethod, Failure, Identity, Method, RequestFacts,
    Resume, Suspension, Wait,
};
use crate::callout::CalloutAnswer;
use crate::denial::Denial;
use crate::field::{within, ConfigError};
use crate::store::{SharedStore, StoreError};
use hmac::{Hmac, Mac};
use replay::{ReplayTable, ReplayVerdict};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const DEFAULT_WINDOW_SECONDS: u64 = 300;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    #[serde(default)]
    pub timestamp_window_seconds: Option<u64>,
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    #[serde(default)]
    pub replay_cache_slots: Option<usize>,
    #[serde(default)]
    pub replay_slot_entries: Option<usize>,
}

/// Per signing client: 16 x 64 live signatures within the window by default.
const DEFAULT_REPLAY_SLOTS: usize = 16;
const DEFAULT_REPLAY_SLOT_ENTRIES: usize = 64;

#[derive(Debug, Clone)]
pub struct HmacSettings {
    pub window_seconds: u64,
    pub max_body_bytes: usize,
    pub replay: ReplayTable,
    /// Set by the configuration when Redis is configured: signatures are recorded there too.
    pub shared_replay: Option<shared_replay::SharedReplay>,
}

impl HmacSettings {
    pub fn compile(raw: &RawHmac) -> Result<Self, ConfigError> {
        Ok(Self {
            window_seconds: within(
                "hmac.timestamp_window_seconds",
                raw.timestamp_window_seconds,
                DEFAULT_WINDOW_SECONDS,
                1..=86_400,
            )?,
            max_body_bytes: within(
                "hmac.max_body_bytes",
                raw.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
                1..=64 * 1024 * 1024,
            )?,
            replay: ReplayTable {
                slots: within(
                    "hmac.replay_cache_slots",
                    raw.replay_cache_slots,
                    DEFAULT_REPLAY_SLOTS,
                    1..=4096,
                )?,
                per_slot: within(
                    "hmac.replay_slot_entries",
                    raw.replay_slot_entries,
                    DEFAULT_REPLAY_SLOT_ENTRIES,
                    1..=4096,
                )?,
            },
            shared_replay: None,
        })
    }
}

/// The headers of one signed request, as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub client_id: String,
    pub timestamp: String,
    pub signature: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFailure {
    /// Some of X-Client-Id / X-Timestamp / X-Signature are missing or not text.
    Incomplete,
    BadTimestamp,
    Stale,
    FromTheFuture,
    Malformed,
    Mismatch,
}

impl SignatureFailure {
    pub fn code(self) -> &'static str {
        match self {
            Self::Incomplete => "signature_incomplete",
            Self::BadTimestamp => "signature_bad_timestamp",
            Self::Stale => "signature_expired",
            Self::FromTheFuture => "signature_from_future",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Incomplete => "X-Client-Id, X-Timestamp and X-Signature are all required",
            Self::BadTimestamp => "X-Timestamp must be Unix seconds",
            Self::Stale => "request timestamp is older than the accepted window",
            Self::FromTheFuture => "request timestamp is ahead of the accepted window",
            Self::Malformed => "X-Signature must be 64 hex digits",
            Self::Mismatch => "signature does not match the request",
        }
    }
}

/// A client's signing secret made ready once, at configuration: HMAC hashes the key's inner and
/// outer blocks before any message, two SHA-256 blocks that every signed request (either
/// scheme) would otherwise hash again. Boxed: a client without a secret pays one pointer, not
/// the MAC's 152 bytes (inline, 10,000 clients took 21.8 MiB per worker, not 18.4). Its
/// `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct SigningKey(Box<HmacSha256>);

impl SigningKey {
    /// `None` only if the HMAC library refused the key, which it never does (any length is
    /// valid).
    pub fn new(secret: &[u8]) -> Option<Self> {
        HmacSha256::new_from_slice(secret)
            .ok()
            .map(|mac| Self(Box::new(mac)))
    }

    /// A MAC under this key with nothing hashed yet (a copy on the stack: no allocation).
    pub fn mac(&self) -> HmacSha256 {
        HmacSha256::clone(&self.0)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

fn mac(
    key: &SigningKey,
    method: &str,
    target: &str,
    body: &[u8],
    timestamp: &str,
    nonce: Option<&str>,
) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(target.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac.update(b"\n");
    mac.update(timestamp.as_bytes());
    if let Some(nonce) = nonce {
        mac.update(b"\n");
        mac.update(nonce.as_bytes());
    }
    mac
}

/// Signs a request the way clients must: lowercase hex of HMAC-SHA256. Use this from Rust
/// clients (see `examples/sign.rs`); the README has the equivalent openssl recipe.
pub fn sign(
    secret: &[u8],
    method: &str,
    target: &str,
    body: &[u8],
    timestamp: &str,
    nonce: Option<&str>,
) -> String {
    SigningKey::new(secret)
        .map(|key| {
            let mac = mac(&key, method, target, body, timestamp, nonce);
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default()
}

/// Checks the timestamp window. Returns the timestamp in seconds.
pub fn check_timestamp(timestamp: &str, now: u64, window: u64) -> Result<u64, SignatureFailure> {
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureFailure::BadTimestamp);
    }
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| SignatureFailure::BadTimestamp)?;
    if ts + window < now {
        return Err(SignatureFailure::Stale);
    }
    if ts > now + window {
        return Err(SignatureFailure::FromTheFuture);
    }
    Ok(ts)
}

/// Verifies the signature in constant time.
pub fn verify(
    key: &SigningKey,
    method: &str,
    target: &str,
    body: &[u8],
    req: &SignedRequest,
) -> Result<(), SignatureFailure> {
    if req.signature.len() != 64 {
        return Err(SignatureFailure::Malformed);
    }
    let presented = hex::decode(&req.signature).map_err(|_| SignatureFailure::Malformed)?;
    mac(
        key,
        method,
        target,
        body,
        &req.timestamp,
        req.nonce.as_deref(),
    )
    .verify_slice(&presented)
    .map_err(|_| SignatureFailure::Mismatch)
}

/// The refusal for a signed body longer than `hmac.max_body_bytes` (declared or received),
/// for both signing methods.
pub fn oversized(method: AuthMethod, ctx: &AuthContext, len: Option<u64>) -> Option<Attempt> {
    let max = ctx.settings.hmac.max_body_bytes;
    len.filter(|len| *len > max as u64).map(|_| {
        Attempt::Failed(Failure {
            method,
            denial: body_too_large(max),
        })
    })
}

pub fn body_too_large(max: usize) -> Denial {
    Denial::new(
        413,
        "body_too_large",
        format!("signed request bodies are limited to {max} bytes"),
    )
}

/// The HMAC method: `X-Signature` over method, target, body and timestamp. Without the body
/// yet, it checks what it can and waits for the body.
pub struct HmacMethod;

impl Method for HmacMethod {
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        facts: &RequestFacts,
    ) -> Option<Attempt> {
        let signed = creds.signed.as_ref()?;
        let max_bytes = ctx.settings.hmac.max_body_bytes;
        if let Some(body) = facts.body {
            return Some(verify_signed_body(ctx, signed, facts, body));
        }
        if let Some(refused) = oversized(AuthMethod::Hmac, ctx, facts.content_length) {
            return Some(refused);
        }
        Some(match precheck(ctx, signed) {
            Err(failure) => Attempt::Failed(failure),
            Ok((client, _)) => Attempt::Suspended(Suspension {
                method: AuthMethod::Hmac,
                claimed: Some(client),
                wait: Wait::Body { max_bytes },
                resume: Box::new(AwaitingBody(signed.clone())),
            }),
        })
    }

    fn prepare(
        &self,
        settings: &super::AuthSettings,
        directory: &dyn super::Directory,
        store: &dyn SharedStore,
    ) -> Result<(), StoreError> {
        let signing = (0..directory.count())
            .filter(|c| directory.hmac_key(*c).is_some())
            .map(|c| directory.id(c));
        settings.hmac.replay.prepare(store, signing)
    }
}

/// A signed request whose body is being read.
#[derive(Debug)]
struct AwaitingBody(SignedRequest);

impl Resume for AwaitingBody {
    fn with_body(self: Box<Self>, ctx: &AuthContext, facts: &RequestFacts, body: &[u8]) -> Attempt {
        if let Some(refused) = oversized(AuthMethod::Hmac, ctx, Some(body.len() as u64)) {
            return refused;
        }
        verify_signed_body(ctx, &self.0, facts, body)
    }

    fn with_answer(self: Box<Self>, _ctx: &AuthContext, _answer: &CalloutAnswer) -> Attempt {
        Attempt::Failed(unauthorized(
            AuthMethod::Hmac,
            "signature_incomplete",
            "a signed request waits for its body, not for a call",
        ))
    }
}

fn fail(f: SignatureFailure) -> Failure {
    unauthorized(AuthMethod::Hmac, f.code(), f.message())
}

/// Everything about a signed request that does not need its body: timestamp window, known
/// client, signing secret. Returns the claimed client's index and the signed timestamp.
fn precheck(ctx: &AuthContext, signed: &SignedRequest) -> Result<(usize, u64), Failure> {
    if signed.client_id.is_empty() || signed.timestamp.is_empty() {
        return Err(fail(SignatureFailure::Incomplete));
    }
    let window = ctx.settings.hmac.window_seconds;
    let ts = check_timestamp(&signed.timestamp, ctx.now, window).map_err(fail)?;
    // An unknown client, or one without a signing secret, gets the answer a wrong signature
    // gets: an unverified caller learns nothing about which clients exist.
    let index = ctx
        .directory
        .find(&signed.client_id)
        .ok_or_else(|| fail(SignatureFailure::Mismatch))?;
    // The seed's scheme only for clients that opted in (`seed_signatures`).
    match ctx.directory.hmac_key(index) {
        Some(_) if ctx.directory.seed_signatures(index) => Ok((index, ts)),
        _ => Err(fail(SignatureFailure::Mismatch)),
    }
}

/// Verifies a signed request against its body, then records it against replay: in this
/// proxy's table, then (with Redis) cluster-wide, waiting for that answer.
fn verify_signed_body(
    ctx: &AuthContext,
    signed: &SignedRequest,
    facts: &RequestFacts,
    body: &[u8],
) -> Attempt {
    let (identity, expires_at) = match verify_locally(ctx, signed, facts, body) {
        Ok(verified) => verified,
        Err(failure) => return Attempt::Failed(failure),
    };
    let Some(shared) = &ctx.settings.hmac.shared_replay else {
        return Attempt::Verified(identity);
    };
    let ttl = expires_at.saturating_sub(ctx.now);
    let (fingerprint, _) = ReplayTable::fingerprint(&signed.signature);
    let call = shared.record_call(ctx.directory.id(identity.client), &fingerprint, ttl);
    shared.suspend(identity, call)
}

/// The identity, and when the signature's timestamp leaves the window.
fn verify_locally(
    ctx: &AuthContext,
    signed: &SignedRequest,
    facts: &RequestFacts,
    body: &[u8],
) -> Result<(Identity, u64), Failure> {
    let (index, ts) = precheck(ctx, signed)?;
    let key = ctx
        .directory
        .hmac_key(index)
        .ok_or_else(|| fail(SignatureFailure::Mismatch))?;
    verify(key, facts.method, facts.target, body, signed).map_err(fail)?;
    let settings = &ctx.settings.hmac;
    let expires_at = ts + settings.window_seconds;
    let id = ctx.directory.id(index);
    let verdict =
        settings
            .replay
            .check_and_record(ctx.store, id, &signed.signature, expires_at, ctx.now);
    match verdict {
        ReplayVerdict::Fresh => {
            let identity = Identity {
                client: index,
                method: AuthMethod::Hmac,
                scopes: ctx.directory.scopes(index).to_vec(),
                warning: None,
                headers: Vec::new(),
            };
            Ok((identity, expires_at))
        }
        ReplayVerdict::Replayed => Err(shared_replay::replayed(AuthMethod::Hmac)),
        ReplayVerdict::Full | ReplayVerdict::Unavailable => Err(shared_replay::unavailable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"demo-marketing-hmac-secret-rotate-me";

    fn signed(
        method: &str,
        target: &str,
        body: &[u8],
        ts: &str,
        nonce: Option<&str>,
    ) -> SignedRequest {
        SignedRequest {
            client_id: "marketing".into(),
            timestamp: ts.into(),
            signature: sign(SECRET, method, target, body, ts, nonce),
            nonce: nonce.map(str::to_string),
        }
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // printf 'POST\n/api/send/bulk?x=1\n{"a":1}\n1700000000' |
        //   openssl dgst -sha256 -hmac demo-marketing-hmac-secret-rotate-me
        let sig = sign(
            SECRET,
            "POST",
            "/api/send/bulk?x=1",
            br#"{"a":1}"#,
            "1700000000",
            None,
        );
        assert_eq!(sig.len(), 64);
        assert_eq!(sig, sig.to_lowercase());
        let expected = {
            let mut m = HmacSha256::new_from_slice(SECRET).unwrap();
            m.update(b"POST\n/api/send/bulk?x=1\n{\"a\":1}\n1700000000");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(sig, expected);
    }

    fn key(secret: &[u8]) -> SigningKey {
        SigningKey::new(secret).unwrap()
    }

    #[test]
    fn a_prepared_key_carries_nothing_from_one_request_to_the_next() {
        // The filter keeps one key per client for every request: each MAC starts from the
        // key alone, whatever the requests before it hashed or whether they matched.
        let key = key(SECRET);
        let genuine = signed("POST", "/api/send/x", b"body", "100", Some("n-1"));
        let other = signed("POST", "/api/send/x", b"other body", "100", Some("n-2"));
        for _ in 0..3 {
            assert_eq!(
                verify(&key, "POST", "/api/send/x", b"body", &genuine),
                Ok(())
            );
            assert_eq!(
                verify(&key, "POST", "/api/send/x", b"body", &other),
                Err(SignatureFailure::Mismatch)
            );
        }
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
        // One pointer per client, secret or not.
        assert_eq!(
            std::mem::size_of::<Option<SigningKey>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn genuine_request_verifies() {
        let req = signed("POST", "/api/send/x?a=1", b"body", "100", None);
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x?a=1", b"body", &req),
            Ok(())
        );
        let req = signed("POST", "/api/send/x", b"body", "100", Some("n-1"));
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x", b"body", &req),
            Ok(())
        );
    }

    #[test]
    fn tampering_with_any_part_fails() {
        let req = signed("POST", "/api/send/x?a=1", b"body", "100", Some("n"));
        let m = Err(SignatureFailure::Mismatch);
        assert_eq!(
            verify(&key(SECRET), "PUT", "/api/send/x?a=1", b"body", &req),
            m
        );
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/y?a=1", b"body", &req),
            m
        );
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x?a=2", b"body", &req),
            m
        );
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x", b"body", &req),
            m
        );
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x?a=1", b"bodY", &req),
            m
        );
        assert_eq!(
            verify(&key(b"other"), "POST", "/api/send/x?a=1", b"body", &req),
            m
        );
        let mut other_ts = req.clone();
        other_ts.timestamp = "101".into();
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x?a=1", b"body", &other_ts),
            m
        );
        let mut other_nonce = req.clone();
        other_nonce.nonce = Some("m".into());
        assert_eq!(
            verify(
                &key(SECRET),
                "POST",
                "/api/send/x?a=1",
                b"body",
                &other_nonce
            ),
            m
        );
        let mut garbage = req;
        garbage.signature = "zz".repeat(32);
        assert_eq!(
            verify(&key(SECRET), "POST", "/api/send/x?a=1", b"body", &garbage),
            Err(SignatureFailure::Malformed)
        );
    }

    #[test]
    fn timestamp_window() {
        assert_eq!(check_timestamp("1000", 1300, 300), Ok(1000));
        assert_eq!(
            check_timestamp("1000", 1301, 300),
            Err(SignatureFailure::Stale)
        );
        assert_eq!(check_timestamp("1300", 1000, 300), Ok(1300));
        assert_eq!(
            check_timestamp("1301", 1000, 300),
            Err(SignatureFailure::FromTheFuture)
        );
        for bad in ["", "-5", "12a", "1e9", "9999999999999", " 1000"] {
            assert_eq!(
                check_timestamp(bad, 1000, 300),
                Err(SignatureFailure::BadTimestamp),
                "{bad}"
            );
        }
    }
}
