//! Endpoint patterns: an exact path (`/api/send`), a subtree (`/api/send/*`, which matches
//! everything below `/api/send/` but not `/api/send` itself, as in the seed) or `*` for all.
//! A `*` anywhere else is refused at configuration: `/api/send*` would also match `/api/sender`.

use crate::field::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointPattern {
    Any,
    Exact(String),
    /// Stored with its trailing slash: `/api/send/`.
    Subtree(String),
}

impl EndpointPattern {
    pub fn parse(field: &str, pattern: &str) -> Result<Self, ConfigError> {
        if pattern == "*" {
            return Ok(Self::Any);
        }
        if !pattern.starts_with('/') {
            return Err(ConfigError::new(
                field,
                format!("pattern {pattern:?} must start with '/' (or be \"*\")"),
            ));
        }
        let (base, subtree) = match pattern.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (pattern, false),
        };
        if base.contains('*') {
            return Err(ConfigError::new(
                field,
                format!("pattern {pattern:?}: '*' is only allowed as a final \"/*\""),
            ));
        }
        if base.contains(['?', '#', '%', '\\']) || base.contains("//") {
            return Err(ConfigError::new(
                field,
                format!("pattern {pattern:?} must be a plain normalised path"),
            ));
        }
        if base.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(ConfigError::new(
                field,
                format!("pattern {pattern:?} contains a dot segment"),
            ));
        }
        Ok(if subtree {
            Self::Subtree(format!("{base}/"))
        } else {
            Self::Exact(base.to_string())
        })
    }

    /// `path` is a normalised path without query string.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => path == exact,
            Self::Subtree(prefix) => path.len() > prefix.len() && path.starts_with(prefix.as_str()),
        }
    }

    /// Like [`matches`](Self::matches), ignoring ASCII case.
    pub fn matches_ignoring_case(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => path.eq_ignore_ascii_case(exact),
            Self::Subtree(prefix) => {
                path.len() > prefix.len()
                    && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
        }
    }

    /// Whether a route level set on this pattern applies to `path`, ignoring ASCII case. A
    /// subtree covers its own root too (`/api/admin/*` covers `/api/admin` and `/api/admin/`),
    /// so a level never falls back to a lower default at the root of what it protects.
    pub fn covers_ignoring_case(&self, path: &str) -> bool {
        match self {
            Self::Subtree(prefix) => {
                let root = &prefix[..prefix.len() - 1];
                self.matches_ignoring_case(path)
                    || path.eq_ignore_ascii_case(root)
                    || path.eq_ignore_ascii_case(prefix)
            }
            other => other.matches_ignoring_case(path),
        }
    }
}

/// True when the client's list allows the path. An empty list allows nothing: a client with no
/// endpoints configured is refused everywhere (fail closed), unlike the seed.
pub fn any_allows(patterns: &[EndpointPattern], path: &str) -> bool {
    patterns.iter().any(|p| p.matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EndpointPattern {
        EndpointPattern::parse("f", s).unwrap()
    }

    #[test]
    fn exact_and_subtree() {
        assert!(p("/api/send").matches("/api/send"));
        assert!(!p("/api/send").matches("/api/send/x"));
        assert!(p("/api/send/*").matches("/api/send/bulk"));
        assert!(p("/api/send/*").matches("/api/send/a/b"));
        assert!(!p("/api/send/*").matches("/api/send"));
        assert!(!p("/api/send/*").matches("/api/send/"));
        assert!(!p("/api/send/*").matches("/api/sender"));
        assert!(p("*").matches("/anything"));
    }

    #[test]
    fn matching_is_case_sensitive_for_allowlists() {
        assert!(!p("/api/send/*").matches("/API/send/x"));
        assert!(p("/api/send/*").matches_ignoring_case("/api/send/x"));
    }

    #[test]
    fn a_subtree_level_covers_its_root() {
        let admin = p("/api/admin/*");
        for path in ["/api/admin", "/api/admin/", "/API/Admin", "/api/admin/x"] {
            assert!(admin.covers_ignoring_case(path), "{path}");
        }
        assert!(!admin.covers_ignoring_case("/api/administrator"));
        assert!(
            !admin.matches("/api/admin"),
            "allowlists keep the seed's meaning"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "api/send",
            "/api/send*",
            "/api/*/x",
            "/api/../x",
            "/api//x",
            "/a%2fb",
            "",
        ] {
            assert!(EndpointPattern::parse("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_allowlist_allows_nothing() {
        assert!(!any_allows(&[], "/api/send/x"));
    }
}
