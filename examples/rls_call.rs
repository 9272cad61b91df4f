//! The gRPC call api-warden makes in RLS mode (a bench helper, not a test): the filter itself,
//! on the test host, is configured with the given plugin configuration and sent one request with
//! the given API key. Prints the call's target (the serialized `GrpcService` handed to the host)
//! and its `RateLimitRequest` message, each as hex on its own line. `make bench` sends exactly
//! these from the RLS host-call floor, so it asks the service what the filter asks.
//! Usage: `cargo run --example rls_call <configuration.json> <api-key>`.
use api_warden::adapter::root::RootFilter;
use api_warden::adapter::test_host::TestHost;
use api_warden::adapter::Action;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: rls_call <configuration.json> <api-key>";
    let config_path = args.next().ok_or(usage)?;
    let key = args.next().ok_or(usage)?;
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| format!("{config_path}: {e}"))?;
    let host = TestHost::new(&config, 1_800_000_000_000);
    let mut root = RootFilter::default();
    if !root.on_configure(&host) {
        return Err(format!("configuration refused: {:?}", host.logs.borrow()));
    }
    host.request(
        &[
            (":method", "GET"),
            (":path", "/api/send/bulk"),
            ("x-api-key", &key),
        ],
        b"",
        Some("127.0.0.1:5000"),
    );
    let mut request = root.new_request();
    if request.on_request_headers(&host, true) != Action::Pause {
        return Err(format!("no RLS call: {:?}", host.replies.borrow().last()));
    }
    let (_, call) = host.last_call().ok_or("no RLS call")?;
    let grpc = call.grpc.ok_or("the call is not gRPC")?;
    if (grpc.service, grpc.method)
        != (
            api_warden::ratelimit::rls::SERVICE,
            api_warden::ratelimit::rls::METHOD,
        )
    {
        return Err(format!(
            "unexpected method {}/{}",
            grpc.service, grpc.method
        ));
    }
    println!("{}", hex(call.upstream.as_bytes()));
    println!("{}", hex(&call.body));
    Ok(())
}
