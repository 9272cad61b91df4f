//! Assembles the ready-to-use [`Config`] from each capability's own compile step.

use super::raw::RawConfig;
use super::{within, ConfigError};
use crate::auth::api_key::{self, KeyTable, DEFAULT_MAX_KEY_LENGTH};
use crate::auth::hmac_signature::shared_replay::SharedReplay;
use crate::auth::hmac_signature::HmacSettings;
use crate::auth::http_signature::HttpSignatureSettings;
use crate::auth::jwt::JwtVerifier;
use crate::auth::{AuthMethod, AuthSettings, Directory};
use crate::authz::levels::{RouteTable, SecurityLevel};
use crate::clients::registry::{Registry, RegistrySettings};
use crate::clients::{self, Client, ClientRef};
use crate::profile::HostProfile;
use crate::ratelimit;
use crate::threat::abuse::AbuseSettings;
use crate::threat::alerts::AlertSettings;
use crate::threat::blocking::BlockTable;
use crate::threat::events::EventRing;
use crate::threat::redis_sync::SyncSettings;
use crate::threat::report::ReportAccess;
use crate::threat::RawReport;
use std::collections::HashMap;

#[derive(Debug)]
pub struct Config {
    pub host: HostProfile,
    /// The methods in configured order and their compiled settings.
    pub auth: AuthSettings,
    pub clients: Vec<Client>,
    pub client_by_id: HashMap<String, usize>,
    pub routes: RouteTable,
    /// Addresses that fail authentication too often are blocked (`security_monitoring`).
    pub blocking: Option<BlockTable>,
    /// Security events are raised (with `security_monitoring`); the ring, when it keeps any.
    pub events: Option<Option<EventRing>>,
    /// Where the security report is served, and to whom.
    pub report: Option<ReportAccess>,
    /// Webhook alerts for high and critical security events.
    pub alerts: Option<AlertSettings>,
    /// Abuse scoring and graded mitigations.
    pub abuse: Option<AbuseSettings>,
    /// With Redis and `security_monitoring`: failures, blocks and events shared across proxies.
    pub threat_sync: Option<SyncSettings>,
    /// Client ids by index (the shared-data keys of abuse scoring).
    pub client_ids: Vec<String>,
    /// Headers only the filter sets upstream: the identity headers and the JWT claim headers.
    pub identity_headers: Vec<crate::engine::headers::HeaderName>,
    /// The identity headers set upstream (`upstream_identity_headers`), of
    /// [`crate::pipeline::IDENTITY_HEADERS`].
    pub sent_identity_headers: Vec<&'static str>,
    pub forward_credentials: bool,
    /// What every grant keeps from the upstream, made once here, not per request.
    pub guarded_headers: crate::pipeline::GuardedHeaders,
    pub rate_limiting: ratelimit::settings::Settings,
    /// Publish the decision as filter state (`filter_state`).
    pub filter_state: bool,
    /// This worker's view of the live client registry, when configured.
    pub registry: Option<Registry>,
    /// Warnings to log at configuration (plaintext keys, and the like).
    pub warnings: Vec<String>,
}

impl Config {
    /// The client at a directory index: a configured one, or one this worker holds from the
    /// registry.
    pub fn client(&self, index: usize) -> Option<ClientRef<'_>> {
        match self.clients.get(index) {
            Some(c) => Some(ClientRef::Configured(c)),
            None => self
                .registry
                .as_ref()?
                .client(index)
                .map(ClientRef::Registered),
        }
    }
}

impl Directory for Config {
    fn count(&self) -> usize {
        self.clients.len()
    }

    fn find(&self, client_id: &str) -> Option<usize> {
        self.client_by_id.get(client_id).copied()
    }

    fn id(&self, client: usize) -> &str {
        self.clients.get(client).map_or("", |c| c.id.as_str())
    }

    fn scopes(&self, client: usize) -> &[String] {
        self.clients
            .get(client)
            .map_or(&[], |c| c.scopes.as_slice())
    }

    fn hmac_key(&self, client: usize) -> Option<&crate::auth::hmac_signature::SigningKey> {
        self.clients.get(client)?.hmac_key.as_ref()
    }

    fn seed_signatures(&self, client: usize) -> bool {
        self.clients.get(client).is_some_and(|c| c.seed_signatures)
    }

    fn by_certificate(&self, peer: &crate::auth::mtls::PeerCertificate) -> Option<usize> {
        self.clients
            .iter()
            .position(|c| c.certificate.as_ref().is_some_and(|m| m.matches(peer)))
    }
}

/// Without `auth_methods`: JWT, API keys and RFC 9421 signatures (the seed's signing scheme
/// only when listed).
pub const DEFAULT_METHODS: [AuthMethod; 3] = [
    AuthMethod::Jwt,
    AuthMethod::ApiKey,
    AuthMethod::HttpSignature,
];

pub(super) fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let blocking = raw
        .security_monitoring
        .as_ref()
        .map(crate::threat::compile)
        .transpose()?;
    let events = raw
        .security_monitoring
        .as_ref()
        .map(crate::threat::compile_events)
        .transpose()?;
    let alerts = raw
        .security_monitoring
        .as_ref()
        .and_then(|m| m.alerts.as_ref())
        .map(|a| AlertSettings::compile(a, raw.host))
        .transpose()?;
    let raw_abuse = raw
        .security_monitoring
        .as_ref()
        .and_then(|m| m.abuse.as_ref());
    let mut abuse = raw_abuse.map(crate::threat::abuse::compile).transpose()?;
    let methods_explicit = raw.auth_methods.is_some();
    let methods = match &raw.auth_methods {
        None => DEFAULT_METHODS.to_vec(),
        Some(list) => {
            let mut methods = Vec::new();
            for (i, m) in list.iter().enumerate() {
                let field = format!("auth_methods[{i}]");
                let m = m.compile(&field)?;
                if methods.contains(&m) {
                    return Err(ConfigError::new(field, "listed twice"));
                }
                methods.push(m);
            }
            methods
        }
    };
    if raw.filter_state && raw.host == HostProfile::Kong {
        return Err(ConfigError::new(
            "filter_state",
            "filter state is Envoy's; on Kong's host the decision is not published (its properties are nginx variables)",
        ));
    }
    if methods.contains(&AuthMethod::Mtls) && !raw.host.reads_peer_certificates() {
        return Err(ConfigError::new(
            "auth_methods",
            "\"mtls\" needs the peer certificate, which this host does not expose (Kong's host has no connection properties)",
        ));
    }
    let oauth2 = raw
        .oauth2
        .as_ref()
        .map(crate::auth::oauth2::OAuth2Settings::compile)
        .transpose()?;
    match (methods.contains(&AuthMethod::OAuth2), oauth2.is_some()) {
        (true, false) => {
            return Err(ConfigError::new(
                "oauth2",
                "required when auth_methods lists \"oauth2\" (the introspection endpoint)",
            ))
        }
        (false, true) => {
            return Err(ConfigError::new(
                "auth_methods",
                "list \"oauth2\" to use the oauth2 section",
            ))
        }
        _ => {}
    }
    if let (Some(settings), Some(raw_abuse)) = (abuse.as_mut(), raw_abuse) {
        let listed = raw_abuse.strong_methods.is_some();
        warnings.extend(settings.fit_methods(&methods, listed)?);
    }

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
        api_key::register(
            &format!("{field}.api_keys"),
            i,
            &rc.api_keys,
            &raw.api_key,
            &mut api_keys,
            &mut warnings,
        )?;
        let client = clients::compile(&field, rc)?;
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

    let default_level = raw
        .default_security_level
        .unwrap_or(SecurityLevel::Standard);
    let report_raw = raw
        .security_monitoring
        .as_ref()
        .and_then(|m| m.report.as_ref());
    let mut routes_raw = raw.routes;
    if let Some(report) = report_raw {
        check_report_path(&report.path)?;
        // The report path is critical, whatever the routes say.
        routes_raw.push(crate::authz::levels::RawRoute {
            pattern: report.path.clone(),
            security_level: SecurityLevel::Critical,
        });
    }
    let routes = RouteTable::compile(&routes_raw, default_level)?;
    let report = report_raw
        .map(|r| compile_report(r, &clients, &client_by_id))
        .transpose()?;
    if clients.is_empty() && !routes.has_public() && raw.registry.is_none() {
        return Err(ConfigError::new(
            "clients",
            "no clients and no public routes: every request would be refused",
        ));
    }

    let mut rate_limiting = ratelimit::settings::compile(
        raw.host,
        &raw.rate_limiting,
        rate_limit_rules,
        default_limits,
    )?;
    let registry = raw
        .registry
        .as_ref()
        .map(|r| RegistrySettings::compile(raw.host, r))
        .transpose()?
        .map(|settings| {
            rate_limiting.registered_clients = Some(ratelimit::local::CounterTable {
                prefix: "aw:rlr",
                slots: settings.counter_slots,
                per_slot: 8,
            });
            Registry::new(settings, clients.len())
        });
    let mut hmac = HmacSettings::compile(&raw.hmac)?;
    // With Redis, replay protection spans every proxy, through the same webdis.
    if let ratelimit::settings::Backend::Redis(r) = &rate_limiting.backend {
        hmac.shared_replay = Some(SharedReplay {
            upstream: r.cluster.clone(),
            authority: r.authority.clone(),
            authorization: r.authorization.clone(),
            timeout_ms: r.timeout_ms,
            key_prefix: r.key_prefix.clone(),
            fail_open: r.failure_mode == ratelimit::settings::FailureMode::Allow,
        });
    }

    let client_ids = clients.iter().map(|c| c.id.clone()).collect();
    let identity_headers: Vec<_> = crate::pipeline::IDENTITY_HEADERS
        .iter()
        .map(|h| crate::engine::headers::HeaderName::Borrowed(h))
        .chain(
            jwt.iter()
                .flat_map(|j| j.claim_header_names())
                .map(|h| crate::engine::headers::HeaderName::Owned(h.to_string())),
        )
        .collect();
    let sent_identity_headers = sent_identity_headers(raw.upstream_identity_headers.as_deref())?;
    // nginx forwards the seed scheme's own X-Client-Id whatever the filter says, so Kong's host
    // lets it pass only as the client the filter sets: without that header, none ever would.
    if !raw.host.removes_headers()
        && methods.contains(&AuthMethod::Hmac)
        && !sent_identity_headers.contains(&"x-client-id")
    {
        return Err(ConfigError::new(
            "upstream_identity_headers",
            "must include x-client-id on Kong's host while auth_methods has hmac_signature \
             (its requests carry X-Client-Id, which nginx forwards)",
        ));
    }
    let threat_sync = match (&rate_limiting.backend, &blocking) {
        (ratelimit::settings::Backend::Redis(r), Some(b)) => {
            Some(SyncSettings::new(r, b.threshold, b.cooldown_seconds))
        }
        _ => None,
    };
    Ok(Config {
        host: raw.host,
        auth: AuthSettings {
            methods,
            api_keys,
            api_key_warning_seconds: within(
                "api_key.expiry_warning_days",
                raw.api_key.expiry_warning_days,
                14,
                0..=365,
            )? * 86_400,
            jwt,
            hmac,
            http_signature: HttpSignatureSettings::compile(&raw.http_signature)?,
            oauth2,
        },
        clients,
        client_by_id,
        routes,
        blocking,
        events,
        report,
        alerts,
        abuse,
        threat_sync,
        client_ids,
        sent_identity_headers,
        forward_credentials: raw.forward_credentials,
        guarded_headers: crate::pipeline::GuardedHeaders::new(
            &identity_headers,
            raw.forward_credentials,
        ),
        identity_headers,
        rate_limiting,
        registry,
        filter_state: raw.filter_state,
        warnings,
    })
}

fn check_report_path(path: &str) -> Result<(), ConfigError> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && !path.contains(['?', '#', '*'])
        && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "security_monitoring.report.path",
            "must be an exact path such as /_warden/report",
        ))
    }
}

fn compile_report(
    raw: &RawReport,
    clients: &[Client],
    by_id: &HashMap<String, usize>,
) -> Result<ReportAccess, ConfigError> {
    let field = "security_monitoring.report";
    check_report_path(&raw.path)?;
    if raw.clients.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.clients"),
            "name at least one client that may read the report",
        ));
    }
    let mut indices = Vec::new();
    for (i, id) in raw.clients.iter().enumerate() {
        let at = format!("{field}.clients[{i}]");
        let index = *by_id
            .get(id)
            .ok_or_else(|| ConfigError::new(&at, format!("no client {id:?}")))?;
        let access = clients.get(index).map(|c| &c.access);
        if access.map(|a| a.security_level) != Some(SecurityLevel::Critical) {
            return Err(ConfigError::new(&at, "must be a client at critical level"));
        }
        if !access
            .is_some_and(|a| crate::authz::endpoints::any_allows(&a.allowed_endpoints, &raw.path))
        {
            return Err(ConfigError::new(
                &at,
                format!("must list {} in its allowed_endpoints", raw.path),
            ));
        }
        indices.push(index);
    }
    Ok(ReportAccess {
        path: raw.path.clone(),
        clients: indices,
    })
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;

/// `upstream_identity_headers`: names of identity headers, each once; all of them by default.
fn sent_identity_headers(names: Option<&[String]>) -> Result<Vec<&'static str>, ConfigError> {
    let all = crate::pipeline::IDENTITY_HEADERS;
    let Some(names) = names else {
        return Ok(all.to_vec());
    };
    let mut sent = Vec::with_capacity(names.len());
    for name in names {
        let Some(known) = all.iter().find(|h| h.eq_ignore_ascii_case(name)) else {
            return Err(ConfigError::new(
                "upstream_identity_headers",
                format!("\"{name}\" is not one of {}", all.join(", ")),
            ));
        };
        if sent.contains(known) {
            return Err(ConfigError::new(
                "upstream_identity_headers",
                format!("\"{known}\" is named twice"),
            ));
        }
        sent.push(*known);
    }
    Ok(sent)
}
