//! The demo configuration served by `make run` is valid and matches the README's credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use api_warden::config;

#[test]
fn demo_configuration_in_envoy_yaml_is_valid() {
    let demo = support::demo_config();
    let cfg = config::parse(demo.to_string().as_bytes()).unwrap();
    assert_eq!(cfg.clients.len(), 2);
    for (key, client) in [
        ("ak_demo_marketing_key_0000000000000001", "marketing"),
        ("ak_demo_analytics_key_000000000000000A", "analytics"),
        ("ak_demo_analytics_key_000000000000000B", "analytics"),
    ] {
        let entry = cfg.auth.api_keys.find(key.as_bytes()).unwrap();
        assert_eq!(cfg.clients[entry.client].id, client);
    }
}

#[test]
fn kong_declarative_example_configuration_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kong/kong.yml");
    let doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let filter = &doc["filter_chains"][0]["filters"][0];
    assert_eq!(filter["name"], "api_warden");
    let cfg = config::parse(filter["config"].to_string().as_bytes())
        .unwrap_or_else(|e| panic!("examples/kong/kong.yml: {e}"));
    assert_eq!(cfg.host, api_warden::profile::HostProfile::Kong);
}
