//! What every capability's configuration step shares: the error that names a field, numeric
//! range checks, and small JSON shapes. It depends on nothing else in the crate, so capabilities
//! compile their own settings without importing `config`, which assembles them.

use schemars::JsonSchema;
use serde::Deserialize;
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

/// A field that takes one string or a list of strings (`"aud": "x"` or `"aud": ["x", "y"]`).
#[derive(Debug, Deserialize, Clone, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}
