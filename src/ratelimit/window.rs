//! The counting math, shared by the local (shared-data) and Redis backends.
//!
//! Windows are fixed and aligned to the epoch (a minute starts at :00, an hour on the hour, a
//! day at 00:00 UTC): counts are exact, atomic with one compare-and-swap or one Redis script, and
//! `RateLimit-Reset` is simply the time to the boundary. The burst is a token bucket holding
//! `burst` tokens, refilled at the per-minute rate, so no more than `burst` requests pass at once
//! and the sustained rate stays within the minute limit.

use super::Limits;

pub const STATE_BYTES: usize = 64;
const MILLI: u64 = 1000;

/// One subject's counters. A zero `bucket_ms` means "never used": the bucket starts full.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    pub minute_start: u64,
    pub minute: u64,
    pub hour_start: u64,
    pub hour: u64,
    pub day_start: u64,
    pub day: u64,
    pub tokens_milli: u64,
    pub bucket_ms: u64,
}

impl CounterState {
    pub fn encode(&self) -> [u8; STATE_BYTES] {
        let mut out = [0u8; STATE_BYTES];
        let fields = [
            self.minute_start,
            self.minute,
            self.hour_start,
            self.hour,
            self.day_start,
            self.day,
            self.tokens_milli,
            self.bucket_ms,
        ];
        for (chunk, value) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&value.to_be_bytes());
        }
        out
    }

    /// Anything that is not exactly one encoded state reads as a fresh state.
    pub fn decode(bytes: &[u8]) -> Self {
        if bytes.len() != STATE_BYTES {
            return Self::default();
        }
        let mut f = [0u64; 8];
        for (value, chunk) in f.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *value = u64::from_be_bytes(b);
        }
        Self {
            minute_start: f[0],
            minute: f[1],
            hour_start: f[2],
            hour: f[3],
            day_start: f[4],
            day: f[5],
            tokens_milli: f[6],
            bucket_ms: f[7],
        }
    }
}

/// The verdict plus what the rate-limit headers report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The quota closest to exhaustion: its limit, what is left, seconds to its reset. A limit
    /// of 0 means no quota is known (a rate limit service that sent no statuses).
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
    /// Seconds until a refused request could pass.
    pub retry_after: Option<u64>,
}

/// Counts after rolling windows and refilling the bucket, before this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub minute: u64,
    pub hour: u64,
    pub day: u64,
    pub tokens_milli: u64,
}

fn window_start(now_s: u64, len: u64) -> u64 {
    now_s - now_s % len
}

fn roll(start: u64, count: u64, now_s: u64, len: u64) -> u64 {
    if start == window_start(now_s, len) {
        count
    } else {
        0
    }
}

pub fn snapshot(state: &CounterState, limits: &Limits, now_ms: u64) -> Snapshot {
    let now_s = now_ms / 1000;
    let cap = limits.burst.saturating_mul(MILLI);
    let tokens_milli = if state.bucket_ms == 0 {
        cap
    } else {
        let elapsed = u128::from(now_ms.saturating_sub(state.bucket_ms));
        let refill = elapsed * u128::from(limits.per_minute) / 60;
        (u128::from(state.tokens_milli) + refill).min(u128::from(cap)) as u64
    };
    Snapshot {
        minute: roll(state.minute_start, state.minute, now_s, 60),
        hour: roll(state.hour_start, state.hour, now_s, 3600),
        day: roll(state.day_start, state.day, now_s, 86_400),
        tokens_milli,
    }
}

/// Decides from counts taken at `now_ms` (by [`snapshot`] or by the Redis script, which runs the
/// same arithmetic). `allowed` is whether the counts had room; counts are the ones before this
/// request.
pub fn verdict(s: &Snapshot, limits: &Limits, now_ms: u64) -> Decision {
    let now_s = now_ms / 1000;
    let to_boundary = |len: u64| window_start(now_s, len) + len - now_s;
    let allowed = s.minute < limits.per_minute
        && s.hour < limits.per_hour
        && s.day < limits.per_day
        && s.tokens_milli >= MILLI;
    let used = u64::from(allowed);
    let windows = [
        (limits.per_minute, s.minute + used, to_boundary(60)),
        (limits.per_hour, s.hour + used, to_boundary(3600)),
        (limits.per_day, s.day + used, to_boundary(86_400)),
    ];
    let (limit, count, reset) = windows
        .iter()
        .copied()
        .min_by_key(|(limit, count, reset)| (limit.saturating_sub(*count), *reset))
        .unwrap_or((limits.per_minute, s.minute, to_boundary(60)));
    let remaining = limit.saturating_sub(count);
    if allowed {
        return Decision {
            allowed,
            limit,
            remaining,
            reset,
            retry_after: None,
        };
    }
    // Wait for every constraint that blocks.
    let bucket_wait = if s.tokens_milli < MILLI {
        let missing = u128::from(MILLI - s.tokens_milli);
        let ms = (missing * 60).div_ceil(u128::from(limits.per_minute.max(1)));
        (ms as u64).div_ceil(1000).max(1)
    } else {
        0
    };
    let window_wait = windows
        .iter()
        .filter(|(limit, count, _)| count >= limit)
        .map(|(_, _, reset)| *reset)
        .max()
        .unwrap_or(0);
    let retry = bucket_wait.max(window_wait).max(1);
    if remaining > 0 && bucket_wait > 0 {
        // Only the burst blocks: report the burst as the quota in force.
        return Decision {
            allowed,
            limit: limits.burst,
            remaining: 0,
            reset: bucket_wait,
            retry_after: Some(retry),
        };
    }
    Decision {
        allowed,
        limit,
        remaining: 0,
        reset,
        retry_after: Some(retry),
    }
}

/// Applies one request at `now_ms`: the decision, and the state to store when it was allowed.
pub fn decide(
    state: &CounterState,
    limits: &Limits,
    now_ms: u64,
) -> (Decision, Option<CounterState>) {
    let s = snapshot(state, limits, now_ms);
    let decision = verdict(&s, limits, now_ms);
    if !decision.allowed {
        return (decision, None);
    }
    let now_s = now_ms / 1000;
    let next = CounterState {
        minute_start: window_start(now_s, 60),
        minute: s.minute + 1,
        hour_start: window_start(now_s, 3600),
        hour: s.hour + 1,
        day_start: window_start(now_s, 86_400),
        day: s.day + 1,
        tokens_milli: s.tokens_milli - MILLI,
        bucket_ms: now_ms.max(1),
    };
    (decision, Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        per_minute: 5,
        per_hour: 8,
        per_day: 100,
        burst: 3,
    };
    // 2026-11-29 00:00:10 UTC, in ms: 10 s into a minute.
    const T0: u64 = 1_795_910_410_000;

    fn run(
        mut state: CounterState,
        limits: &Limits,
        times: &[u64],
    ) -> (CounterState, Vec<Decision>) {
        let mut out = Vec::new();
        for &t in times {
            let (d, next) = decide(&state, limits, t);
            if let Some(n) = next {
                state = n;
            }
            out.push(d);
        }
        (state, out)
    }

    #[test]
    fn state_round_trips_and_garbage_is_fresh() {
        let s = CounterState {
            minute_start: 1,
            minute: 2,
            hour_start: 3,
            hour: 4,
            day_start: 5,
            day: 6,
            tokens_milli: 7,
            bucket_ms: 8,
        };
        assert_eq!(CounterState::decode(&s.encode()), s);
        assert_eq!(CounterState::decode(b"junk"), CounterState::default());
        assert_eq!(CounterState::decode(&[]), CounterState::default());
    }

    #[test]
    fn burst_admits_at_most_burst_at_once_then_refills_at_the_minute_rate() {
        let (_, d) = run(CounterState::default(), &L, &[T0, T0, T0, T0]);
        assert_eq!(d.iter().filter(|d| d.allowed).count(), 3);
        let refused = &d[3];
        assert_eq!((refused.limit, refused.remaining), (3, 0));
        // 5 per minute: one token every 12 s.
        assert_eq!(refused.retry_after, Some(12));
        let (_, d) = run(
            CounterState::default(),
            &L,
            &[T0, T0, T0, T0 + 11_999, T0 + 12_000],
        );
        assert_eq!(
            d.iter().map(|d| d.allowed).collect::<Vec<_>>(),
            [true, true, true, false, true]
        );
    }

    #[test]
    fn minute_limit_is_exact_and_resets_on_the_boundary() {
        let wide = Limits { burst: 100, ..L };
        let (state, d) = run(CounterState::default(), &wide, &[T0; 7]);
        assert_eq!(d.iter().filter(|d| d.allowed).count(), 5);
        assert_eq!(d[4].remaining, 0);
        assert_eq!(d[0].remaining, 4);
        assert_eq!(d[0].limit, 5);
        assert_eq!(d[0].reset, 50);
        assert_eq!(d[6].retry_after, Some(50));
        // Next minute: the minute count starts again; the hour (8) now binds.
        let (_, d) = run(state, &wide, &[T0 + 50_000; 4]);
        assert_eq!(d.iter().filter(|d| d.allowed).count(), 3);
        assert_eq!(d[3].limit, 8);
    }

    #[test]
    fn refused_requests_consume_nothing() {
        let wide = Limits { burst: 100, ..L };
        let (state, _) = run(CounterState::default(), &wide, &[T0; 20]);
        assert_eq!(state.minute, 5);
        assert_eq!(state.hour, 5);
    }

    #[test]
    fn no_interval_admits_more_than_the_burst_plus_the_refill() {
        // The README's bound: over any t seconds at most burst + per_minute * t / 60 pass.
        let limits = Limits {
            per_minute: 120,
            per_hour: 1_000_000,
            per_day: 1_000_000,
            burst: 7,
        };
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut t = T0 + 45_000; // crosses a minute boundary
        let mut times = Vec::new();
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            t += seed % 40; // bursts of arrivals, up to 40 ms apart
            times.push(t);
        }
        let (_, decisions) = run(CounterState::default(), &limits, &times);
        let admitted: Vec<u64> = times
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.allowed)
            .map(|(t, _)| *t)
            .collect();
        for (i, start) in admitted.iter().enumerate() {
            for (j, end) in admitted.iter().enumerate().skip(i) {
                let allowed = limits.burst as f64
                    + limits.per_minute as f64 * (end - start) as f64 / 60_000.0;
                assert!(
                    (j - i + 1) as f64 <= allowed + 1e-9,
                    "{} in {} ms",
                    j - i + 1,
                    end - start
                );
            }
        }
        assert!(admitted.len() > 100);
    }

    #[test]
    fn a_clock_going_backwards_does_not_mint_tokens() {
        let (state, _) = run(CounterState::default(), &L, &[T0, T0, T0]);
        let (d, _) = decide(&state, &L, T0 - 60_000);
        assert!(!d.allowed);
    }
}
