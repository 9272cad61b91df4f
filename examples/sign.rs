//! Signs a request for api-warden's HMAC method and prints the headers to send.
//!
//!   cargo run --example sign -- SECRET METHOD TARGET [BODY] [NONCE]
//!   cargo run --example sign -- demo-marketing-hmac-secret-rotate-me POST '/api/send/bulk?x=1' '{"a":1}'
//!
//! Rust clients call `api_warden::auth::hmac_signature::sign` the same way.

use api_warden::auth::hmac_signature::sign;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: sign SECRET METHOD TARGET [BODY] [NONCE]");
        std::process::exit(2);
    }
    let body = args.get(3).map(String::as_bytes).unwrap_or_default();
    let nonce = args.get(4).map(String::as_str);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    let signature = sign(args[0].as_bytes(), &args[1], &args[2], body, &ts, nonce);
    println!("X-Timestamp: {ts}");
    println!("X-Signature: {signature}");
    if let Some(nonce) = nonce {
        println!("X-Nonce: {nonce}");
    }
}
