//! The live client registry: clients, API keys and token revocations kept in Redis (reached
//! through webdis) instead of the configuration, so operators add, rotate, deactivate and revoke
//! without reloading the proxy. Layout in [`records`].
//!
//! A credential the configuration does not know is resolved here: this worker's copy
//! ([`table`]), then the answers every worker shares (an [`ExpiringCache`] in shared data,
//! `aw:reg:<n>`), then one `EVAL` to Redis for whatever is still unknown, while the request
//! waits. Answers are kept `cache_seconds` (absent ones `negative_cache_seconds`), so a change
//! in Redis takes effect within that time. When Redis cannot answer, configured clients keep
//! working and unknown credentials are refused with 503 `registry_unavailable`: nothing passes
//! on a registry that said nothing.

pub mod records;
pub mod table;

use crate::auth::{
    unauthorized, Attempt, AuthContext, AuthMethod, Failure, Identity, RequestFacts, Resume,
    Suspension, Wait,
};
use crate::callout::{CalloutAnswer, CalloutSpec};
use crate::clients::Client;
use crate::denial::Denial;
use crate::field::{within, ConfigError};
use crate::profile::HostProfile;
use crate::store::expiring::ExpiringCache;
use crate::store::{SharedStore, StoreError};
use records::{Cached, KeyRecord};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use table::{ClientTable, KeyMemo, Memo};

/// `registry` as operators write it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// Envoy cluster of the webdis in front of the registry's Redis (Kong: `host:port`).
    pub cluster: String,
    /// `:authority` sent to webdis. Default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// `user:password` for webdis' ACL (HTTP Basic), allowing only `EVAL`.
    #[serde(default)]
    pub http_basic_auth: Option<String>,
    /// Default 200.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// How long an answer about a key, client or token is used before asking again. Default 60.
    #[serde(default)]
    pub cache_seconds: Option<u64>,
    /// How long "no such key / client" is remembered. Default 10.
    #[serde(default)]
    pub negative_cache_seconds: Option<u64>,
    /// Shared-data keys of the shared answers (8 answers each). Default 1024.
    #[serde(default)]
    pub cache_slots: Option<usize>,
    /// Registry clients one worker keeps compiled. Default 10000.
    #[serde(default)]
    pub max_clients: Option<usize>,
    /// Shared-data keys of registry clients' local rate-limit counters (8 each). Default 4096.
    #[serde(default)]
    pub counter_slots: Option<usize>,
    /// Prefix of the registry's Redis keys (`<prefix>api_clients`, ...). Default none: the
    /// seed's names.
    #[serde(default)]
    pub key_prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub cluster: String,
    pub authority: String,
    pub authorization: Option<String>,
    pub timeout_ms: u64,
    pub cache_seconds: u64,
    pub negative_cache_seconds: u64,
    pub cache: ExpiringCache,
    pub max_clients: usize,
    pub counter_slots: usize,
    pub key_prefix: String,
}

impl RegistrySettings {
    pub fn compile(host: HostProfile, raw: &RawRegistry) -> Result<Self, ConfigError> {
        host.check_upstream("registry.cluster", &raw.cluster)?;
        let key_prefix = raw.key_prefix.clone().unwrap_or_default();
        if !key_prefix.bytes().all(|b| b.is_ascii_graphic()) || key_prefix.len() > 64 {
            return Err(ConfigError::new(
                "registry.key_prefix",
                "must be printable ASCII without spaces, at most 64 bytes",
            ));
        }
        Ok(RegistrySettings {
            cluster: raw.cluster.clone(),
            authority: raw.authority.clone().unwrap_or_else(|| raw.cluster.clone()),
            authorization: raw
                .http_basic_auth
                .as_deref()
                .map(|c| {
                    crate::ratelimit::settings::basic_authorization("registry.http_basic_auth", c)
                })
                .transpose()?,
            timeout_ms: within("registry.timeout_ms", raw.timeout_ms, 200, 1..=60_000)?,
            cache_seconds: within("registry.cache_seconds", raw.cache_seconds, 60, 1..=3600)?,
            negative_cache_seconds: within(
                "registry.negative_cache_seconds",
                raw.negative_cache_seconds,
                10,
                0..=600,
            )?,
            cache: ExpiringCache {
                prefix: "aw:reg",
                slots: within("registry.cache_slots", raw.cache_slots, 1024, 1..=65_536)?,
                per_slot: 8,
            },
            max_clients: within(
                "registry.max_clients",
                raw.max_clients,
                10_000,
                1..=1_000_000,
            )?,
            counter_slots: within(
                "registry.counter_slots",
                raw.counter_slots,
                4096,
                1..=65_536,
            )?,
            key_prefix,
        })
    }
}

/// Looks up, in one call, what the request still needs: a key's entry (and then its client's),
/// a client's entry, whether a token is revoked. Each answer is "" when absent.
pub const SCRIPT: &str = r#"
local a = cjson.decode(ARGV[1])
local p = a.prefix or ''
local out = {'', '', ''}
local id = a.client
if type(a.key) == 'string' then
  local v = redis.call('GET', p .. 'api_key:' .. a.key)
  if v then
    out[1] = v
    if type(id) ~= 'string' then
      local ok, d = pcall(cjson.decode, v)
      if ok and type(d) == 'table' then id = d.client_id else id = v end
    end
  end
end
if type(id) == 'string' then
  local doc = redis.call('HGET', p .. 'api_clients', id)
  if doc then out[2] = doc end
end
if type(a.jti) == 'string' then
  out[3] = tostring(redis.call('EXISTS', p .. 'revoked_token:' .. a.jti))
end
return out
"#;

/// What a request still needs to know from Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// SHA-256 of an API key the configuration does not know.
    pub key: Option<[u8; 32]>,
    /// A client the configuration does not know.
    pub client: Option<String>,
    /// A token's `jti`, to learn whether it was revoked.
    pub jti: Option<String>,
}

impl Lookup {
    fn is_empty(&self) -> bool {
        self.key.is_none() && self.client.is_none() && self.jti.is_none()
    }
}

/// What Redis answered to a [`Lookup`]: `None` where nothing was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    pub key: Option<Option<KeyRecord>>,
    pub client: Option<Option<String>>,
    pub revoked: Option<bool>,
}

/// `{"EVAL": [key, client, revoked]}` for what was asked; `None` when the answer is not that.
pub fn parse_answer(asked: &Lookup, body: &[u8]) -> Option<Answered> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let list = value.get("EVAL")?.as_array()?;
    let [key, doc, revoked] = list.as_slice() else {
        return None;
    };
    let (key, doc, revoked) = (key.as_str()?, doc.as_str()?, revoked.as_str()?);
    let mut answered = Answered::default();
    if asked.key.is_some() {
        // A value that is neither a client id nor an entry makes the key unusable.
        answered.key = Some((!key.is_empty()).then(|| KeyRecord::parse(key)).flatten());
    }
    let client_asked = asked.client.is_some() || answered.key.as_ref().is_some_and(Option::is_some);
    if client_asked {
        answered.client = Some((!doc.is_empty()).then(|| doc.to_string()));
    }
    if asked.jti.is_some() {
        answered.revoked = Some(match revoked {
            "1" => true,
            "0" => false,
            _ => return None,
        });
    }
    Some(answered)
}

/// This worker's registry: settings and what it learnt.
#[derive(Debug)]
pub struct Registry {
    pub settings: RegistrySettings,
    clients: RefCell<ClientTable>,
    keys: RefCell<KeyMemo>,
    revoked: RefCell<Memo<String, bool>>,
}

/// How the method finishes once the client is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub method: AuthMethod,
    /// The credential's own scopes (a token's); `None` takes the client's, narrowed by the
    /// key's when the key has some.
    pub scopes: Option<Vec<String>>,
    pub headers: Vec<(String, String)>,
}

fn unavailable(method: AuthMethod, why: &str) -> Failure {
    Failure {
        method,
        denial: Denial::new(
            503,
            "registry_unavailable",
            format!("the client registry cannot answer right now ({why}); retry shortly"),
        ),
    }
}

fn unknown_client(method: AuthMethod, message: &str) -> Failure {
    unauthorized(method, "unknown_client", message)
}

/// What is known about one item so far.
enum Known<T> {
    Yes(T),
    Absent,
    Ask,
}

impl Registry {
    /// `configured` is how many clients the configuration has (registry indices follow).
    pub fn new(settings: RegistrySettings, configured: usize) -> Self {
        let max = settings.max_clients;
        Registry {
            clients: RefCell::new(ClientTable::new(configured, max)),
            keys: RefCell::new(Memo::new(max.saturating_mul(4))),
            revoked: RefCell::new(Memo::new(max.saturating_mul(4))),
            settings,
        }
    }

    pub fn prepare<S: SharedStore + ?Sized>(&self, store: &S) -> Result<(), StoreError> {
        self.settings.cache.prepare(store)
    }

    /// A registry client by its directory index.
    pub fn client(&self, index: usize) -> Option<Rc<Client>> {
        self.clients.try_borrow().ok()?.get(index)
    }

    /// How many registry clients this worker holds.
    pub fn held(&self) -> usize {
        self.clients.try_borrow().map_or(0, |t| t.len())
    }

    fn cached(&self, store: &dyn SharedStore, digest: &[u8; 32], now: u64) -> Option<Cached> {
        // A cache that cannot be read only costs a call.
        self.settings.cache.get(store, digest, now).ok().flatten()
    }

    fn remember(&self, store: &dyn SharedStore, digest: &[u8; 32], entry: &Cached, now: u64) {
        // A cache that cannot be written only costs another call next time.
        let _ = self.settings.cache.put(store, digest, entry, now);
    }

    fn until(&self, present: bool, now: u64) -> u64 {
        now + if present {
            self.settings.cache_seconds
        } else {
            self.settings.negative_cache_seconds
        }
    }

    fn key(&self, ctx: &AuthContext, digest: &[u8; 32], answered: &Answered) -> Known<KeyRecord> {
        if let Some(found) = &answered.key {
            return match found {
                Some(r) => Known::Yes(r.clone()),
                None => Known::Absent,
            };
        }
        if let Some(r) = self
            .keys
            .try_borrow()
            .ok()
            .and_then(|m| m.get(digest, ctx.now))
        {
            return Known::Yes(r);
        }
        match self.cached(ctx.store, &records::key_digest(digest), ctx.now) {
            Some(Cached::Key {
                record: Some(r),
                until,
            }) => {
                if let Ok(mut memo) = self.keys.try_borrow_mut() {
                    memo.put(*digest, r.clone(), until, ctx.now);
                }
                Known::Yes(r)
            }
            Some(Cached::Key { record: None, .. }) => Known::Absent,
            _ => Known::Ask,
        }
    }

    /// The client's directory index; `Err` with the reason its entry cannot be used.
    fn client_index(
        &self,
        ctx: &AuthContext,
        id: &str,
        answered: &Answered,
    ) -> Known<Result<usize, String>> {
        if let Some(index) = ctx.directory.find(id) {
            return Known::Yes(Ok(index));
        }
        let (document, until) = match &answered.client {
            Some(Some(doc)) => (doc.clone(), self.until(true, ctx.now)),
            Some(None) => return Known::Absent,
            None => {
                let fresh = self
                    .clients
                    .try_borrow()
                    .ok()
                    .and_then(|t| t.fresh(id, ctx.now));
                if let Some(index) = fresh {
                    return Known::Yes(Ok(index));
                }
                match self.cached(ctx.store, &records::client_digest(id), ctx.now) {
                    Some(Cached::Client {
                        document: Some(doc),
                        until,
                    }) => (doc, until),
                    Some(Cached::Client { document: None, .. }) => return Known::Absent,
                    _ => return Known::Ask,
                }
            }
        };
        let client = match records::compile_document(id, &document) {
            Ok(c) => c,
            Err(why) => return Known::Yes(Err(why)),
        };
        let installed = self
            .clients
            .try_borrow_mut()
            .ok()
            .and_then(|mut t| t.install(client, until, ctx.now));
        match installed {
            Some(index) => Known::Yes(Ok(index)),
            None => Known::Yes(Err(format!(
                "this worker already holds registry.max_clients ({}) clients in use",
                self.settings.max_clients
            ))),
        }
    }

    fn revoked(&self, ctx: &AuthContext, jti: &str, answered: &Answered) -> Known<()> {
        let revoked = match answered.revoked {
            Some(r) => Some(r),
            None => self
                .revoked
                .try_borrow()
                .ok()
                .and_then(|m| m.get(&jti.to_string(), ctx.now))
                .or_else(
                    || match self.cached(ctx.store, &records::jti_digest(jti), ctx.now) {
                        Some(Cached::Revoked { revoked, until }) => {
                            if let Ok(mut memo) = self.revoked.try_borrow_mut() {
                                memo.put(jti.to_string(), revoked, until, ctx.now);
                            }
                            Some(revoked)
                        }
                        _ => None,
                    },
                ),
        };
        match revoked {
            Some(true) => Known::Yes(()),
            Some(false) => Known::Absent,
            None => Known::Ask,
        }
    }

    /// Writes what Redis answered where every worker (and this one) will find it.
    fn learn(&self, ctx: &AuthContext, asked: &Lookup, answered: &Answered) {
        let now = ctx.now;
        if let (Some(digest), Some(found)) = (&asked.key, &answered.key) {
            let mut until = self.until(found.is_some(), now);
            if let Some(r) = found {
                until = until.min(r.expires_at.unwrap_or(u64::MAX).max(now + 1));
                if let Ok(mut memo) = self.keys.try_borrow_mut() {
                    memo.put(*digest, r.clone(), until, now);
                }
            }
            let entry = Cached::Key {
                record: found.clone(),
                until,
            };
            self.remember(ctx.store, &records::key_digest(digest), &entry, now);
        }
        let client_id = asked.client.clone().or_else(|| {
            answered
                .key
                .as_ref()
                .and_then(|k| k.as_ref().map(|r| r.client_id.clone()))
        });
        if let (Some(id), Some(found)) = (client_id, &answered.client) {
            let entry = Cached::Client {
                document: found.clone(),
                until: self.until(found.is_some(), now),
            };
            self.remember(ctx.store, &records::client_digest(&id), &entry, now);
        }
        if let (Some(jti), Some(revoked)) = (&asked.jti, answered.revoked) {
            // A revocation is remembered as long as a present entry; its end as briefly as an
            // absent one, so a new revocation is seen soon.
            let until = self.until(revoked, now);
            if let Ok(mut memo) = self.revoked.try_borrow_mut() {
                memo.put(jti.clone(), revoked, until, now);
            }
            let entry = Cached::Revoked { revoked, until };
            self.remember(ctx.store, &records::jti_digest(jti), &entry, now);
        }
    }

    /// The call that asks Redis.
    pub fn call(&self, lookup: &Lookup) -> CalloutSpec {
        let mut arg = serde_json::Map::new();
        arg.insert("prefix".into(), json!(self.settings.key_prefix));
        if let Some(key) = &lookup.key {
            arg.insert("key".into(), json!(hex::encode(key)));
        }
        if let Some(client) = &lookup.client {
            arg.insert("client".into(), json!(client));
        }
        if let Some(jti) = &lookup.jti {
            arg.insert("jti".into(), json!(jti));
        }
        let headers: Vec<(String, String)> = self
            .settings
            .authorization
            .iter()
            .map(|v| ("authorization".to_string(), v.clone()))
            .collect();
        // A GET with every argument in the path: Kong's host mishandles the request's reply
        // when a call that carried a body times out (nginx writes an empty response).
        let encode = crate::ratelimit::redis::encode;
        CalloutSpec {
            upstream: self.settings.cluster.clone(),
            authority: self.settings.authority.clone(),
            method: "GET",
            path: format!(
                "/EVAL/{}/0/{}",
                encode(SCRIPT),
                encode(&Value::Object(arg).to_string())
            ),
            headers,
            body: Vec::new(),
            timeout_ms: self.settings.timeout_ms,
            grpc: None,
        }
    }
}

/// Decides with what is known, asking Redis (once) for the rest. `lookup` names what the
/// configuration did not know; `answered` is Redis' answer when this is the resumption.
pub fn resolve(
    ctx: &AuthContext,
    lookup: Lookup,
    partial: Partial,
    answered: Option<&Answered>,
) -> Attempt {
    let method = partial.method;
    let Some(registry) = ctx.registry else {
        return Attempt::Failed(unknown_client(
            method,
            "the credential names an unknown client",
        ));
    };
    let none = Answered::default();
    let answer = answered.unwrap_or(&none);
    let mut ask = Lookup::default();
    let mut key_record = None;
    let mut client_id = lookup.client.clone();
    if let Some(digest) = &lookup.key {
        match registry.key(ctx, digest, answer) {
            Known::Yes(r) => {
                client_id = Some(r.client_id.clone());
                key_record = Some(r);
            }
            Known::Absent => {
                return Attempt::Failed(unauthorized(
                    AuthMethod::ApiKey,
                    "invalid_api_key",
                    "API key is not valid",
                ))
            }
            Known::Ask => ask.key = Some(*digest),
        }
    }
    let mut client = None;
    if let Some(id) = &client_id {
        match registry.client_index(ctx, id, answer) {
            Known::Yes(Ok(index)) => client = Some(index),
            Known::Yes(Err(why)) => {
                log::warn!("api-warden: registry client {id:?} cannot be used: {why}");
                return Attempt::Failed(unknown_client(
                    method,
                    "the client's registry entry cannot be used",
                ));
            }
            Known::Absent => {
                return Attempt::Failed(unknown_client(
                    method,
                    "the credential names an unknown client",
                ))
            }
            Known::Ask => ask.client = Some(id.clone()),
        }
    }
    if let Some(jti) = &lookup.jti {
        match registry.revoked(ctx, jti, answer) {
            Known::Yes(()) => {
                return Attempt::Failed(unauthorized(
                    AuthMethod::Jwt,
                    "token_revoked",
                    "token has been revoked",
                ))
            }
            Known::Absent => {}
            Known::Ask => ask.jti = Some(jti.clone()),
        }
    }
    if !ask.is_empty() {
        if answered.is_some() {
            // Redis answered and something is still unknown: never ask twice, never guess.
            return Attempt::Failed(unavailable(method, "an incomplete answer"));
        }
        // The key's own lookup finds its client.
        if ask.key.is_some() {
            ask.client = None;
        }
        return Attempt::Suspended(Suspension {
            method,
            claimed: None,
            wait: Wait::Call(registry.call(&ask)),
            resume: Box::new(AwaitRegistry {
                asked: ask,
                lookup,
                partial,
            }),
        });
    }
    let Some(client) = client else {
        return Attempt::Failed(unknown_client(method, "the credential names no client"));
    };
    identity(ctx, client, key_record.as_ref(), partial)
}

fn identity(ctx: &AuthContext, client: usize, key: Option<&KeyRecord>, p: Partial) -> Attempt {
    let configured = client < ctx.directory.count();
    let registered = ctx.registry.and_then(|r| r.client(client));
    let (client_id, client_scopes): (&str, &[String]) = match (configured, &registered) {
        (true, _) => (ctx.directory.id(client), ctx.directory.scopes(client)),
        (false, Some(c)) => (c.id.as_str(), c.scopes.as_slice()),
        (false, None) => {
            return Attempt::Failed(unknown_client(p.method, "the credential names no client"))
        }
    };
    let mut warning = None;
    if let Some(expires_at) = key.and_then(|k| k.expires_at) {
        if ctx.now >= expires_at {
            return Attempt::Failed(unauthorized(
                AuthMethod::ApiKey,
                "api_key_expired",
                "API key has expired",
            ));
        }
        if expires_at - ctx.now <= ctx.settings.api_key_warning_seconds {
            let key_id = key.and_then(|k| k.key_id.as_deref()).unwrap_or("(unnamed)");
            warning = Some(format!(
                "API key {key_id} of client {client_id} expires at {expires_at} (Unix seconds)"
            ));
        }
    }
    let scopes = match (p.scopes, key.and_then(|k| k.scopes.as_ref())) {
        (Some(own), _) => own,
        // A key's own scopes narrow the client's: a key never carries a scope its client lacks.
        (None, Some(narrow)) => narrow
            .iter()
            .filter(|s| client_scopes.contains(s))
            .cloned()
            .collect(),
        (None, None) => client_scopes.to_vec(),
    };
    Attempt::Verified(Identity {
        client,
        method: p.method,
        scopes,
        warning,
        headers: p.headers,
    })
}

#[derive(Debug)]
struct AwaitRegistry {
    asked: Lookup,
    lookup: Lookup,
    partial: Partial,
}

impl Resume for AwaitRegistry {
    fn with_body(self: Box<Self>, _: &AuthContext, _: &RequestFacts, _: &[u8]) -> Attempt {
        Attempt::Failed(unavailable(self.partial.method, "no body was awaited"))
    }

    fn with_answer(self: Box<Self>, ctx: &AuthContext, answer: &CalloutAnswer) -> Attempt {
        let method = self.partial.method;
        let Some(registry) = ctx.registry else {
            return Attempt::Failed(unavailable(method, "not configured"));
        };
        let body = match answer {
            CalloutAnswer::Response { status: 200, body } => body,
            CalloutAnswer::Response { status, .. } => {
                return Attempt::Failed(unavailable(method, &format!("webdis answered {status}")))
            }
            CalloutAnswer::NoResponse => {
                return Attempt::Failed(unavailable(method, "no answer in time"))
            }
            CalloutAnswer::DispatchFailed => {
                return Attempt::Failed(unavailable(method, "the call could not be made"))
            }
        };
        let Some(answered) = parse_answer(&self.asked, body) else {
            return Attempt::Failed(unavailable(method, "an answer that is not the script's"));
        };
        registry.learn(ctx, &self.asked, &answered);
        resolve(ctx, self.lookup, self.partial, Some(&answered))
    }
}

#[cfg(test)]
mod tests;
