//! RFC 9421 HTTP Message Signatures with `hmac-sha256`: the standard, unambiguous signing
//! scheme. `keyid` names the client (its `client_secret` is the key), the body is covered
//! through `Content-Digest` (RFC 9530), `created` must be inside the window of
//! `hmac.timestamp_window_seconds` and each signature is accepted once (the replay table of
//! `hmac_signature`, and Redis when configured); `nonce` lets a client send identical requests.
//!
//! The whole signature is checked in the header phase (it covers the `Content-Digest` header,
//! not the body); the body phase only checks the body against that header.

pub mod base;
pub mod digest;

use super::credentials::{Credentials, MessageSignature};
use super::hmac_signature::replay::{ReplayTable, ReplayVerdict};
use super::hmac_signature::{oversized, shared_replay, SigningKey};
use super::{
    unauthorized, Attempt, AuthContext, AuthMethod, Failure, Identity, Method, RequestFacts,
    Resume, Suspension, Wait,
};
use crate::callout::CalloutAnswer;
use crate::field::ConfigError;
use base::{signature_base, ComponentError, SignedParts};
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::Deserialize;
use sfv::{BareItem, Dictionary, InnerList, ListEntry, ListSerializer, Parser};
use sha2::Sha256;

pub const ALGORITHM: &str = "hmac-sha256";

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttpSignature {
    /// Components every signature must cover besides `@method`, the target (`@target-uri`,
    /// `@request-target`, or `@path` with `@query`) and, for a request with a body,
    /// `content-digest` (those are always required).
    #[serde(default)]
    pub required_components: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct HttpSignatureSettings {
    pub required_components: Vec<String>,
}

impl HttpSignatureSettings {
    pub fn compile(raw: &RawHttpSignature) -> Result<Self, ConfigError> {
        for (i, id) in raw.required_components.iter().enumerate() {
            let field = format!("http_signature.required_components[{i}]");
            let probe = SignedParts {
                method: "GET",
                target: "/",
                headers: &Default::default(),
            };
            let known = matches!(probe.value(id), Ok(_) | Err(ComponentError::Missing(_)));
            if !known
                || id
                    .bytes()
                    .any(|b| b.is_ascii_uppercase() || !b.is_ascii_graphic())
            {
                return Err(ConfigError::new(
                    field,
                    "must be a lowercase header name or one of @method, @target-uri, @authority, @scheme, @request-target, @path, @query",
                ));
            }
        }
        Ok(Self {
            required_components: raw.required_components.clone(),
        })
    }
}

/// Why a signature was refused; the codes clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Insufficient,
    Unsupported,
    Stale,
    FromTheFuture,
    Expired,
    Mismatch,
    DigestMismatch,
}

impl Refusal {
    fn failure(self) -> Failure {
        let (code, message) = match self {
            Self::Malformed => (
                "signature_malformed",
                "Signature-Input and Signature must be structured fields with one labelled signature that has keyid and created",
            ),
            Self::Insufficient => (
                "signature_insufficient",
                "the signature must cover @method, the target (@target-uri, or @path and @query), content-digest when there is a body, and the configured components",
            ),
            Self::Unsupported => (
                "signature_unsupported",
                "only hmac-sha256 and the components @method, @target-uri, @authority, @scheme, @request-target, @path, @query and header fields without parameters are supported",
            ),
            Self::Stale => (
                "signature_expired",
                "the signature's created time is older than the accepted window",
            ),
            Self::FromTheFuture => (
                "signature_from_future",
                "the signature's created time is ahead of the accepted window",
            ),
            Self::Expired => ("signature_expired", "the signature's expires time has passed"),
            Self::Mismatch => ("signature_mismatch", "signature does not match the request"),
            Self::DigestMismatch => (
                "digest_mismatch",
                "Content-Digest does not match the body (or has no sha-256 or sha-512 member)",
            ),
        };
        unauthorized(AuthMethod::HttpSignature, code, message)
    }
}

/// One signature from `Signature-Input` and `Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub components: Vec<String>,
    /// The signature parameters as serialized for `@signature-params`.
    pub params: String,
    pub keyid: String,
    pub created: u64,
    pub expires: Option<u64>,
    pub signature: Vec<u8>,
}

fn string_param(value: &BareItem) -> Result<String, Refusal> {
    match value {
        BareItem::String(s) => Ok(s.as_str().to_string()),
        _ => Err(Refusal::Malformed),
    }
}

fn time_param(value: &BareItem) -> Result<u64, Refusal> {
    match value {
        BareItem::Integer(i) => u64::try_from(i64::from(*i)).map_err(|_| Refusal::Malformed),
        _ => Err(Refusal::Malformed),
    }
}

/// Reads the first signature in `Signature-Input` that names a key; the others (a proxy's,
/// say) are not ours to check.
pub fn parse(headers: &MessageSignature) -> Result<Presented, Refusal> {
    let inputs: Dictionary = Parser::new(&headers.input)
        .parse()
        .map_err(|_| Refusal::Malformed)?;
    let signatures: Dictionary = Parser::new(&headers.signature)
        .parse()
        .map_err(|_| Refusal::Malformed)?;
    let (label, inner) = inputs
        .iter()
        .find_map(|(label, entry)| match entry {
            ListEntry::InnerList(inner) if inner.params.keys().any(|k| k.as_str() == "keyid") => {
                Some((label, inner))
            }
            _ => None,
        })
        .ok_or(Refusal::Malformed)?;
    let components = components(inner)?;
    let (mut keyid, mut created, mut expires) = (None, None, None);
    for (name, value) in &inner.params {
        match name.as_str() {
            "keyid" => keyid = Some(string_param(value)?),
            "created" => created = Some(time_param(value)?),
            "expires" => expires = Some(time_param(value)?),
            "alg" => match value {
                BareItem::String(alg) if alg.as_str() == ALGORITHM => {}
                BareItem::String(_) => return Err(Refusal::Unsupported),
                _ => return Err(Refusal::Malformed),
            },
            // nonce, tag and others are covered through @signature-params.
            _ => {}
        }
    }
    let signature = match signatures.iter().find(|(l, _)| *l == label) {
        Some((_, ListEntry::Item(item))) => match &item.bare_item {
            BareItem::ByteSequence(bytes) => bytes.clone(),
            _ => return Err(Refusal::Malformed),
        },
        _ => return Err(Refusal::Malformed),
    };
    Ok(Presented {
        components,
        params: serialize_params(inner).ok_or(Refusal::Malformed)?,
        keyid: keyid.ok_or(Refusal::Malformed)?,
        created: created.ok_or(Refusal::Malformed)?,
        expires,
        signature,
    })
}

/// The inner list as `@signature-params` shows it (RFC 9421 §2.3), serialized in place.
fn serialize_params(inner: &InnerList) -> Option<String> {
    let mut list = ListSerializer::new();
    let mut items = list.inner_list();
    items.items(&inner.items);
    items.finish().parameters(&inner.params);
    list.finish()
}

fn components(inner: &InnerList) -> Result<Vec<String>, Refusal> {
    let mut ids: Vec<String> = Vec::with_capacity(inner.items.len());
    for item in &inner.items {
        let BareItem::String(id) = &item.bare_item else {
            return Err(Refusal::Malformed);
        };
        if !item.params.is_empty() {
            return Err(Refusal::Unsupported);
        }
        let id = id.as_str().to_string();
        if ids.contains(&id) {
            return Err(Refusal::Malformed);
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Whether the covered components meet what every signature must cover.
fn sufficient(covered: &[String], has_body: bool, required: &[String]) -> bool {
    let has = |id: &str| covered.iter().any(|c| c == id);
    let target = has("@target-uri") || has("@request-target") || (has("@path") && has("@query"));
    has("@method")
        && target
        && (!has_body || has("content-digest"))
        && required.iter().all(|r| has(r))
}

fn mac(key: &SigningKey, base: &[u8]) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(base);
    mac
}

/// Signs `parts` for a client: the `Signature-Input` and `Signature` values (label `sig1`).
/// For Rust clients and tests; any RFC 9421 library does the same.
pub fn sign(
    secret: &[u8],
    keyid: &str,
    parts: &SignedParts,
    components: &[&str],
    created: u64,
    nonce: Option<&str>,
) -> Option<(String, String)> {
    use base64::Engine;
    let mut params = format!(
        "({})",
        components
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    params.push_str(&format!(
        ";created={created};keyid=\"{keyid}\";alg=\"{ALGORITHM}\""
    ));
    if let Some(nonce) = nonce {
        params.push_str(&format!(";nonce=\"{nonce}\""));
    }
    let ids: Vec<String> = components.iter().map(|c| c.to_string()).collect();
    let base = signature_base(parts, &ids, &params).ok()?;
    let signature = mac(&SigningKey::new(secret)?, &base)
        .finalize()
        .into_bytes();
    Some((
        format!("sig1={params}"),
        format!(
            "sig1=:{}:",
            base64::engine::general_purpose::STANDARD.encode(signature)
        ),
    ))
}

/// The RFC 9421 method.
pub struct HttpSignatureMethod;

impl Method for HttpSignatureMethod {
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        facts: &RequestFacts,
    ) -> Option<Attempt> {
        let headers = creds.message_signature.as_ref()?;
        Some(match check_headers(ctx, headers, facts) {
            Err(failure) => Attempt::Failed(failure),
            Ok(checked) => match facts.body {
                Some(body) => checked.finish(ctx, body),
                None => {
                    let method = AuthMethod::HttpSignature;
                    if let Some(refused) = oversized(method, ctx, facts.content_length) {
                        return Some(refused);
                    }
                    let max_bytes = ctx.settings.hmac.max_body_bytes;
                    Attempt::Suspended(Suspension {
                        method: AuthMethod::HttpSignature,
                        claimed: Some(checked.identity.client),
                        wait: Wait::Body { max_bytes },
                        resume: Box::new(checked),
                    })
                }
            },
        })
    }
}

/// A signature that verified over the headers; the body (through its digest) and the replay
/// check remain.
#[derive(Debug)]
struct Checked {
    identity: Identity,
    /// The covered `Content-Digest` value, if covered.
    digest: Option<Vec<u8>>,
    /// What the replay table records (the signature, hex).
    fingerprint: String,
    expires_at: u64,
}

fn check_headers(
    ctx: &AuthContext,
    headers: &MessageSignature,
    facts: &RequestFacts,
) -> Result<Checked, Failure> {
    let presented = parse(headers).map_err(Refusal::failure)?;
    let settings = &ctx.settings;
    let has_body = facts.body.is_none_or(|b| !b.is_empty());
    if !sufficient(
        &presented.components,
        has_body,
        &settings.http_signature.required_components,
    ) {
        return Err(Refusal::Insufficient.failure());
    }
    let window = settings.hmac.window_seconds;
    if presented.created.saturating_add(window) < ctx.now {
        return Err(Refusal::Stale.failure());
    }
    if presented.created > ctx.now.saturating_add(window) {
        return Err(Refusal::FromTheFuture.failure());
    }
    if presented.expires.is_some_and(|e| e < ctx.now) {
        return Err(Refusal::Expired.failure());
    }
    // An unknown key gets the answer a wrong signature gets: nothing about which clients exist.
    let client = ctx
        .directory
        .find(&presented.keyid)
        .ok_or_else(|| Refusal::Mismatch.failure())?;
    let key = ctx
        .directory
        .hmac_key(client)
        .ok_or_else(|| Refusal::Mismatch.failure())?;
    let parts = SignedParts {
        method: facts.method,
        target: facts.target,
        headers: facts.headers,
    };
    let base =
        signature_base(&parts, &presented.components, &presented.params).map_err(|e| match e {
            ComponentError::Unsupported(_) => Refusal::Unsupported.failure(),
            ComponentError::Missing(_) => Refusal::Mismatch.failure(),
        })?;
    mac(key, &base)
        .verify_slice(&presented.signature)
        .map_err(|_| Refusal::Mismatch.failure())?;
    let digest = presented
        .components
        .iter()
        .any(|c| c == "content-digest")
        .then(|| parts.value("content-digest").ok())
        .flatten();
    let window_end = presented.created.saturating_add(window);
    Ok(Checked {
        identity: Identity {
            client,
            method: AuthMethod::HttpSignature,
            scopes: ctx.directory.scopes(client).to_vec(),
            warning: None,
            headers: Vec::new(),
        },
        digest,
        fingerprint: hex::encode(&presented.signature),
        expires_at: presented.expires.map_or(window_end, |e| e.min(window_end)),
    })
}

impl Checked {
    /// Checks the body against the covered digest, then records the signature against replay.
    fn finish(self, ctx: &AuthContext, body: &[u8]) -> Attempt {
        match &self.digest {
            Some(header) if digest::verify(header, body).is_err() => {
                return Attempt::Failed(Refusal::DigestMismatch.failure())
            }
            // `sufficient` required a covered digest for any body.
            None if !body.is_empty() => return Attempt::Failed(Refusal::Insufficient.failure()),
            _ => {}
        }
        let hmac = &ctx.settings.hmac;
        let id = ctx.directory.id(self.identity.client);
        let verdict = hmac.replay.check_and_record(
            ctx.store,
            id,
            &self.fingerprint,
            self.expires_at,
            ctx.now,
        );
        match verdict {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Replayed => {
                return Attempt::Failed(shared_replay::replayed(AuthMethod::HttpSignature))
            }
            ReplayVerdict::Full | ReplayVerdict::Unavailable => {
                return Attempt::Failed(shared_replay::unavailable_for(AuthMethod::HttpSignature))
            }
        }
        let Some(shared) = &hmac.shared_replay else {
            return Attempt::Verified(self.identity);
        };
        let (fingerprint, _) = ReplayTable::fingerprint(&self.fingerprint);
        let ttl = self.expires_at.saturating_sub(ctx.now);
        let call = shared.record_call(id, &fingerprint, ttl);
        shared.suspend(self.identity, call)
    }
}

impl Resume for Checked {
    fn with_body(
        self: Box<Self>,
        ctx: &AuthContext,
        _facts: &RequestFacts,
        body: &[u8],
    ) -> Attempt {
        let len = Some(body.len() as u64);
        if let Some(refused) = oversized(AuthMethod::HttpSignature, ctx, len) {
            return refused;
        }
        self.finish(ctx, body)
    }

    fn with_answer(self: Box<Self>, _ctx: &AuthContext, _answer: &CalloutAnswer) -> Attempt {
        Attempt::Failed(Refusal::Malformed.failure())
    }
}

#[cfg(test)]
mod tests;
