//! The clients the filter knows: their typed entry as operators write it (in the configuration,
//! or as a document in the Redis registry) and its compiled form. `registry` finds clients that
//! are not in the configuration.

pub mod registry;

use crate::auth::api_key::RawApiKey;
use crate::auth::hmac_signature::SigningKey;
use crate::authz::endpoints::EndpointPattern;
use crate::authz::ip;
use crate::authz::levels::SecurityLevel;
use crate::authz::Access;
use crate::field::ConfigError;
use crate::ratelimit::{self, LimitOverride, RawRateLimits};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A client at a directory index: configured, or held from the registry.
#[derive(Debug, Clone)]
pub enum ClientRef<'a> {
    Configured(&'a Client),
    Registered(Rc<Client>),
}

impl std::ops::Deref for ClientRef<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        match self {
            Self::Configured(c) => c,
            Self::Registered(c) => c,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// What the client may call, from where, at which level.
    pub access: Access,
    pub scopes: Vec<String>,
    /// Its `client_secret`, ready for HMAC (either signing scheme).
    pub hmac_key: Option<SigningKey>,
    /// May sign with the seed's scheme.
    pub seed_signatures: bool,
    /// Its certificate, for `mtls`.
    pub certificate: Option<crate::auth::mtls::CertificateMatch>,
    pub require_mtls: bool,
    pub rate_limits: Option<LimitOverride>,
    /// Found in the registry rather than the configuration.
    pub registered: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub allowed_endpoints: Vec<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub security_level: Option<SecurityLevel>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Shared secret for HMAC request signatures (RFC 9421 `hmac-sha256`, and the seed's).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Whether this client may also sign with the seed's scheme (`X-Signature`, method
    /// `hmac_signature`), whose signing string has no field boundaries. Off by default.
    #[serde(default)]
    pub seed_signatures: bool,
    /// The client's certificate, for `mtls`: any field given must match the peer's.
    #[serde(default)]
    pub certificate: Option<crate::auth::mtls::RawCertificate>,
    /// Refuse this client unless it authenticated with its certificate (`mtls`).
    #[serde(default)]
    pub require_mtls: bool,
    #[serde(default = "default_true")]
    pub is_active: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

fn default_true() -> bool {
    true
}

pub fn compile(field: &str, rc: RawClient) -> Result<Client, ConfigError> {
    if rc.client_id.is_empty()
        || rc.client_id.len() > 128
        || !rc.client_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ConfigError::new(
            format!("{field}.client_id"),
            "must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    let allowed_endpoints = rc
        .allowed_endpoints
        .iter()
        .enumerate()
        .map(|(j, p)| EndpointPattern::parse(&format!("{field}.allowed_endpoints[{j}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_ips = rc
        .allowed_ips
        .iter()
        .enumerate()
        .map(|(j, e)| ip::parse_allowed(&format!("{field}.allowed_ips[{j}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    let hmac_key = match rc.client_secret {
        Some(s) if s.len() < 16 => {
            return Err(ConfigError::new(
                format!("{field}.client_secret"),
                "must be at least 16 bytes",
            ))
        }
        Some(s) => Some(SigningKey::new(s.as_bytes()).ok_or_else(|| {
            ConfigError::new(
                format!("{field}.client_secret"),
                "was refused as an HMAC-SHA256 key",
            )
        })?),
        None => None,
    };
    let rate_limits = rc
        .rate_limits
        .as_ref()
        .map(|l| ratelimit::parse_override(&format!("{field}.rate_limits"), l))
        .transpose()?;
    let name = rc.name.unwrap_or_else(|| rc.client_id.clone());
    if name.bytes().any(|b| b.is_ascii_control()) {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "must not contain control characters",
        ));
    }
    Ok(Client {
        id: rc.client_id,
        name,
        access: Access {
            is_active: rc.is_active,
            allowed_ips,
            allowed_endpoints,
            security_level: rc.security_level.unwrap_or(SecurityLevel::Standard),
        },
        scopes: rc.scopes,
        hmac_key,
        seed_signatures: rc.seed_signatures,
        certificate: rc
            .certificate
            .as_ref()
            .map(|c| {
                crate::auth::mtls::CertificateMatch::compile(&format!("{field}.certificate"), c)
            })
            .transpose()?,
        require_mtls: rc.require_mtls,
        rate_limits,
        registered: false,
    })
}
