//! Plugin configuration: `raw.rs` is the JSON operators write (serde, unknown fields refused);
//! `compile.rs` checks every value and builds the ready-to-use [`Config`]. Errors name the field.

mod compile;
pub mod raw;
pub mod schema;

pub use compile::{Client, Config, HmacSettings};

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration at {}: {}",
            self.field, self.reason
        )
    }
}

/// A numeric setting: `value`, or `default` when unset, which must lie in `range`.
pub fn within<T>(
    field: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: PartialOrd + Copy + fmt::Display,
{
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

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
