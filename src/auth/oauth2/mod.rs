//! OAuth2 bearer tokens by RFC 7662 introspection. An opaque bearer token (not JWT-shaped, not a
//! configured API key) is looked up in the shared cache; on a miss the request waits for one
//! introspection call to the identity provider (client_secret_basic), whose answer decides and
//! is cached: an active token until the earlier of its `exp` and `cache_seconds`, an inactive
//! one for `negative_cache_seconds`. A provider that fails, times out or answers garbage gets
//! the request a 503 `introspection_unavailable` (never a pass, never cached).

pub mod cache;

use super::{
    unauthorized, Attempt, AuthContext, AuthMethod, Failure, Identity, Method, RequestFacts,
    Resume, Suspension, Wait,
};
use crate::auth::credentials::Credentials;
use crate::auth::{AuthSettings, Directory};
use crate::callout::{CalloutAnswer, CalloutSpec};
use crate::clients::registry::{self, Lookup, Partial};
use crate::denial::Denial;
use crate::field::{within, ConfigError};
use crate::store::expiring::ExpiringCache;
use crate::store::{SharedStore, StoreError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cache::Cached;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The longest bearer token introspected.
const MAX_TOKEN_BYTES: usize = 4096;
/// The largest introspection answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `oauth2` as operators write it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    /// The identity provider's Envoy cluster (`host:port` on Kong).
    pub cluster: String,
    /// The introspection endpoint's path, e.g. `/oauth2/introspect`.
    pub path: String,
    /// The `:authority` sent (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// The filter's own client id at the provider (client_secret_basic).
    pub client_id: String,
    /// The filter's client secret at the provider.
    pub client_secret: String,
    /// Default 1000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Longest an active answer is trusted without asking again (bounded by the token's `exp`).
    /// Default 300.
    #[serde(default)]
    pub cache_seconds: Option<u64>,
    /// How long an inactive answer is remembered. Default 30.
    #[serde(default)]
    pub negative_cache_seconds: Option<u64>,
    /// Shared-data keys of the cache (8 tokens each). Default 1024.
    #[serde(default)]
    pub cache_slots: Option<usize>,
    /// The answer's field naming the configured client. Default `client_id`.
    #[serde(default)]
    pub client_id_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Settings {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    /// `Basic ...` for the provider.
    authorization: String,
    pub timeout_ms: u64,
    pub cache_seconds: u64,
    pub negative_cache_seconds: u64,
    pub cache: ExpiringCache,
    pub client_id_field: String,
}

/// `application/x-www-form-urlencoded` (RFC 6749 appendix B).
fn form_encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OAuth2Settings {
    pub fn compile(raw: &RawOAuth2) -> Result<OAuth2Settings, ConfigError> {
        if raw.cluster.is_empty() {
            return Err(ConfigError::new("oauth2.cluster", "must not be empty"));
        }
        if !raw.path.starts_with('/') || raw.path.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                "oauth2.path",
                "must be a path starting with '/'",
            ));
        }
        if raw.client_id.is_empty() || raw.client_secret.is_empty() {
            return Err(ConfigError::new(
                "oauth2.client_secret",
                "client_id and client_secret are required (client_secret_basic)",
            ));
        }
        let basic = format!(
            "{}:{}",
            form_encode(raw.client_id.as_bytes()),
            form_encode(raw.client_secret.as_bytes())
        );
        Ok(OAuth2Settings {
            cluster: raw.cluster.clone(),
            path: raw.path.clone(),
            authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
            authorization: format!("Basic {}", STANDARD.encode(basic)),
            timeout_ms: within("oauth2.timeout_ms", raw.timeout_ms, 1000, 1..=60_000)?,
            cache_seconds: within("oauth2.cache_seconds", raw.cache_seconds, 300, 1..=86_400)?,
            negative_cache_seconds: within(
                "oauth2.negative_cache_seconds",
                raw.negative_cache_seconds,
                30,
                0..=3600,
            )?,
            cache: cache::cache(within(
                "oauth2.cache_slots",
                raw.cache_slots,
                1024,
                1..=65_536,
            )?),
            client_id_field: raw
                .client_id_field
                .clone()
                .unwrap_or_else(|| "client_id".to_string()),
        })
    }

    fn call(&self, token: &[u8]) -> CalloutSpec {
        CalloutSpec {
            upstream: self.cluster.clone(),
            authority: self.authority.clone(),
            method: "POST",
            path: self.path.clone(),
            headers: vec![
                ("authorization".to_string(), self.authorization.clone()),
                (
                    "content-type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                ),
                ("accept".to_string(), "application/json".to_string()),
            ],
            body: format!("token={}&token_type_hint=access_token", form_encode(token)).into_bytes(),
            timeout_ms: self.timeout_ms,
            grpc: None,
        }
    }
}

fn unavailable(why: &str) -> Failure {
    Failure {
        method: AuthMethod::OAuth2,
        denial: Denial::new(
            503,
            "introspection_unavailable",
            format!("the token cannot be checked right now ({why}); retry shortly"),
        ),
    }
}

fn inactive() -> Failure {
    unauthorized(
        AuthMethod::OAuth2,
        "token_inactive",
        "the bearer token is not active",
    )
}

/// RFC 6749 scope tokens, space-separated; anything else refuses the answer.
fn scopes(answer: &Value) -> Option<Vec<String>> {
    match answer.get("scope") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => {
            let list: Vec<String> = s
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect();
            let token = |t: &String| {
                t.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            };
            list.iter().all(token).then_some(list)
        }
        Some(_) => None,
    }
}

/// The client and scopes an active answer names, and until when it may be cached.
fn active_answer(
    settings: &OAuth2Settings,
    answer: &Value,
    now: u64,
) -> Result<(String, Vec<String>, u64), Failure> {
    let client_id = answer
        .get(&settings.client_id_field)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            unauthorized(
                AuthMethod::OAuth2,
                "unknown_client",
                "the token names no client",
            )
        })?;
    let scopes = scopes(answer).ok_or_else(|| unavailable("malformed scope in the answer"))?;
    let mut until = now + settings.cache_seconds;
    if let Some(exp) = answer.get("exp") {
        let exp = exp
            .as_u64()
            .ok_or_else(|| unavailable("malformed exp in the answer"))?;
        if exp <= now {
            return Err(inactive());
        }
        until = until.min(exp);
    }
    Ok((client_id.to_string(), scopes, until))
}

/// The identity of an active token's client: a configured one, or (with the registry) one the
/// registry knows.
fn identity_of(ctx: &AuthContext, client_id: String, scopes: Vec<String>) -> Attempt {
    if ctx.registry.is_some() {
        let lookup = Lookup {
            client: Some(client_id),
            ..Lookup::default()
        };
        let partial = Partial {
            method: AuthMethod::OAuth2,
            scopes: Some(scopes),
            headers: Vec::new(),
        };
        return registry::resolve(ctx, lookup, partial, None);
    }
    match ctx.directory.find(&client_id) {
        Some(client) => Attempt::Verified(Identity {
            client,
            method: AuthMethod::OAuth2,
            scopes,
            warning: None,
            headers: Vec::new(),
        }),
        None => Attempt::Failed(unauthorized(
            AuthMethod::OAuth2,
            "unknown_client",
            "the token names an unknown client",
        )),
    }
}

/// An active token's client id and scopes.
type ActiveToken = (String, Vec<String>);

/// What an introspection answer says (an active token's client and scopes); the cache entry
/// to write with it.
fn decide(
    settings: &OAuth2Settings,
    answer: &CalloutAnswer,
    now: u64,
) -> (Result<ActiveToken, Failure>, Option<Cached>) {
    let body = match answer {
        CalloutAnswer::Response { status: 200, body } => body,
        CalloutAnswer::Response { status, .. } => {
            return (
                Err(unavailable(&format!("the provider answered {status}"))),
                None,
            )
        }
        CalloutAnswer::NoResponse => return (Err(unavailable("no answer in time")), None),
        CalloutAnswer::DispatchFailed => {
            return (Err(unavailable("the call could not be made")), None)
        }
    };
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return (Err(unavailable("the answer is not JSON")), None);
    };
    let negative = Cached::Inactive {
        until: now + settings.negative_cache_seconds,
    };
    match value.get("active") {
        Some(Value::Bool(true)) => match active_answer(settings, &value, now) {
            Ok((client, scopes, until)) => {
                let cached = Cached::Active {
                    client: client.clone(),
                    scopes: scopes.clone(),
                    until,
                };
                (Ok((client, scopes)), Some(cached))
            }
            Err(f) if f.denial.status == 401 => (Err(f), Some(negative)),
            Err(f) => (Err(f), None),
        },
        Some(Value::Bool(false)) => (Err(inactive()), Some(negative)),
        _ => (Err(unavailable("the answer has no boolean `active`")), None),
    }
}

#[derive(Debug)]
struct AwaitIntrospection {
    digest: [u8; 32],
}

impl Resume for AwaitIntrospection {
    fn with_body(self: Box<Self>, _: &AuthContext, _: &RequestFacts, _: &[u8]) -> Attempt {
        Attempt::Failed(unavailable("no body was awaited"))
    }

    fn with_answer(self: Box<Self>, ctx: &AuthContext, answer: &CalloutAnswer) -> Attempt {
        let Some(settings) = &ctx.settings.oauth2 else {
            return Attempt::Failed(unavailable("not configured"));
        };
        let (said, cached) = decide(settings, answer, ctx.now);
        if let Some(entry) = cached {
            // A cache that cannot be written only costs another call next time.
            let _ = settings
                .cache
                .put(ctx.store, &self.digest, &cache::trimmed(entry), ctx.now);
        }
        match said {
            Ok((client, scopes)) => identity_of(ctx, client, scopes),
            Err(f) => Attempt::Failed(f),
        }
    }
}

/// The OAuth2 method: an opaque bearer token.
pub struct OAuth2Method;

impl Method for OAuth2Method {
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        _facts: &RequestFacts,
    ) -> Option<Attempt> {
        let settings = ctx.settings.oauth2.as_ref()?;
        let token = creds.opaque_bearer.as_deref()?;
        // An API key sent as a bearer token is the API-key method's.
        if ctx.settings.methods.contains(&AuthMethod::ApiKey)
            && ctx.settings.api_keys.find(token).is_ok()
        {
            return None;
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Some(Attempt::Failed(unauthorized(
                AuthMethod::OAuth2,
                "token_too_long",
                "token is longer than allowed",
            )));
        }
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token).into();
        match settings.cache.get::<_, Cached>(ctx.store, &digest, ctx.now) {
            Ok(Some(Cached::Active { client, scopes, .. })) => {
                return Some(identity_of(ctx, client, scopes))
            }
            Ok(Some(Cached::Inactive { .. })) => return Some(Attempt::Failed(inactive())),
            // A miss, or a cache that cannot be read: ask the provider.
            Ok(None) | Err(_) => {}
        }
        Some(Attempt::Suspended(Suspension {
            method: AuthMethod::OAuth2,
            claimed: None,
            wait: Wait::Call(settings.call(token)),
            resume: Box::new(AwaitIntrospection { digest }),
        }))
    }

    fn prepare(
        &self,
        settings: &AuthSettings,
        _directory: &dyn Directory,
        store: &dyn SharedStore,
    ) -> Result<(), StoreError> {
        match &settings.oauth2 {
            Some(s) => s.cache.prepare(store),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
