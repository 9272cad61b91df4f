//! Turns the raw JSON into a checked, ready-to-use [`Config`].

use super::raw::{RawApiKey, RawClient, RawConfig};
use super::{within, ConfigError};
use crate::auth::api_key::{self, KeyEntry, KeyTable, DEFAULT_MAX_KEY_LENGTH};
use crate::auth::hmac_signature::{DEFAULT_MAX_BODY_BYTES, DEFAULT_WINDOW_SECONDS};
use crate::auth::jwt::JwtVerifier;
use crate::auth::replay::ReplayTable;
use crate::auth::AuthMethod;
use crate::authz::endpoints::EndpointPattern;
use crate::authz::ip;
use crate::authz::levels::{RouteTable, SecurityLevel};
use crate::profile::HostProfile;
use crate::ratelimit::{self, LimitOverride};
use ipnet::IpNet;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub allowed_endpoints: Vec<EndpointPattern>,
    pub allowed_ips: Vec<IpNet>,
    pub security_level: SecurityLevel,
    pub is_active: bool,
    pub scopes: Vec<String>,
    pub hmac_secret: Option<Vec<u8>>,
    pub rate_limits: Option<LimitOverride>,
}

#[derive(Debug, Clone, Copy)]
pub struct HmacSettings {
    pub window_seconds: u64,
    pub max_body_bytes: usize,
    pub replay: ReplayTable,
}

#[derive(Debug)]
pub struct Config {
    pub host: HostProfile,
    pub methods: Vec<AuthMethod>,
    pub clients: Vec<Client>,
    pub client_by_id: HashMap<String, usize>,
    pub api_keys: KeyTable,
    pub jwt: Option<JwtVerifier>,
    pub hmac: HmacSettings,
    pub routes: RouteTable,
    pub forward_credentials: bool,
    pub rate_limiting: ratelimit::settings::Settings,
    /// Warnings to log at configuration (plaintext keys, and the like).
    pub warnings: Vec<String>,
}

pub const DEFAULT_METHODS: [AuthMethod; 3] =
    [AuthMethod::Jwt, AuthMethod::ApiKey, AuthMethod::Hmac];
const DEFAULT_REPLAY_SLOTS: usize = 1024;
const DEFAULT_REPLAY_SLOT_ENTRIES: usize = 32;

pub(super) fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    if raw.security_monitoring.is_some() {
        return Err(ConfigError::new(
            "security_monitoring",
            "failed-auth blocking and abuse scoring are not enforced yet; remove this section \
             rather than rely on it (failed authentication is already throttled per address \
             by rate_limiting.address_limits)",
        ));
    }
    let methods_explicit = raw.auth_methods.is_some();
    let methods = match raw.auth_methods {
        None => DEFAULT_METHODS.to_vec(),
        Some(list) => {
            let mut methods = Vec::new();
            for (i, name) in list.iter().enumerate() {
                let m = AuthMethod::parse(&format!("auth_methods[{i}]"), name)?;
                if methods.contains(&m) {
                    return Err(ConfigError::new(
                        format!("auth_methods[{i}]"),
                        "listed twice",
                    ));
                }
                methods.push(m);
            }
            methods
        }
    };

    let default_limits = match &raw.default_rate_limits {
        Some(l) => ratelimit::limits_over("default_rate_limits", l, ratelimit::SEED_DEFAULTS)?,
        None => ratelimit::SEED_DEFAULTS,
    };
    let rate_limit_rules = raw
        .rate_limit_rules
        .iter()
        .enumerate()
        .map(|(i, r)| ratelimit::compile_rule(&format!("rate_limit_rules[{i}]"), r, default_limits))
        .collect::<Result<Vec<_>, _>>()?;

    let max_key_length = within(
        "api_key.max_length",
        raw.api_key.max_length,
        DEFAULT_MAX_KEY_LENGTH,
        1..=4096,
    )?;
    let mut api_keys = KeyTable::new(max_key_length);
    let mut clients = Vec::new();
    let mut client_by_id = HashMap::new();
    for (i, rc) in raw.clients.into_iter().enumerate() {
        let field = format!("clients[{i}]");
        if client_by_id.contains_key(&rc.client_id) {
            return Err(ConfigError::new(
                format!("{field}.client_id"),
                "duplicate client_id",
            ));
        }
        register_keys(
            &field,
            i,
            &rc,
            raw.api_key.allow_plaintext,
            &mut api_keys,
            &mut warnings,
        )?;
        let client = compile_client(&field, rc)?;
        client_by_id.insert(client.id.clone(), i);
        clients.push(client);
    }

    let jwt = raw.jwt.map(JwtVerifier::compile).transpose()?;
    if methods.contains(&AuthMethod::Jwt) && jwt.is_none() && methods_explicit {
        return Err(ConfigError::new(
            "jwt",
            "auth_methods lists jwt but no jwt section is configured",
        ));
    }

    let hmac = HmacSettings {
        window_seconds: within(
            "hmac.timestamp_window_seconds",
            raw.hmac.timestamp_window_seconds,
            DEFAULT_WINDOW_SECONDS,
            1..=86_400,
        )?,
        max_body_bytes: within(
            "hmac.max_body_bytes",
            raw.hmac.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            1..=64 * 1024 * 1024,
        )?,
        replay: ReplayTable {
            slots: within(
                "hmac.replay_cache_slots",
                raw.hmac.replay_cache_slots,
                DEFAULT_REPLAY_SLOTS,
                1..=65_536,
            )?,
            per_slot: within(
                "hmac.replay_slot_entries",
                raw.hmac.replay_slot_entries,
                DEFAULT_REPLAY_SLOT_ENTRIES,
                1..=4096,
            )?,
        },
    };

    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let field = format!("routes[{i}]");
        routes.push((
            EndpointPattern::parse(&format!("{field}.pattern"), &r.pattern)?,
            SecurityLevel::parse(&format!("{field}.security_level"), &r.security_level)?,
        ));
    }
    let default_level = match &raw.default_security_level {
        Some(l) => SecurityLevel::parse("default_security_level", l)?,
        None => SecurityLevel::Standard,
    };
    if clients.is_empty()
        && default_level != SecurityLevel::Public
        && routes.iter().all(|(_, l)| *l != SecurityLevel::Public)
    {
        return Err(ConfigError::new(
            "clients",
            "no clients and no public routes: every request would be refused",
        ));
    }

    Ok(Config {
        host: raw.host,
        methods,
        clients,
        client_by_id,
        api_keys,
        jwt,
        hmac,
        routes: RouteTable::new(routes, default_level),
        forward_credentials: raw.forward_credentials,
        rate_limiting: ratelimit::settings::compile(
            raw.host,
            &raw.rate_limiting,
            rate_limit_rules,
            default_limits,
        )?,
        warnings,
    })
}

fn compile_client(field: &str, rc: RawClient) -> Result<Client, ConfigError> {
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
    let security_level = match &rc.security_level {
        Some(l) => SecurityLevel::parse(&format!("{field}.security_level"), l)?,
        None => SecurityLevel::Standard,
    };
    let hmac_secret = match rc.client_secret {
        Some(s) if s.len() < 16 => {
            return Err(ConfigError::new(
                format!("{field}.client_secret"),
                "must be at least 16 bytes",
            ))
        }
        other => other.map(String::into_bytes),
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
        allowed_endpoints,
        allowed_ips,
        security_level,
        is_active: rc.is_active,
        scopes: rc.scopes,
        hmac_secret,
        rate_limits,
    })
}

fn register_keys(
    field: &str,
    client: usize,
    rc: &RawClient,
    allow_plaintext: bool,
    table: &mut KeyTable,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (j, key) in rc.api_keys.iter().enumerate() {
        let kfield = format!("{field}.api_keys[{j}]");
        let (digest, id, scopes) = match key {
            RawApiKey::Digest(hex) => (api_key::parse_digest(&kfield, hex)?, None, None),
            RawApiKey::Detailed(d) => {
                let digest = match (&d.sha256, &d.key) {
                    (Some(hex), None) => api_key::parse_digest(&format!("{kfield}.sha256"), hex)?,
                    (None, Some(plain)) if allow_plaintext => {
                        warnings.push(format!(
                            "{kfield}: plaintext API key in configuration (api_key.allow_plaintext); store its SHA-256 instead"
                        ));
                        api_key::digest(plain.as_bytes())
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::new(
                            format!("{kfield}.key"),
                            "plaintext keys are refused unless api_key.allow_plaintext is true; configure `sha256` instead",
                        ))
                    }
                    _ => {
                        return Err(ConfigError::new(&kfield, "give exactly one of `sha256` or `key`"))
                    }
                };
                (digest, d.id.clone(), d.scopes.clone())
            }
        };
        let id = id.unwrap_or_else(|| hex::encode(&digest[..4]));
        table.insert(&kfield, digest, KeyEntry { client, id, scopes })?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
