//! The webdis request paths api-warden sends in Redis mode (a bench helper, not a test): the
//! filter itself, on the test host, is configured with the given plugin configuration and sent
//! one request with the given API key; its `EVALSHA` call is answered `NOSCRIPT`, so it also
//! makes its `EVAL` call (which caches the script in Redis). Prints the `EVAL` path, then the
//! `EVALSHA` one. `make bench` times the second against webdis alone and sends it from the
//! host-call floor, so both ask Redis exactly what the filter asks, with nothing restated here.
//! Usage: `cargo run --example redis_call <configuration.json> <api-key> [now_ms]`.
use api_warden::adapter::test_host::TestHost;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: redis_call <configuration.json> <api-key> [now_ms]";
    let config_path = args.next().ok_or(usage)?;
    let key = args.next().ok_or(usage)?;
    let now_ms = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_800_000_000_000);
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| format!("{config_path}: {e}"))?;
    let (host, _root, mut request, token, by_sha) =
        TestHost::paused_on_a_call(&config, &key, now_ms)?;
    let noscript = r#"{"EVALSHA":[false,"NOSCRIPT No matching script."]}"#;
    host.answer_with(Some(200), noscript);
    request.on_callout(&host, token, noscript.len());
    let (_, with_script) = host.last_call().ok_or("no EVAL after NOSCRIPT")?;
    if !by_sha.path.starts_with("/EVALSHA/") || !with_script.path.starts_with("/EVAL/") {
        return Err(format!(
            "unexpected calls: {} then {}",
            by_sha.path, with_script.path
        ));
    }
    println!("{}", with_script.path);
    println!("{}", by_sha.path);
    Ok(())
}
