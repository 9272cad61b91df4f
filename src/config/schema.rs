//! The JSON Schema of the whole configuration, generated from the same serde types that read
//! it, so the two cannot drift: `schema/api-warden.schema.json` for editors and CI, and Kong's
//! `examples/kong/api_warden.meta.json` (Kong validates a filter's configuration against its
//! `config_schema`). A test fails when either committed file is stale; `make schema` rewrites.

use super::raw::RawConfig;

/// The schema as pretty JSON (draft-07, which Kong's validator and editors read).
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<RawConfig>();
    let mut value = serde_json::to_value(&schema).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("title".into(), "api-warden plugin configuration".into());
    }
    value
}

/// Kong's filter metadata file.
pub fn kong_meta() -> serde_json::Value {
    serde_json::json!({ "config_schema": json_schema() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, value: serde_json::Value) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let fresh = format!("{}\n", serde_json::to_string_pretty(&value).unwrap());
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{} is stale: run `make schema` and commit it",
            path.display()
        );
    }

    #[test]
    fn committed_schema_files_match_the_configuration_types() {
        check("schema/api-warden.schema.json", json_schema());
        check("examples/kong/api_warden.meta.json", kong_meta());
    }

    #[test]
    fn the_schema_describes_the_fields_and_refuses_unknown_ones() {
        let schema = json_schema();
        let props = &schema["properties"];
        for field in ["host", "clients", "jwt", "rate_limiting", "routes"] {
            assert!(props.get(field).is_some(), "{field}");
        }
        assert_eq!(schema["additionalProperties"], false);
        let hosts = &schema["definitions"]["HostProfile"]["oneOf"];
        let names: Vec<&str> = hosts
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["const"].as_str())
            .collect();
        assert_eq!(names, ["envoy", "kong"]);
    }
}
