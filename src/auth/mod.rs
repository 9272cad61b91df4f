//! Authentication: turns the credentials on a request into one [`Identity`].
//!
//! Each method is a folder here implementing [`Method`], listed once in [`method`]. Methods are
//! tried in the configured order, but only against the credential that belongs to them: a
//! JWT-shaped bearer goes to `jwt` only, an opaque bearer or `X-API-Key` to `api_key`,
//! `X-Signature` & co. to `hmac_signature`. A method that needs more than the headers (the body
//! of a signed request; an introspection call) suspends with a [`Suspension`] that says what it
//! waits for and carries its own continuation, so the pipeline has no method-specific case.

pub mod api_key;
pub mod credentials;
pub mod hmac_signature;
pub mod http_signature;
pub mod jwt;
pub mod mtls;
pub mod oauth2;

use crate::callout::{CalloutAnswer, CalloutSpec};
use crate::denial::Denial;
use crate::field::ConfigError;
use crate::store::{SharedStore, StoreError};
use credentials::Credentials;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Hmac,
    /// RFC 9421 HTTP Message Signatures.
    HttpSignature,
    /// OAuth2 bearer tokens, by RFC 7662 introspection.
    OAuth2,
    /// The peer certificate of a TLS connection the proxy terminated.
    Mtls,
}

impl AuthMethod {
    /// The seed's names; used in `x-auth-method` and metric names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Hmac => "hmac_signature",
            Self::HttpSignature => "http_signature",
            Self::OAuth2 => "oauth2",
            Self::Mtls => "mtls",
        }
    }

    /// The counter of this method's successes or failures: `auth.<method>.<result>`.
    pub fn metric(self, success: bool) -> &'static str {
        match (self, success) {
            (Self::Jwt, true) => "auth.jwt.success",
            (Self::Jwt, false) => "auth.jwt.failure",
            (Self::ApiKey, true) => "auth.api_key.success",
            (Self::ApiKey, false) => "auth.api_key.failure",
            (Self::Hmac, true) => "auth.hmac_signature.success",
            (Self::Hmac, false) => "auth.hmac_signature.failure",
            (Self::HttpSignature, true) => "auth.http_signature.success",
            (Self::HttpSignature, false) => "auth.http_signature.failure",
            (Self::OAuth2, true) => "auth.oauth2.success",
            (Self::OAuth2, false) => "auth.oauth2.failure",
            (Self::Mtls, true) => "auth.mtls.success",
            (Self::Mtls, false) => "auth.mtls.failure",
        }
    }

    /// The `WWW-Authenticate` challenge for this method.
    pub fn challenge(self) -> String {
        let scheme = match self {
            Self::Jwt => "Bearer",
            Self::ApiKey => "ApiKey",
            Self::Hmac => "HMAC-SHA256",
            Self::HttpSignature => "Signature",
            Self::OAuth2 => "Bearer",
            Self::Mtls => "Mutual-TLS",
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
    /// The seed's signing scheme (`X-Signature`), for clients with `seed_signatures: true`.
    #[serde(alias = "hmac")]
    HmacSignature,
    /// RFC 9421 HTTP Message Signatures with `hmac-sha256`.
    HttpSignature,
    /// OAuth2 bearer tokens by RFC 7662 introspection (needs the `oauth2` section).
    Oauth2,
    /// The peer certificate (Envoy terminating TLS with client certificates).
    Mtls,
}

impl RawAuthMethod {
    pub fn compile(self, _field: &str) -> Result<AuthMethod, ConfigError> {
        match self {
            Self::Jwt => Ok(AuthMethod::Jwt),
            Self::ApiKey => Ok(AuthMethod::ApiKey),
            Self::HmacSignature => Ok(AuthMethod::Hmac),
            Self::HttpSignature => Ok(AuthMethod::HttpSignature),
            Self::Oauth2 => Ok(AuthMethod::OAuth2),
            Self::Mtls => Ok(AuthMethod::Mtls),
        }
    }
}

/// Who the request is, once a method succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Index into the configured clients.
    pub client: usize,
    pub method: AuthMethod,
    pub scopes: Vec<String>,
    /// Something the operator should know about the credential used (an API key close to its
    /// expiry): counted and logged once per worker, never sent to the client.
    pub warning: Option<String>,
    /// Upstream headers the credential carries (JWT claims mapped by `jwt.claim_headers`),
    /// names lowercase, values checked.
    pub headers: Vec<(String, String)>,
}

/// One method's failure, kept so the first failure in configured order is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub method: AuthMethod,
    pub denial: Denial,
}

/// What methods may ask about the configured clients.
pub trait Directory {
    /// How many clients there are (indices `0..count`).
    fn count(&self) -> usize;
    fn find(&self, client_id: &str) -> Option<usize>;
    fn id(&self, client: usize) -> &str;
    fn scopes(&self, client: usize) -> &[String];
    /// The client's signing secret, ready for HMAC.
    fn hmac_key(&self, client: usize) -> Option<&hmac_signature::SigningKey>;
    /// Whether the client may sign with the seed's scheme (`X-Signature`).
    fn seed_signatures(&self, client: usize) -> bool;
    /// The client whose configured certificate the peer's matches.
    fn by_certificate(&self, _peer: &mtls::PeerCertificate) -> Option<usize> {
        None
    }
}

/// Every method's compiled settings.
#[derive(Debug)]
pub struct AuthSettings {
    /// The configured order.
    pub methods: Vec<AuthMethod>,
    pub api_keys: api_key::KeyTable,
    /// How long before a key's expiry its use is counted and logged.
    pub api_key_warning_seconds: u64,
    pub jwt: Option<jwt::JwtVerifier>,
    pub hmac: hmac_signature::HmacSettings,
    pub http_signature: http_signature::HttpSignatureSettings,
    pub oauth2: Option<oauth2::OAuth2Settings>,
}

/// What one attempt may use besides the request.
pub struct AuthContext<'a> {
    pub settings: &'a AuthSettings,
    pub directory: &'a dyn Directory,
    /// Clients, keys and revocations the configuration does not hold (`registry`).
    pub registry: Option<&'a crate::clients::registry::Registry>,
    pub store: &'a dyn SharedStore,
    /// Seconds since the Unix epoch, by the proxy's clock.
    pub now: u64,
}

/// What the request says about itself besides its headers.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The request target as sent, query included.
    pub target: &'a str,
    /// `None` while the body has not been read (and the request has one).
    pub body: Option<&'a [u8]>,
    /// The declared body length, when the request declares one.
    pub content_length: Option<u64>,
    /// The request headers (lowercase names, pseudo-headers included); empty once the body
    /// phase runs.
    pub headers: &'a credentials::HeaderList,
}

/// What waits before a suspended method can decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The complete request body, at most this long.
    Body { max_bytes: usize },
    /// The answer to this call.
    Call(CalloutSpec),
}

/// A method's own continuation.
pub trait Resume: std::fmt::Debug {
    /// Continues with the complete body.
    fn with_body(self: Box<Self>, ctx: &AuthContext, facts: &RequestFacts, body: &[u8]) -> Attempt;
    /// Continues with the answer to the call it asked for.
    fn with_answer(self: Box<Self>, ctx: &AuthContext, answer: &CalloutAnswer) -> Attempt;
}

/// A method that cannot decide yet.
#[derive(Debug)]
pub struct Suspension {
    pub method: AuthMethod,
    /// The client the request claims to be, from checks that need no wait (a known client with
    /// a signing secret, a fresh timestamp). Nothing is trusted to it but holding the request.
    pub claimed: Option<usize>,
    pub wait: Wait,
    pub resume: Box<dyn Resume>,
}

#[derive(Debug)]
pub enum Attempt {
    Verified(Identity),
    Failed(Failure),
    Suspended(Suspension),
}

/// One authentication method.
pub trait Method: Sync {
    /// Tries the request's credential for this method; `None` when it carries none.
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        facts: &RequestFacts,
    ) -> Option<Attempt>;

    /// Creates the shared data the method uses, once per worker at configuration.
    fn prepare(
        &self,
        _settings: &AuthSettings,
        _directory: &dyn Directory,
        _store: &dyn SharedStore,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The registry: a new method is a folder here, a variant of [`AuthMethod`] and one line below.
pub fn method(kind: AuthMethod) -> &'static dyn Method {
    match kind {
        AuthMethod::Jwt => &jwt::JwtMethod,
        AuthMethod::ApiKey => &api_key::ApiKeyMethod,
        AuthMethod::Hmac => &hmac_signature::HmacMethod,
        AuthMethod::HttpSignature => &http_signature::HttpSignatureMethod,
        AuthMethod::OAuth2 => &oauth2::OAuth2Method,
        AuthMethod::Mtls => &mtls::MtlsMethod,
    }
}

#[derive(Debug)]
pub enum Outcome {
    Authenticated(Identity),
    /// Credentials were present and all failed; the first failure in configured order.
    Failed(Failure),
    NoCredentials,
    /// A method waits for something; its answer is final (later methods are not tried).
    Suspended(Suspension),
}

impl From<Attempt> for Outcome {
    fn from(attempt: Attempt) -> Self {
        match attempt {
            Attempt::Verified(identity) => Self::Authenticated(identity),
            Attempt::Failed(failure) => Self::Failed(failure),
            Attempt::Suspended(suspension) => Self::Suspended(suspension),
        }
    }
}

pub(crate) fn unauthorized(method: AuthMethod, code: &'static str, message: &str) -> Failure {
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
pub fn authenticate(ctx: &AuthContext, creds: &Credentials, facts: &RequestFacts) -> Outcome {
    let mut first_failure: Option<Failure> = None;
    for kind in &ctx.settings.methods {
        match method(*kind).attempt(ctx, creds, facts) {
            Some(Attempt::Failed(failure)) => {
                first_failure.get_or_insert(failure);
            }
            Some(decided) => return decided.into(),
            None => {}
        }
    }
    match first_failure {
        Some(f) => Outcome::Failed(f),
        None if creds.jwt.is_some() && ctx.settings.jwt.is_none() => Outcome::Failed(unauthorized(
            AuthMethod::Jwt,
            "jwt_not_accepted",
            "JWTs are not accepted here",
        )),
        None => Outcome::NoCredentials,
    }
}
