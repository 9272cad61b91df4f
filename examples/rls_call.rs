//! The gRPC call api-warden makes in RLS mode (a bench helper, not a test): the filter itself,
//! on the test host, is configured with the given plugin configuration and sent one request with
//! the given API key. Prints the call's target (the serialized `GrpcService` handed to the host)
//! and its `RateLimitRequest` message, each as hex on its own line. `make bench` sends exactly
//! these from the RLS host-call floor, so it asks the service what the filter asks.
//! Usage: `cargo run --example rls_call <configuration.json> <api-key>`.
use api_warden::adapter::test_host::TestHost;
use api_warden::ratelimit::rls;

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
    let (_, _, _, _, call) = TestHost::paused_on_a_call(&config, &key, 1_800_000_000_000)?;
    let grpc = call.grpc.ok_or("the call is not gRPC")?;
    if (grpc.service, grpc.method) != (rls::SERVICE, rls::METHOD) {
        return Err(format!(
            "unexpected method {}/{}",
            grpc.service, grpc.method
        ));
    }
    println!("{}", hex(call.upstream.as_bytes()));
    println!("{}", hex(&call.body));
    Ok(())
}
