//! The request path as the filter matches it. Envoy normalises first (`normalize_path`,
//! `merge_slashes`, escaped-slash rejection in `envoy/envoy.yaml`); this is the second line, so a
//! misconfigured proxy cannot turn `/api/send/../admin` into a bypass. Anything two servers could
//! read differently is refused (400) rather than guessed at.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// Normalised path, no query: what patterns are matched against.
    pub path: String,
    /// The target exactly as sent (path and query): what HMAC signatures cover.
    pub raw: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Missing,
    NotAbsolute,
    BadByte,
    BadPercentEncoding,
    EncodedSeparatorOrDot,
    DotSegment,
    EmptySegment,
    TrailingDot,
    PathParameter,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "request has no path",
            Self::NotAbsolute => "path must start with '/'",
            Self::BadByte => "path contains a byte that is not printable ASCII",
            Self::BadPercentEncoding => "path has a malformed percent-encoding",
            Self::EncodedSeparatorOrDot => "path encodes '/', '\\', '.' or a control byte",
            Self::DotSegment => "path contains a '.' or '..' segment",
            Self::EmptySegment => "path contains an empty segment ('//')",
            Self::TrailingDot => "path segment ends with '.'",
            Self::PathParameter => "path contains ';' parameters",
        }
    }
}

pub fn normalise(raw: &[u8]) -> Result<RequestTarget, PathError> {
    if raw.is_empty() {
        return Err(PathError::Missing);
    }
    if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(PathError::BadByte);
    }
    // Only printable ASCII from here on, so the conversion cannot fail.
    let raw = String::from_utf8_lossy(raw).into_owned();
    let path_part = raw.split(['?', '#']).next().unwrap_or("");
    if !path_part.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path_part.contains('\\') {
        return Err(PathError::BadByte);
    }
    if path_part.contains(';') {
        return Err(PathError::PathParameter);
    }
    let decoded = decode_unreserved(path_part)?;
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        if *segment == "." || *segment == ".." {
            return Err(PathError::DotSegment);
        }
        // A trailing empty segment is a trailing slash, which is fine.
        if segment.is_empty() && i != last {
            return Err(PathError::EmptySegment);
        }
        if segment.ends_with('.') {
            return Err(PathError::TrailingDot);
        }
    }
    Ok(RequestTarget { path: decoded, raw })
}

/// Decodes percent-encoded letters, digits, '-', '_' and '~' (RFC 3986 unreserved, less '.'),
/// refuses encoded '.', '/', '\' and control bytes, and keeps every other encoding as it is.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .ok_or(PathError::BadPercentEncoding)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(PathError::BadPercentEncoding)?;
        match value {
            b'.' | b'/' | b'\\' | b';' | 0x00..=0x1f | 0x7f => {
                return Err(PathError::EncodedSeparatorOrDot)
            }
            v if v.is_ascii_alphanumeric() || v == b'-' || v == b'_' || v == b'~' => {
                out.push(char::from(v))
            }
            v => {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalise(raw.as_bytes()).unwrap().path
    }

    fn err(raw: &[u8]) -> PathError {
        normalise(raw).unwrap_err()
    }

    #[test]
    fn plain_paths_pass_and_query_is_split_off() {
        assert_eq!(ok("/api/send/bulk"), "/api/send/bulk");
        assert_eq!(ok("/api/send/bulk?x=1&y=/.."), "/api/send/bulk");
        assert_eq!(normalise(b"/a?x=1").unwrap().raw, "/a?x=1");
        assert_eq!(ok("/api/send/"), "/api/send/");
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn unreserved_escapes_are_decoded_so_they_cannot_dodge_a_pattern() {
        assert_eq!(ok("/api/%61dmin/x"), "/api/admin/x");
        assert_eq!(ok("/api/a%20b"), "/api/a%20b");
        assert_eq!(ok("/api/a%c3%a9"), "/api/a%C3%A9");
    }

    #[test]
    fn bypass_attempts_are_refused() {
        assert_eq!(err(b"/api/send/../admin"), PathError::DotSegment);
        assert_eq!(err(b"/api/./admin"), PathError::DotSegment);
        assert_eq!(err(b"//api/admin"), PathError::EmptySegment);
        assert_eq!(err(b"/api//admin"), PathError::EmptySegment);
        assert_eq!(
            err(b"/api/send/%2e%2e/admin"),
            PathError::EncodedSeparatorOrDot
        );
        assert_eq!(
            err(b"/api/send/%2E./admin"),
            PathError::EncodedSeparatorOrDot
        );
        assert_eq!(err(b"/api/send%2Fadmin"), PathError::EncodedSeparatorOrDot);
        assert_eq!(err(b"/api/send%5cadmin"), PathError::EncodedSeparatorOrDot);
        assert_eq!(err(b"/api/send\\..\\admin"), PathError::BadByte);
        assert_eq!(err(b"/api/admin./x"), PathError::TrailingDot);
        assert_eq!(err(b"/api/admin."), PathError::TrailingDot);
        assert_eq!(err(b"/api/admin;x=1/y"), PathError::PathParameter);
        assert_eq!(err(b"/api/send/..;/admin"), PathError::PathParameter);
        assert_eq!(err(b"/api/%00"), PathError::EncodedSeparatorOrDot);
        assert_eq!(err(b"/api/%zz"), PathError::BadPercentEncoding);
        assert_eq!(err(b"/api/%4"), PathError::BadPercentEncoding);
        assert_eq!(err(b"/api/\xc3\xa9"), PathError::BadByte);
        assert_eq!(err(b"/api/a b"), PathError::BadByte);
        assert_eq!(err(b"api/x"), PathError::NotAbsolute);
        assert_eq!(err(b""), PathError::Missing);
    }
}
