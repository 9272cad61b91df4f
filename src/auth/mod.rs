//! Authentication: turns the credentials on a request into one [`Identity`].
//!
//! Each method lives in its own module. Methods are tried in the configured order, but only
//! against the credential that belongs to them: a JWT-shaped bearer goes to `jwt` only, an opaque
//! bearer or `X-API-Key` to `api_key`, `X-Signature` & co. to `hmac_signature`.

pub mod api_key;
pub mod credentials;
pub mod hmac_signature;
pub mod jwt;
pub mod replay;

use crate::config::Config;
use crate::denial::Denial;
use crate::field::ConfigError;
use credentials::Credentials;
use replay::ReplayVerdict;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Hmac,
}

impl AuthMethod {
    /// The seed's names; used in `x-auth-method` and metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Hmac => "hmac_signature",
        }
    }

    /// The `WWW-Authenticate` challenge for this method.
    pub fn challenge(self) -> String {
        let scheme = match self {
            Self::Jwt => "Bearer",
            Self::ApiKey => "ApiKey",
            Self::Hmac => "HMAC-SHA256",
        };
        format!("{scheme} realm=\"api-warden\"")
    }
}

/// A method as configured in `auth_methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawAuthMethod {
    Jwt,
    ApiKey,
    #[serde(alias = "hmac")]
    HmacSignature,
    /// Not available yet: refused with a clear message.
    Oauth2,
    /// Not available yet: refused with a clear message.
    Mtls,
}

impl RawAuthMethod {
    pub fn compile(self, field: &str) -> Result<AuthMethod, ConfigError> {
        match self {
            Self::Jwt => Ok(AuthMethod::Jwt),
            Self::ApiKey => Ok(AuthMethod::ApiKey),
            Self::HmacSignature => Ok(AuthMethod::Hmac),
            Self::Oauth2 => Err(ConfigError::new(field, "\"oauth2\" is not available yet")),
            Self::Mtls => Err(ConfigError::new(field, "\"mtls\" is not available yet")),
        }
    }
}

/// Who the request is, once a method succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Index into `Config::clients`.
    pub client: usize,
    pub method: AuthMethod,
    pub scopes: Vec<String>,
}

/// One method's failure, kept so the first failure in configured order is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub method: AuthMethod,
    pub denial: Denial,
}

#[derive(Debug)]
pub enum Outcome {
    Authenticated(Identity),
    /// Credentials were present and all failed; the first failure in configured order.
    Failed(Failure),
    NoCredentials,
    /// A signed request whose body is not read yet: finish with [`precheck_signature`] now and
    /// [`verify_signed_body`] once the body is in. The signature is then final: a signed request
    /// is not handed to methods listed after `hmac_signature`.
    NeedBody,
}

/// What the HMAC method needs to know about the request besides its headers.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The request target as sent, query included.
    pub target: &'a str,
    /// `None` while the body has not been read (and the request has one).
    pub body: Option<&'a [u8]>,
}

fn unauthorized(method: AuthMethod, code: &'static str, message: &str) -> Failure {
    let mut challenge = method.challenge();
    if method == AuthMethod::Jwt {
        // RFC 6750: a bearer token that was presented and refused.
        challenge.push_str(", error=\"invalid_token\"");
    }
    Failure {
        method,
        denial: Denial::unauthorized(code, message, challenge),
    }
}

/// Tries the configured methods in order.
pub fn authenticate<S: crate::store::SharedStore + ?Sized>(
    cfg: &Config,
    creds: &Credentials,
    facts: &RequestFacts,
    now: u64,
    store: &S,
) -> Outcome {
    let mut first_failure: Option<Failure> = None;
    for method in &cfg.methods {
        let attempt = match method {
            AuthMethod::Jwt => creds.jwt.as_deref().map(|t| by_jwt(cfg, t, now)),
            AuthMethod::ApiKey => creds.api_key.as_deref().map(|k| by_api_key(cfg, k)),
            AuthMethod::Hmac => match (&creds.signed, facts.body) {
                (None, _) => None,
                (Some(_), None) => return Outcome::NeedBody,
                (Some(signed), Some(body)) => {
                    Some(verify_signed_body(cfg, signed, facts, body, now, store))
                }
            },
        };
        match attempt {
            Some(Ok(identity)) => return Outcome::Authenticated(identity),
            Some(Err(failure)) => {
                first_failure.get_or_insert(failure);
            }
            None => {}
        }
    }
    match first_failure {
        Some(f) => Outcome::Failed(f),
        None if creds.jwt.is_some() && cfg.jwt.is_none() => Outcome::Failed(unauthorized(
            AuthMethod::Jwt,
            "jwt_not_accepted",
            "JWTs are not accepted here",
        )),
        None => Outcome::NoCredentials,
    }
}

fn by_jwt(cfg: &Config, token: &[u8], now: u64) -> Result<Identity, Failure> {
    let Some(verifier) = &cfg.jwt else {
        return Err(unauthorized(
            AuthMethod::Jwt,
            "jwt_not_accepted",
            "JWTs are not accepted here",
        ));
    };
    let verified = verifier
        .verify(token, now)
        .map_err(|f| unauthorized(AuthMethod::Jwt, f.code(), f.message()))?;
    let client = *cfg.client_by_id.get(&verified.client_id).ok_or_else(|| {
        unauthorized(
            AuthMethod::Jwt,
            "unknown_client",
            "token names an unknown client",
        )
    })?;
    Ok(Identity {
        client,
        method: AuthMethod::Jwt,
        scopes: verified.scopes,
    })
}

fn by_api_key(cfg: &Config, key: &[u8]) -> Result<Identity, Failure> {
    let entry = cfg.api_keys.find(key).map_err(|f| match f {
        api_key::KeyFailure::TooLong => {
            unauthorized(AuthMethod::ApiKey, "invalid_api_key", "API key is too long")
        }
        api_key::KeyFailure::Unknown => unauthorized(
            AuthMethod::ApiKey,
            "invalid_api_key",
            "API key is not valid",
        ),
    })?;
    let scopes = entry
        .scopes
        .clone()
        .or_else(|| cfg.clients.get(entry.client).map(|c| c.scopes.clone()))
        .unwrap_or_default();
    Ok(Identity {
        client: entry.client,
        method: AuthMethod::ApiKey,
        scopes,
    })
}

/// Everything about a signed request that does not need its body: timestamp window, known
/// client, signing secret. Returns the claimed client's index and the signed timestamp.
pub fn precheck_signature(
    cfg: &Config,
    signed: &hmac_signature::SignedRequest,
    now: u64,
) -> Result<(usize, u64), Failure> {
    let fail =
        |f: hmac_signature::SignatureFailure| unauthorized(AuthMethod::Hmac, f.code(), f.message());
    if signed.client_id.is_empty() || signed.timestamp.is_empty() {
        return Err(fail(hmac_signature::SignatureFailure::Incomplete));
    }
    let ts = hmac_signature::check_timestamp(&signed.timestamp, now, cfg.hmac.window_seconds)
        .map_err(fail)?;
    let index = *cfg.client_by_id.get(&signed.client_id).ok_or_else(|| {
        unauthorized(
            AuthMethod::Hmac,
            "unknown_client",
            "X-Client-Id names an unknown client",
        )
    })?;
    match cfg.clients.get(index) {
        Some(client) if client.hmac_secret.is_some() => Ok((index, ts)),
        _ => Err(unauthorized(
            AuthMethod::Hmac,
            "signature_not_enabled",
            "this client has no signing secret",
        )),
    }
}

/// Verifies a prechecked signed request against its body, then records it against replay.
pub fn verify_signed_body<S: crate::store::SharedStore + ?Sized>(
    cfg: &Config,
    signed: &hmac_signature::SignedRequest,
    facts: &RequestFacts,
    body: &[u8],
    now: u64,
    store: &S,
) -> Result<Identity, Failure> {
    let fail =
        |f: hmac_signature::SignatureFailure| unauthorized(AuthMethod::Hmac, f.code(), f.message());
    let (index, ts) = precheck_signature(cfg, signed, now)?;
    let (Some(client), Some(secret)) = (
        cfg.clients.get(index),
        cfg.clients
            .get(index)
            .and_then(|c| c.hmac_secret.as_deref()),
    ) else {
        return Err(fail(hmac_signature::SignatureFailure::Mismatch));
    };
    hmac_signature::verify(secret, facts.method, facts.target, body, signed).map_err(fail)?;
    let expires_at = ts + cfg.hmac.window_seconds;
    let verdict =
        cfg.hmac
            .replay
            .check_and_record(store, &client.id, &signed.signature, expires_at, now);
    match verdict {
        ReplayVerdict::Fresh => Ok(Identity {
            client: index,
            method: AuthMethod::Hmac,
            scopes: client.scopes.clone(),
        }),
        ReplayVerdict::Replayed => Err(unauthorized(
            AuthMethod::Hmac,
            "signature_replayed",
            "this signature was already used; sign each request anew (X-Nonce allows identical requests)",
        )),
        ReplayVerdict::Full | ReplayVerdict::Unavailable => Err(Failure {
            method: AuthMethod::Hmac,
            denial: Denial::new(
                503,
                "replay_cache_unavailable",
                "signed requests cannot be checked for replay right now; retry shortly",
            ),
        }),
    }
}
