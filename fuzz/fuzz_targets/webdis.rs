//! What webdis (or anything pretending to be it) answers: counting replies, replay records and
//! shared-data counters. Garbage is an error, never a guess or a panic; a grant never exceeds
//! what was asked.
#![no_main]
use api_warden::auth::hmac_signature::shared_replay;
use api_warden::callout::CalloutAnswer;
use api_warden::ratelimit::{redis, window, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        per_minute: 5,
        per_hour: 50,
        per_day: 500,
        burst: 2,
    };
    let asked = u64::from(data.first().copied().unwrap_or(1) % 8) + 1;
    if let Ok(reply) = redis::parse_response(200, data, &limits, 1_800_000_000_000, asked) {
        assert!(reply.granted <= asked, "granted more than asked");
    }
    let _ = shared_replay::parse(&CalloutAnswer::Response {
        status: 200,
        body: data.to_vec(),
    });
    let _ = window::CounterState::decode(data);
});
