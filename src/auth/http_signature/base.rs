//! The signature base (RFC 9421 §2.5): one line per covered component, then
//! `"@signature-params"`. Built from the request as the proxy received it.

use crate::auth::credentials::HeaderList;

/// Why a covered component has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentError {
    /// A derived component this filter does not support (`@status`, `@query-param`, ...), or
    /// a malformed identifier.
    Unsupported(String),
    /// A covered header the request does not carry, or a derived component the host did not
    /// give (`:authority`, `:scheme`).
    Missing(String),
}

/// The request as the signature covers it.
pub struct SignedParts<'a> {
    pub method: &'a str,
    /// The request target as received (`:path`, query included).
    pub target: &'a str,
    pub headers: &'a HeaderList,
}

impl SignedParts<'_> {
    fn pseudo(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    fn scheme(&self) -> Option<String> {
        let scheme = std::str::from_utf8(self.pseudo(":scheme")?).ok()?;
        Some(scheme.to_ascii_lowercase())
    }

    /// `Host` (or `:authority`), lowercase, without the scheme's default port (RFC 9421 §2.2.3).
    /// `Host` first: Envoy folds it into `:authority`, but ngx_wasm_module reports the server's
    /// own name and port as `:authority` and the client's in `Host`.
    fn authority(&self) -> Option<String> {
        let raw = self.pseudo("host").or_else(|| self.pseudo(":authority"))?;
        let mut authority = std::str::from_utf8(raw).ok()?.trim().to_ascii_lowercase();
        let default_port = match self.scheme().as_deref() {
            Some("https") => ":443",
            Some("http") => ":80",
            _ => "",
        };
        if !default_port.is_empty() && authority.ends_with(default_port) {
            authority.truncate(authority.len() - default_port.len());
        }
        Some(authority)
    }

    fn path_and_query(&self) -> (&str, Option<&str>) {
        match self.target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.target, None),
        }
    }

    /// The value of one covered component.
    pub fn value(&self, id: &str) -> Result<Vec<u8>, ComponentError> {
        let mut out = Vec::new();
        self.write_value(id, &mut out)?;
        Ok(out)
    }

    /// Appends the value of one covered component to `out` (the signature base is written in
    /// place, without a copy of each value).
    pub fn write_value(&self, id: &str, out: &mut Vec<u8>) -> Result<(), ComponentError> {
        let missing = || ComponentError::Missing(id.to_string());
        match id {
            "@method" => out.extend_from_slice(self.method.as_bytes()),
            "@scheme" => out.extend_from_slice(self.scheme().ok_or_else(missing)?.as_bytes()),
            "@authority" => out.extend_from_slice(self.authority().ok_or_else(missing)?.as_bytes()),
            "@request-target" => out.extend_from_slice(self.target.as_bytes()),
            "@target-uri" => match (self.scheme(), self.authority()) {
                (Some(scheme), Some(authority)) => {
                    for part in [scheme.as_str(), "://", authority.as_str(), self.target] {
                        out.extend_from_slice(part.as_bytes());
                    }
                }
                _ => return Err(missing()),
            },
            "@path" => {
                let (path, _) = self.path_and_query();
                out.extend_from_slice(if path.is_empty() { "/" } else { path }.as_bytes());
            }
            "@query" => {
                let (_, query) = self.path_and_query();
                out.push(b'?');
                out.extend_from_slice(query.unwrap_or_default().as_bytes());
            }
            derived if derived.starts_with('@') => {
                return Err(ComponentError::Unsupported(id.into()))
            }
            field => {
                if !self.write_field(field, out) {
                    return Err(missing());
                }
            }
        }
        Ok(())
    }

    /// Every value of a header, each trimmed, joined with ", " (RFC 9421 §2.1); false when the
    /// request has no such header.
    fn write_field(&self, name: &str, out: &mut Vec<u8>) -> bool {
        if name.is_empty() || name.starts_with(':') || name.bytes().any(|b| b.is_ascii_uppercase())
        {
            return false;
        }
        let mut found = false;
        for (_, value) in self.headers.iter().filter(|(k, _)| *k == name) {
            if found {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(value.trim_ascii());
            found = true;
        }
        found
    }
}

/// The signature base for `components` and the serialized signature parameters.
pub fn signature_base(
    parts: &SignedParts,
    components: &[String],
    params: &str,
) -> Result<Vec<u8>, ComponentError> {
    let mut base = Vec::with_capacity(256 + params.len());
    for id in components {
        base.push(b'"');
        base.extend_from_slice(id.as_bytes());
        base.extend_from_slice(b"\": ");
        let start = base.len();
        parts.write_value(id, &mut base)?;
        if base[start..].iter().any(|b| *b == b'\n' || *b == b'\r') {
            return Err(ComponentError::Unsupported(id.clone()));
        }
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    base.extend_from_slice(params.as_bytes());
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(list: &[(&str, &str)]) -> crate::wire::HeaderMap {
        crate::wire::HeaderMap::from_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn derived_components_follow_the_rfc() {
        let headers = h(&[
            (":scheme", "HTTPS"),
            (":authority", "Example.COM:443"),
            ("x-list", " a "),
            ("x-list", "b"),
        ]);
        let parts = SignedParts {
            method: "POST",
            target: "/foo?param=Value&Pet=dog",
            headers: &headers,
        };
        let v = |id: &str| String::from_utf8(parts.value(id).unwrap()).unwrap();
        assert_eq!(v("@method"), "POST");
        assert_eq!(v("@scheme"), "https");
        assert_eq!(v("@authority"), "example.com");
        assert_eq!(
            v("@target-uri"),
            "https://example.com/foo?param=Value&Pet=dog"
        );
        assert_eq!(v("@request-target"), "/foo?param=Value&Pet=dog");
        assert_eq!(v("@path"), "/foo");
        assert_eq!(v("@query"), "?param=Value&Pet=dog");
        assert_eq!(v("x-list"), "a, b");
        assert_eq!(
            parts.value("x-absent"),
            Err(ComponentError::Missing("x-absent".into()))
        );
        assert_eq!(
            parts.value("@status"),
            Err(ComponentError::Unsupported("@status".into()))
        );
        assert!(parts.value("X-List").is_err(), "field names are lowercase");
        assert!(parts.value(":authority").is_err());
        let bare = SignedParts {
            method: "GET",
            target: "/",
            headers: &headers,
        };
        assert_eq!(bare.value("@query").unwrap(), b"?");
        // nginx reports its own name as :authority; the client's Host wins.
        let kong = h(&[
            (":scheme", "http"),
            (":authority", "vm:39625"),
            ("host", "api.test"),
        ]);
        let parts = SignedParts {
            method: "GET",
            target: "/",
            headers: &kong,
        };
        assert_eq!(parts.value("@authority").unwrap(), b"api.test");
    }
}
