//! Plugin configuration, assembled from the capabilities: each one owns its raw serde types and
//! its compile step (`auth::jwt::RawJwt`, `ratelimit::settings::RawRateLimiting`, ...);
//! `raw.rs` is the document that holds them, `compile.rs` builds the ready [`Config`] from their
//! parts. Errors name the field. Capabilities never import this module.

mod compile;
pub mod raw;
pub mod schema;

pub use crate::clients::Client;
pub use crate::field::{within, ConfigError};
pub use compile::Config;

/// Parses and validates the plugin configuration. An empty configuration is refused: a filter
/// with no clients and no public routes would deny everything, which is never what was meant.
pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            "(root)".to_string()
        } else {
            path
        };
        ConfigError::new(field, e.inner().to_string())
    })?;
    compile::compile(raw)
}
