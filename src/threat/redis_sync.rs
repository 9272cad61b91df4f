//! Threat state across proxies, through the same Redis (webdis) as distributed rate limiting:
//! once a second each worker sends, in one `EVAL` ([`SCRIPT`]), the failed authentications it
//! counted per address, the blocks it made and its security events; Redis counts failures per
//! address across every proxy (a window of `ip_cooldown`'s hour from the first failure), blocks an
//! address that reaches `failed_auth_threshold` there, keeps the blocks in one sorted set, and
//! keeps the last 10,000 events in the seed's `security_events` list. The answer is every
//! block in force, which the worker writes into this proxy's block table, so an address blocked
//! by any proxy is refused by all of them within about a second.
//!
//! Keys share the hash tag `{<prefix>:threat}`, so the script runs unchanged on Redis Cluster.
//! What a worker queues is bounded ([`MAX_ADDRESSES`], [`MAX_EVENTS`]); a failed call loses its
//! batch (counted), never delays a request.

use crate::callout::CalloutSpec;
use crate::ratelimit::redis::encode;
use crate::ratelimit::settings::RedisSettings;
use serde_json::{json, Value};
use std::collections::HashMap;

/// KEYS: events list, blocks sorted set, failure-counter prefix. ARGV[1]: JSON with `now`,
/// `threshold`, `cooldown`, `window`, `cap`, `fails` ([address, n]), `blocks` ([address, until])
/// and `events` (JSON strings). Returns the blocks in force: address, until, ...
pub const SCRIPT: &str = r#"
local a = cjson.decode(ARGV[1])
local now = tonumber(a.now)
for _, f in ipairs(a.fails) do
  local k = KEYS[3] .. f[1]
  local c = redis.call('INCRBY', k, f[2])
  if c == f[2] then redis.call('EXPIRE', k, a.window) end
  if c >= a.threshold then
    redis.call('ZADD', KEYS[2], 'GT', now + a.cooldown, f[1])
    redis.call('DEL', k)
  end
end
for _, b in ipairs(a.blocks) do redis.call('ZADD', KEYS[2], 'GT', b[2], b[1]) end
for _, e in ipairs(a.events) do redis.call('LPUSH', KEYS[1], e) end
if #a.events > 0 then redis.call('LTRIM', KEYS[1], 0, a.cap - 1) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1000)
"#;

/// Addresses a worker queues between calls (failures and blocks each).
pub const MAX_ADDRESSES: usize = 1024;
/// Events a worker queues between calls.
pub const MAX_EVENTS: usize = 256;
/// The seed's cap on `security_events`.
pub const EVENT_LIST_CAP: u64 = 10_000;
/// Without anything to send, a worker still asks for the blocks in force this often.
const PULL_SECONDS: u64 = 2;
/// Blocks remembered as already written to this proxy's table.
const KNOWN: usize = 4096;

/// Where and how to sync: from the Redis settings and the block table's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    pub cluster: String,
    pub authority: String,
    pub authorization: Option<String>,
    pub timeout_ms: u64,
    pub key_prefix: String,
    pub threshold: u32,
    pub cooldown_seconds: u64,
}

impl SyncSettings {
    pub fn new(redis: &RedisSettings, threshold: u32, cooldown_seconds: u64) -> Self {
        Self {
            cluster: redis.cluster.clone(),
            authority: redis.authority.clone(),
            authorization: redis.authorization.clone(),
            timeout_ms: redis.timeout_ms,
            key_prefix: redis.key_prefix.clone(),
            threshold,
            cooldown_seconds,
        }
    }

    fn keys(&self) -> [String; 3] {
        let tag = format!("{{{}:threat}}", self.key_prefix);
        [
            format!("{tag}:security_events"),
            format!("{tag}:blocks"),
            format!("{tag}:fail:"),
        ]
    }
}

/// An address as Redis holds it: the block table's 16 bytes in hex.
fn member(address: &[u8; 16]) -> String {
    hex::encode(address)
}

fn address(member: &str) -> Option<[u8; 16]> {
    let bytes = hex::decode(member).ok()?;
    bytes.try_into().ok()
}

/// One worker's queue for the next call.
#[derive(Debug, Default)]
pub struct SyncQueue {
    fails: HashMap<[u8; 16], u32>,
    blocks: HashMap<[u8; 16], u64>,
    events: Vec<String>,
    /// Entries that did not fit (counted by the adapter, then reset).
    pub dropped: u64,
    last_call: u64,
    in_flight: bool,
    known: HashMap<[u8; 16], u64>,
}

impl SyncQueue {
    pub fn failure(&mut self, address: [u8; 16]) {
        if let Some(n) = self.fails.get_mut(&address) {
            *n = n.saturating_add(1);
        } else if self.fails.len() < MAX_ADDRESSES {
            self.fails.insert(address, 1);
        } else {
            self.dropped += 1;
        }
    }

    pub fn block(&mut self, address: [u8; 16], until: u64) {
        if self.blocks.len() < MAX_ADDRESSES || self.blocks.contains_key(&address) {
            let at = self.blocks.entry(address).or_default();
            *at = (*at).max(until);
            self.known.insert(address, until);
        } else {
            self.dropped += 1;
        }
    }

    pub fn event(&mut self, json: &str) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(json.to_string());
        } else {
            self.dropped += 1;
        }
    }

    /// The call for this tick: when something is queued, or every few seconds to learn the
    /// blocks other proxies made. One at a time.
    pub fn call(&mut self, settings: &SyncSettings, now: u64) -> Option<CalloutSpec> {
        let queued = !self.fails.is_empty() || !self.blocks.is_empty() || !self.events.is_empty();
        // An answer always comes (or times out); one that has not by then was lost by the host.
        let lost = now > self.last_call + settings.timeout_ms / 1000 + PULL_SECONDS;
        if (self.in_flight && !lost) || (!queued && now < self.last_call + PULL_SECONDS) {
            return None;
        }
        self.in_flight = true;
        self.last_call = now;
        let fails: Vec<Value> = self
            .fails
            .drain()
            .map(|(a, n)| json!([member(&a), n]))
            .collect();
        let blocks: Vec<Value> = self
            .blocks
            .drain()
            .map(|(a, until)| json!([member(&a), until]))
            .collect();
        let events = std::mem::take(&mut self.events);
        let args = json!({
            "now": now,
            "threshold": settings.threshold,
            "cooldown": settings.cooldown_seconds,
            "window": 3600,
            "cap": EVENT_LIST_CAP,
            "fails": fails,
            "blocks": blocks,
            "events": events,
        });
        let [events_key, blocks_key, fail_prefix] = settings.keys();
        let path = format!(
            "/EVAL/{}/3/{}/{}/{}",
            encode(SCRIPT),
            encode(&events_key),
            encode(&blocks_key),
            encode(&fail_prefix)
        );
        let mut headers: Vec<(String, String)> = settings
            .authorization
            .iter()
            .map(|v| ("authorization".to_string(), v.clone()))
            .collect();
        headers.push(("content-type".to_string(), "application/json".to_string()));
        Some(CalloutSpec {
            upstream: settings.cluster.clone(),
            authority: settings.authority.clone(),
            // webdis appends a PUT body as the command's last argument.
            method: "PUT",
            path,
            headers,
            body: args.to_string().into_bytes(),
            timeout_ms: settings.timeout_ms,
            grpc: None,
        })
    }

    /// The answer to the last call: the blocks to write into this proxy's table (those not
    /// written already), or `None` when the call failed or the answer is not what the script
    /// returns.
    pub fn answered(&mut self, status: Option<u16>, body: &[u8]) -> Option<Vec<([u8; 16], u64)>> {
        self.in_flight = false;
        if status != Some(200) {
            return None;
        }
        let blocks = parse(body)?;
        if self.known.len() > KNOWN {
            self.known.clear();
        }
        Some(
            blocks
                .into_iter()
                .filter(|(a, until)| {
                    let fresh = self.known.get(a) != Some(until);
                    if fresh {
                        self.known.insert(*a, *until);
                    }
                    fresh
                })
                .collect(),
        )
    }
}

/// `{"EVAL": [address, until, ...]}` (webdis returns scores as strings).
fn parse(body: &[u8]) -> Option<Vec<([u8; 16], u64)>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let list = value.get("EVAL")?.as_array()?;
    if list.len() % 2 != 0 || list.len() > 2000 {
        return None;
    }
    list.chunks(2)
        .map(|pair| {
            let a = address(pair[0].as_str()?)?;
            let until = match &pair[1] {
                Value::String(s) => s.parse::<f64>().ok()?,
                Value::Number(n) => n.as_f64()?,
                _ => return None,
            };
            (until.is_finite() && until > 0.0).then_some((a, until as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SyncSettings {
        SyncSettings {
            cluster: "webdis".into(),
            authority: "webdis".into(),
            authorization: Some("Basic eA==".into()),
            timeout_ms: 100,
            key_prefix: "aw".into(),
            threshold: 5,
            cooldown_seconds: 3600,
        }
    }

    #[test]
    fn a_tick_sends_what_was_queued_in_one_call() {
        let mut q = SyncQueue::default();
        let a = [7u8; 16];
        q.failure(a);
        q.failure(a);
        q.block([9u8; 16], 5000);
        q.event("{\"event_type\":\"x\"}");
        let call = q.call(&settings(), 1000).unwrap();
        assert_eq!(call.method, "PUT");
        assert!(call.path.starts_with("/EVAL/"));
        assert!(call.path.ends_with("/3/%7Baw%3Athreat%7D%3Asecurity_events/%7Baw%3Athreat%7D%3Ablocks/%7Baw%3Athreat%7D%3Afail%3A"), "{}", call.path);
        assert!(call
            .headers
            .contains(&("authorization".into(), "Basic eA==".into())));
        let args: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(args["fails"], json!([[hex::encode(a), 2]]));
        assert_eq!(args["blocks"], json!([[hex::encode([9u8; 16]), 5000]]));
        assert_eq!(args["events"][0], "{\"event_type\":\"x\"}");
        assert_eq!(
            (args["threshold"].as_u64(), args["cap"].as_u64()),
            (Some(5), Some(10_000))
        );
        // One at a time; nothing new and recent: no call.
        assert!(q.call(&settings(), 1001).is_none(), "in flight");
        q.answered(Some(200), br#"{"EVAL":[]}"#).unwrap();
        assert!(q.call(&settings(), 1001).is_none(), "nothing to say yet");
        assert!(
            q.call(&settings(), 1002).is_some(),
            "pull the blocks now and then"
        );
    }

    #[test]
    fn answers_are_the_blocks_in_force_written_once() {
        let mut q = SyncQueue::default();
        let a = hex::encode([1u8; 16]);
        let body = format!(r#"{{"EVAL":["{a}","4600"]}}"#);
        q.call(&settings(), 1000);
        assert_eq!(
            q.answered(Some(200), body.as_bytes()).unwrap(),
            [([1u8; 16], 4600)]
        );
        q.call(&settings(), 1003);
        assert!(
            q.answered(Some(200), body.as_bytes()).unwrap().is_empty(),
            "known already"
        );
        for bad in [
            &br#"{"EVAL":["zz","1"]}"#[..],
            br#"{"EVAL":["0101"]}"#,
            br#"{"EVAL":[false,"ERR x"]}"#,
            b"garbage",
        ] {
            q.call(&settings(), 2000);
            assert!(
                q.answered(Some(200), bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        q.call(&settings(), 3000);
        assert!(q.answered(Some(503), b"").is_none());
        q.event("{}");
        assert!(
            q.call(&settings(), 3000).is_some(),
            "a failed call frees the slot"
        );
        // An answer the host never delivers does not stop syncing for good.
        assert!(q.call(&settings(), 3001).is_none());
        assert!(q.call(&settings(), 3003).is_some());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = SyncQueue::default();
        for n in 0..2000u32 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&n.to_be_bytes());
            q.failure(a);
            q.event("{}");
        }
        assert_eq!(q.fails.len(), MAX_ADDRESSES);
        assert_eq!(q.events.len(), MAX_EVENTS);
        assert_eq!(q.dropped, (2000 - MAX_ADDRESSES + 2000 - MAX_EVENTS) as u64);
    }
}
