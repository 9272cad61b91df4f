//! Cluster-wide counting in Redis, reached through webdis with the proxy's HTTP callouts.
//!
//! One `EVALSHA` per decision runs [`SCRIPT`] atomically (by its SHA-1, so the script does not
//! travel with every request; when Redis answers `NOSCRIPT`, after a restart for instance, the
//! same decision is sent again as a full `EVAL`, which also caches the script): it reads the minute, hour and day
//! counters and the burst bucket, and only when every one has room increments them all. It
//! returns the counts it saw, and the filter turns them into a decision with the same arithmetic
//! as the local mode (`window::verdict`). Keys carry their window start and a TTL, so Redis
//! holds at most two windows of each counter.

use super::window::{self, Decision, Snapshot};
use super::Limits;
use serde_json::Value;

/// KEYS: minute, hour, day, bucket. ARGV: per_minute, per_hour, per_day, burst, now_ms,
/// bucket_ttl_ms, count. A positive count asks for up to that many admissions (1 without
/// batching) and returns {granted, minute, hour, day, tokens_milli}, counts before this call; a
/// negative count gives that many unused admissions back to the windows they were taken in.
pub const SCRIPT: &str = r#"
local pm, ph, pd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local burst, now, bttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local n = tonumber(ARGV[7] or '1')
if n < 0 then
  for i = 1, 3 do
    if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('DECRBY', KEYS[i], -n) < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
  local t = redis.call('HGET', KEYS[4], 't')
  if t then redis.call('HSET', KEYS[4], 't', math.min(burst * 1000, tonumber(t) - n * 1000)) end
  return {0, 0, 0, 0, 0}
end
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local h = tonumber(redis.call('GET', KEYS[2]) or '0')
local d = tonumber(redis.call('GET', KEYS[3]) or '0')
local b = redis.call('HMGET', KEYS[4], 't', 'u')
local cap = burst * 1000
local tokens = cap
if b[1] and b[2] then
  local elapsed = now - tonumber(b[2])
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(cap, tonumber(b[1]) + math.floor(elapsed * pm / 60))
end
local g = math.min(n, pm - m, ph - h, pd - d, math.floor(tokens / 1000))
if g >= 1 then
  redis.call('INCRBY', KEYS[1], g); redis.call('EXPIRE', KEYS[1], 120)
  redis.call('INCRBY', KEYS[2], g); redis.call('EXPIRE', KEYS[2], 7200)
  redis.call('INCRBY', KEYS[3], g); redis.call('EXPIRE', KEYS[3], 172800)
  redis.call('HSET', KEYS[4], 't', tokens - g * 1000, 'u', now)
  redis.call('PEXPIRE', KEYS[4], bttl)
  return {g, m, h, d, tokens}
end
return {0, m, h, d, tokens}
"#;

/// Percent-encodes one webdis path argument (webdis splits the path on '/').
pub(crate) fn encode(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() * 3);
    for b in arg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `:authority` of a counting call when sharding by consistent hash: a digest of the
/// counted subject before the configured authority. Envoy hashes callouts by `:authority`, so a
/// webdis cluster balanced with RING_HASH or MAGLEV sends every call about one subject (its
/// counts, reservations and give-backs) to the same webdis/Redis pair.
pub fn shard_authority(authority: &str, subject_key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(subject_key.as_bytes());
    format!("{}.{authority}", hex::encode(&digest[..8]))
}

/// Hex SHA-1 of [`SCRIPT`], as Redis names cached scripts.
pub fn script_sha() -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(SCRIPT.as_bytes()))
}

/// How the script is named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    /// `EVALSHA` with the script's SHA-1 ([`script_sha`]): the usual, small request.
    BySha(&'a str),
    /// `EVAL` with the whole script: after `NOSCRIPT`.
    WithScript,
}

/// The webdis request path for one decision.
/// `count`: admissions asked for (1 without batching), or, negative, unused ones given back;
/// `now_ms` picks the windows, so a give-back passes the time the admissions were taken.
pub fn request_path(
    call: Call,
    prefix: &str,
    subject_key: &str,
    limits: &Limits,
    now_ms: u64,
    count: i64,
) -> String {
    let now_s = now_ms / 1000;
    let start = |len: u64| now_s - now_s % len;
    // `{...}` is a Redis Cluster hash tag: the four keys one script touches share a slot.
    let keys = [
        format!("{prefix}:{{{subject_key}}}:m:{}", start(60)),
        format!("{prefix}:{{{subject_key}}}:h:{}", start(3600)),
        format!("{prefix}:{{{subject_key}}}:d:{}", start(86_400)),
        format!("{prefix}:{{{subject_key}}}:b"),
    ];
    // The bucket is full again after this long, so it can expire then.
    let bucket_ttl_ms = limits.burst.saturating_mul(60_000) / limits.per_minute.max(1) + 1000;
    let args = [
        limits.per_minute,
        limits.per_hour,
        limits.per_day,
        limits.burst,
        now_ms,
        bucket_ttl_ms,
    ];
    let mut path = match call {
        Call::BySha(sha) => format!("/EVALSHA/{}/4", encode(sha)),
        Call::WithScript => format!("/EVAL/{}/4", encode(SCRIPT)),
    };
    for k in &keys {
        path.push('/');
        path.push_str(&encode(k));
    }
    for a in args {
        path.push('/');
        path.push_str(&a.to_string());
    }
    path.push('/');
    path.push_str(&count.to_string());
    path
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    Status(u32),
    Garbage,
    /// Redis answered with an error (webdis: `{"EVAL": [false, "ERR ..."]}`).
    Script(String),
    /// Redis does not have the script cached: send it whole.
    NoScript,
}

impl RedisError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Garbage => "garbage",
            Self::Script(_) => "script",
            Self::NoScript => "noscript",
        }
    }
}

/// Turns webdis' answer into a decision. Anything unexpected is an error, never a guess.
/// What Redis decided for one request that asked for `asked` admissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// For this request.
    pub decision: Decision,
    /// Admissions granted, this request's included (0 when refused).
    pub granted: u64,
    /// Counts before the grant.
    pub before: Snapshot,
}

pub fn parse_response(
    status: u32,
    body: &[u8],
    limits: &Limits,
    now_ms: u64,
    asked: u64,
) -> Result<Reply, RedisError> {
    if status != 200 {
        return Err(RedisError::Status(status));
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| RedisError::Garbage)?;
    let list = value
        .get("EVALSHA")
        .or_else(|| value.get("EVAL"))
        .and_then(Value::as_array)
        .ok_or(RedisError::Garbage)?;
    if let [Value::Bool(false), Value::String(message)] = list.as_slice() {
        if message.starts_with("NOSCRIPT") {
            return Err(RedisError::NoScript);
        }
        return Err(RedisError::Script(message.chars().take(200).collect()));
    }
    let numbers: Vec<u64> = list.iter().filter_map(Value::as_u64).collect();
    let [granted, minute, hour, day, tokens_milli] = numbers.as_slice() else {
        return Err(RedisError::Garbage);
    };
    let before = Snapshot {
        minute: *minute,
        hour: *hour,
        day: *day,
        tokens_milli: *tokens_milli,
    };
    let decision = window::verdict(&before, limits, now_ms);
    // The grant must agree with the counts, and never exceed what was asked.
    if decision.allowed != (*granted >= 1) || *granted > asked.max(1) {
        return Err(RedisError::Garbage);
    }
    Ok(Reply {
        decision,
        granted: *granted,
        before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        per_minute: 50,
        per_hour: 500,
        per_day: 5000,
        burst: 10,
    };
    const NOW: u64 = 1_795_910_410_123;

    #[test]
    fn request_path_carries_keys_with_window_starts_and_encoded_arguments() {
        let path = request_path(Call::WithScript, "aw", "team/a:api_send", &L, NOW, 1);
        assert!(path.starts_with("/EVAL/%0Alocal%20pm"), "{path}");
        let tail: Vec<&str> = path.rsplit('/').skip(1).take(11).collect();
        assert!(path.ends_with("/1"));
        assert_eq!(tail[0], "13000"); // bucket ttl: 10 * 60000 / 50 + 1000
        assert_eq!(tail[1], NOW.to_string());
        assert_eq!(tail[6], "aw%3A%7Bteam%2Fa%3Aapi_send%7D%3Ab");
        assert_eq!(tail[9], "aw%3A%7Bteam%2Fa%3Aapi_send%7D%3Am%3A1795910400");
        assert!(!SCRIPT.is_empty() && !path[1..].contains("//"));
    }

    #[test]
    fn usual_requests_name_the_script_by_its_sha() {
        let sha = script_sha();
        assert_eq!(sha.len(), 40);
        let path = request_path(Call::BySha(&sha), "aw", "c:r", &L, NOW, 5);
        assert!(
            path.starts_with(&format!("/EVALSHA/{sha}/4/aw%3A%7Bc%3Ar%7D%3Am%3A")),
            "{path}"
        );
        assert!(path.len() < 240, "{} bytes", path.len());
    }

    #[test]
    fn noscript_asks_for_the_whole_script() {
        let body = br#"{"EVALSHA":[false,"NOSCRIPT No matching script. Please use EVAL."]}"#;
        assert_eq!(
            parse_response(200, body, &L, NOW, 1),
            Err(RedisError::NoScript)
        );
        let d = parse_response(200, br#"{"EVALSHA":[1,0,0,0,10000]}"#, &L, NOW, 1).unwrap();
        assert!(d.decision.allowed);
    }

    #[test]
    fn answers_become_decisions() {
        let d = parse_response(200, br#"{"EVAL":[1,3,3,3,10000]}"#, &L, NOW, 1)
            .unwrap()
            .decision;
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (50, 46));
        let d = parse_response(200, br#"{"EVAL":[0,50,50,50,10000]}"#, &L, NOW, 1)
            .unwrap()
            .decision;
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(50));
        // A batch: up to 5 asked, 4 granted.
        let r = parse_response(200, br#"{"EVALSHA":[4,46,46,46,10000]}"#, &L, NOW, 5).unwrap();
        assert_eq!((r.granted, r.decision.allowed), (4, true));
        assert_eq!(
            parse_response(200, br#"{"EVALSHA":[6,0,0,0,10000]}"#, &L, NOW, 5),
            Err(RedisError::Garbage),
            "more than asked"
        );
    }

    #[test]
    fn anything_else_is_an_error() {
        assert_eq!(
            parse_response(503, b"", &L, NOW, 1),
            Err(RedisError::Status(503))
        );
        assert_eq!(
            parse_response(200, b"<html>", &L, NOW, 1),
            Err(RedisError::Garbage)
        );
        assert_eq!(
            parse_response(200, br#"{"EVAL":[1,2]}"#, &L, NOW, 1),
            Err(RedisError::Garbage)
        );
        assert_eq!(
            parse_response(200, br#"{"GET":"x"}"#, &L, NOW, 1),
            Err(RedisError::Garbage)
        );
        // The flag must agree with the counts.
        assert_eq!(
            parse_response(200, br#"{"EVAL":[1,50,50,50,10000]}"#, &L, NOW, 1),
            Err(RedisError::Garbage)
        );
        assert!(matches!(
            parse_response(200, br#"{"EVAL":[false,"ERR boom"]}"#, &L, NOW, 1),
            Err(RedisError::Script(_))
        ));
    }
}
