//! The webdis request paths api-warden sends in Redis mode for the bench's client (a bench
//! helper, not a test): the `EVAL` one, which also caches the script in Redis, then the usual
//! `EVALSHA` one. `make bench` times the second against webdis alone and sends it from the
//! host-call floor, so both ask Redis exactly what the filter asks.
//! Usage: `cargo run --example redis_call [now_ms]`.
use api_warden::ratelimit::redis::{request_path, script_sha, Call};
use api_warden::ratelimit::Limits;

fn main() {
    let now_ms = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_800_000_000_000);
    // The bench's client: limits it never reaches, in the default tier under the default prefix.
    let limits = Limits {
        per_minute: 1_000_000_000,
        per_hour: 1_000_000_000,
        per_day: 1_000_000_000,
        burst: 1_000_000_000,
    };
    let subject = "marketing:default";
    let sha = script_sha();
    for call in [Call::WithScript, Call::BySha(&sha)] {
        println!("{}", request_path(call, "aw", subject, &limits, now_ms, 1));
    }
}
