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
        let entry = cfg.api_keys.find(key.as_bytes()).unwrap();
        assert_eq!(cfg.clients[entry.client].id, client);
    }
}
