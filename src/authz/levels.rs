//! Security levels and the route table that assigns one to each path.

use super::endpoints::EndpointPattern;
use crate::field::ConfigError;
use schemars::JsonSchema;
use serde::Deserialize;

/// Ordered: a client may call a route whose level is at or below its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecurityLevel {
    Public,
    Standard,
    Sensitive,
    Critical,
}

impl SecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Standard => "standard",
            Self::Sensitive => "sensitive",
            Self::Critical => "critical",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub pattern: String,
    pub security_level: SecurityLevel,
}

/// Path patterns mapped to levels. Matching ignores ASCII case, and when several patterns match
/// the highest level wins, so neither `/API/Admin/x` nor a broad rule listed first can lower
/// the level a case-insensitive upstream would apply.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(EndpointPattern, SecurityLevel)>,
    default_level: SecurityLevel,
}

impl RouteTable {
    pub fn compile(routes: &[RawRoute], default_level: SecurityLevel) -> Result<Self, ConfigError> {
        let mut table = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let pattern = EndpointPattern::parse(&format!("routes[{i}].pattern"), &r.pattern)?;
            table.push((pattern, r.security_level));
        }
        Ok(Self::new(table, default_level))
    }

    /// Whether any path is public (a configuration without clients needs one).
    pub fn has_public(&self) -> bool {
        self.default_level == SecurityLevel::Public
            || self.routes.iter().any(|(_, l)| *l == SecurityLevel::Public)
    }

    pub fn new(
        routes: Vec<(EndpointPattern, SecurityLevel)>,
        default_level: SecurityLevel,
    ) -> Self {
        Self {
            routes,
            default_level,
        }
    }

    pub fn level_for(&self, path: &str) -> SecurityLevel {
        self.routes
            .iter()
            .filter(|(pattern, _)| pattern.covers_ignoring_case(path))
            .map(|(_, level)| *level)
            .max()
            .unwrap_or(self.default_level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let p = |s: &str| EndpointPattern::parse("routes", s).unwrap();
        RouteTable::new(
            vec![
                (p("/health"), SecurityLevel::Public),
                (p("/api/analytics/*"), SecurityLevel::Sensitive),
                (p("/api/admin/*"), SecurityLevel::Critical),
                (p("/api/*"), SecurityLevel::Standard),
            ],
            SecurityLevel::Standard,
        )
    }

    #[test]
    fn levels_are_ordered() {
        assert!(SecurityLevel::Public < SecurityLevel::Standard);
        assert!(SecurityLevel::Standard < SecurityLevel::Sensitive);
        assert!(SecurityLevel::Sensitive < SecurityLevel::Critical);
    }

    #[test]
    fn routes_map_to_levels() {
        let t = table();
        assert_eq!(t.level_for("/health"), SecurityLevel::Public);
        assert_eq!(t.level_for("/api/analytics/x"), SecurityLevel::Sensitive);
        assert_eq!(t.level_for("/api/admin/users"), SecurityLevel::Critical);
        assert_eq!(t.level_for("/other"), SecurityLevel::Standard);
        assert_eq!(t.level_for("/health/deep"), SecurityLevel::Standard);
        assert_eq!(t.level_for("/api/admin"), SecurityLevel::Critical);
        assert_eq!(t.level_for("/api/admin/"), SecurityLevel::Critical);
    }

    #[test]
    fn case_tricks_and_broad_rules_cannot_lower_the_level() {
        let t = table();
        assert_eq!(t.level_for("/API/ADMIN/users"), SecurityLevel::Critical);
        assert_eq!(t.level_for("/Api/Admin/x"), SecurityLevel::Critical);
    }
}
