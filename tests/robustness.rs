//! Hostile input never panics the decision logic (a panic would kill the VM and every request on
//! that worker). A deterministic pseudo-random sweep over every parser that sees request bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use api_warden::auth::credentials;
use api_warden::auth::hmac_signature;
use api_warden::authz::{ip, path};
use api_warden::config;
use api_warden::pipeline::{self, RequestHead, Source};
use api_warden::ratelimit::{redis, window, Limits};
use api_warden::store::MemoryStore;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Bytes biased towards the characters parsers care about.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const INTERESTING: &[u8] = b"/.%2eEfF5cC;?#\\\x00\xff:[]{}\",aA0 \t\r\n=-_~*";
        let len = (self.next() % (max as u64 + 1)) as usize;
        (0..len)
            .map(|_| match self.next() % 3 {
                0 => (self.next() % 256) as u8,
                _ => INTERESTING[(self.next() % INTERESTING.len() as u64) as usize],
            })
            .collect()
    }
}

const ROUNDS: usize = 20_000;

#[test]
fn parsers_never_panic_on_hostile_bytes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let limits = Limits {
        per_minute: 5,
        per_hour: 50,
        per_day: 500,
        burst: 2,
    };
    for _ in 0..ROUNDS {
        let b = rng.bytes(64);
        let _ = path::normalise(&b);
        let mut p = b"/api/".to_vec();
        p.extend_from_slice(&b);
        let _ = path::normalise(&p);
        let _ = ip::parse_source(&b);
        let _ = window::CounterState::decode(&b);
        let _ = redis::parse_response(200, &b, &limits, 1_795_910_410_000, 5);
        let _ = config::parse(&b);
        let text = String::from_utf8_lossy(&b);
        let _ = hmac_signature::check_timestamp(&text, 1_795_910_410, 300);
        let headers = vec![
            (
                "authorization".to_string(),
                [b"Bearer ".as_slice(), &b].concat(),
            ),
            ("x-api-key".to_string(), b.clone()),
            ("x-signature".to_string(), b.clone()),
            ("x-timestamp".to_string(), b.clone()),
        ];
        let _ = credentials::extract(&headers);
    }
}

#[test]
fn whole_requests_never_panic_on_hostile_bytes() {
    let cfg = config::parse(support::demo_config().to_string().as_bytes()).unwrap();
    let store = MemoryStore::new();
    let mut rng = Rng(42);
    let mut bodies = 0;
    for round in 0..ROUNDS / 4 {
        let mut path = b"/api/send/".to_vec();
        if round % 3 == 0 {
            path.extend_from_slice(b"bulk");
        } else {
            path.extend_from_slice(&rng.bytes(24));
        }
        let token = {
            let mut t = rng.bytes(40);
            if round % 3 == 0 {
                // JWT-shaped: three base64url-ish parts.
                t = [
                    b"eyJhbGciOiJIUzI1NiJ9.".as_slice(),
                    &rng.bytes(30),
                    b".",
                    &rng.bytes(20),
                ]
                .concat();
            }
            t
        };
        let headers = vec![
            (
                "authorization".to_string(),
                [b"Bearer ".as_slice(), &token].concat(),
            ),
            // Often a real client and a fresh timestamp, so the body path is reached too.
            (
                "x-client-id".to_string(),
                if round % 2 == 0 {
                    b"marketing".to_vec()
                } else {
                    rng.bytes(12)
                },
            ),
            (
                "x-timestamp".to_string(),
                if round % 4 < 2 {
                    b"1795910400".to_vec()
                } else {
                    rng.bytes(12)
                },
            ),
            ("x-signature".to_string(), rng.bytes(70)),
            ("content-length".to_string(), rng.bytes(6)),
        ];
        let head = RequestHead {
            method: b"POST",
            path: &path,
            headers: &headers,
            source: Source::known(if round % 5 == 0 {
                ip::parse_source(&rng.bytes(20))
            } else {
                "192.168.1.7".parse().ok()
            }),
            has_body: round % 2 == 0,
        };
        let verdict = pipeline::on_request_headers(&cfg, &head, 1_795_910_410, &store);
        if let pipeline::Verdict::Suspend(pending, _) = verdict {
            bodies += 1;
            let body = rng.bytes(128);
            let _ = pipeline::on_request_body(&cfg, pending, &body, 1_795_910_410, &store);
        }
    }
    println!("body phase reached {bodies} times");
    assert!(
        bodies > 100,
        "the sweep must reach the body phase ({bodies} times)"
    );
}
