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
use serde::Deserialize;

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
    encode_into(&mut out, arg);
    out
}

/// [`encode`], appended to `out`: runs of unreserved bytes copied whole and escapes written
/// directly, no formatting machinery, as this runs for every byte of every counting call's keys.
fn encode_into(out: &mut String, arg: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    let mut run = 0;
    for (i, b) in arg.bytes().enumerate() {
        if unreserved(b) {
            continue;
        }
        // Unreserved bytes are ASCII, so `run..i` starts and ends on character boundaries.
        out.push_str(arg.get(run..i).unwrap_or_default());
        let escape = [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
        out.push_str(std::str::from_utf8(&escape).unwrap_or_default());
        run = i + 1;
    }
    out.push_str(arg.get(run..).unwrap_or_default());
}

/// Appends a number's decimal digits (`{n}` without a formatter).
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
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
    // The bucket is full again after this long, so it can expire then.
    let bucket_ttl_ms =
        (limits.burst.saturating_mul(60_000) / limits.per_minute.max(1)).saturating_add(1000);
    let mut path = String::with_capacity(160 + 4 * (prefix.len() + subject_key.len()) * 3);
    match call {
        Call::BySha(sha) => {
            path.push_str("/EVALSHA/");
            encode_into(&mut path, sha);
        }
        Call::WithScript => {
            path.reserve(SCRIPT.len() * 3);
            path.push_str("/EVAL/");
            encode_into(&mut path, SCRIPT);
        }
    }
    path.push_str("/4");
    // Keys `{prefix}:{{{subject_key}}}:m:{start}` and so on, written encoded in place; `{...}`
    // is a Redis Cluster hash tag: the four keys one script touches share a slot.
    let windows = [
        ("m", Some(start(60))),
        ("h", Some(start(3600))),
        ("d", Some(start(86_400))),
        ("b", None),
    ];
    for (name, window_start) in windows {
        path.push('/');
        encode_into(&mut path, prefix);
        path.push_str("%3A%7B");
        encode_into(&mut path, subject_key);
        path.push_str("%7D%3A");
        path.push_str(name);
        if let Some(window_start) = window_start {
            path.push_str("%3A");
            push_number(&mut path, window_start);
        }
    }
    let args = [
        limits.per_minute,
        limits.per_hour,
        limits.per_day,
        limits.burst,
        now_ms,
        bucket_ttl_ms,
    ];
    for a in args {
        path.push('/');
        push_number(&mut path, a);
    }
    path.push('/');
    if count < 0 {
        path.push('-');
    }
    push_number(&mut path, count.unsigned_abs());
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

/// webdis' JSON for a script call: `{"EVALSHA": [...]}` (or `"EVAL"`), read into a typed list
/// (no JSON tree), so anything but numbers, or Redis' `[false, "error"]`, is refused.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "EVALSHA", alias = "EVAL")]
    list: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Item {
    Number(u64),
    Flag(bool),
    Text(String),
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
    let answer: Answer = serde_json::from_slice(body).map_err(|_| RedisError::Garbage)?;
    let [granted, minute, hour, day, tokens_milli] = match answer.list.as_slice() {
        [Item::Flag(false), Item::Text(message)] if message.starts_with("NOSCRIPT") => {
            return Err(RedisError::NoScript)
        }
        [Item::Flag(false), Item::Text(message)] => {
            return Err(RedisError::Script(message.chars().take(200).collect()))
        }
        [Item::Number(g), Item::Number(m), Item::Number(h), Item::Number(d), Item::Number(t)] => {
            [*g, *m, *h, *d, *t]
        }
        _ => return Err(RedisError::Garbage),
    };
    let before = Snapshot {
        minute,
        hour,
        day,
        tokens_milli,
    };
    let decision = window::verdict(&before, limits, now_ms);
    // The grant must agree with the counts, and never exceed what was asked.
    if decision.allowed != (granted >= 1) || granted > asked.max(1) {
        return Err(RedisError::Garbage);
    }
    Ok(Reply {
        decision,
        granted,
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

    /// The path as it was first written (`format!` and `to_string` for every part): the
    /// in-place writer must produce exactly it.
    fn reference_path(
        call: Call,
        prefix: &str,
        subject: &str,
        l: &Limits,
        now_ms: u64,
        count: i64,
    ) -> String {
        let now_s = now_ms / 1000;
        let start = |len: u64| now_s - now_s % len;
        let enc = |arg: &str| {
            arg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        let keys = [
            format!("{prefix}:{{{subject}}}:m:{}", start(60)),
            format!("{prefix}:{{{subject}}}:h:{}", start(3600)),
            format!("{prefix}:{{{subject}}}:d:{}", start(86_400)),
            format!("{prefix}:{{{subject}}}:b"),
        ];
        let ttl = (l.burst.saturating_mul(60_000) / l.per_minute.max(1)).saturating_add(1000);
        let mut path = match call {
            Call::BySha(sha) => format!("/EVALSHA/{}/4", enc(sha)),
            Call::WithScript => format!("/EVAL/{}/4", enc(SCRIPT)),
        };
        for k in &keys {
            path.push_str(&format!("/{}", enc(k)));
        }
        for a in [l.per_minute, l.per_hour, l.per_day, l.burst, now_ms, ttl] {
            path.push_str(&format!("/{a}"));
        }
        path + &format!("/{count}")
    }

    #[test]
    fn an_answer_with_anything_but_five_numbers_is_garbage() {
        for body in [
            r#"{"EVALSHA":[1,"x",3,3,3,40000]}"#,
            r#"{"EVALSHA":[1,null,3,3,40000]}"#,
            r#"{"EVALSHA":[1,3,3,3,40000.5]}"#,
            r#"{"EVALSHA":[1,-3,3,3,40000]}"#,
            r#"{"EVALSHA":[1,3,3,3]}"#,
            r#"{"EVALSHA":[1,3,3,3,40000,1]}"#,
            r#"{"EVALSHA":[true,"NOSCRIPT"]}"#,
            r#"{"EVALSHA":{"0":1}}"#,
            r#"{"GET":[1,3,3,3,40000]}"#,
            r#"[1,3,3,3,40000]"#,
        ] {
            assert_eq!(
                parse_response(200, body.as_bytes(), &L, NOW, 1),
                Err(RedisError::Garbage),
                "{body}"
            );
        }
        // Other members beside the answer are webdis' business.
        let d = parse_response(200, br#"{"EVALSHA":[1,0,0,0,10000],"x":1}"#, &L, NOW, 1);
        assert!(d.is_ok(), "{d:?}");
    }

    #[test]
    fn the_path_is_written_exactly_as_the_reference_writes_it() {
        let sha = script_sha();
        let limits = [
            L,
            Limits {
                per_minute: 0,
                per_hour: u64::MAX,
                per_day: 1,
                burst: u64::MAX,
            },
        ];
        let subjects = ["marketing:default", "c:r", "a/b%c d{e}f:é\u{1F600}", ""];
        let counts = [1, 20, -7, 0, i64::MIN, i64::MAX];
        let times = [0, NOW, 59_999, u64::MAX];
        for call in [Call::BySha(&sha), Call::WithScript] {
            for l in &limits {
                for subject in subjects {
                    for prefix in ["aw", "x:y/{z}"] {
                        for (&count, &now) in counts.iter().zip(times.iter().cycle()) {
                            assert_eq!(
                                request_path(call, prefix, subject, l, now, count),
                                reference_path(call, prefix, subject, l, now, count),
                                "{prefix} {subject} {count} {now}"
                            );
                        }
                    }
                }
            }
        }
        for arg in ["", "plain-_.~09AZaz", "/:{}% \u{0}\u{7f}é"] {
            let expected: String = arg
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            assert_eq!(encode(arg), expected);
        }
    }

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
