//! `Content-Digest` (RFC 9530): how a signature covers the body. The signature covers the
//! header; this checks the header against the body.

use sfv::{BareItem, Dictionary, ListEntry, Parser};
use sha2::{Digest, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// Not a dictionary, or no `sha-256` / `sha-512` member as a byte sequence.
    Unusable,
    Mismatch,
}

/// Checks every `sha-256` and `sha-512` member against `body`; at least one must be there.
/// Other algorithms are ignored (RFC 9530 lets a sender offer several).
pub fn verify(header: &[u8], body: &[u8]) -> Result<(), DigestError> {
    let members: Dictionary = Parser::new(header)
        .parse()
        .map_err(|_| DigestError::Unusable)?;
    let mut checked = false;
    for (name, entry) in &members {
        let sha256 = match name.as_str() {
            "sha-256" => true,
            "sha-512" => false,
            _ => continue,
        };
        let ListEntry::Item(item) = entry else {
            return Err(DigestError::Unusable);
        };
        let BareItem::ByteSequence(presented) = &item.bare_item else {
            return Err(DigestError::Unusable);
        };
        let matches = if sha256 {
            Sha256::digest(body)[..] == presented[..]
        } else {
            Sha512::digest(body)[..] == presented[..]
        };
        if !matches {
            return Err(DigestError::Mismatch);
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(DigestError::Unusable)
    }
}

/// The `Content-Digest` value for `body` (SHA-256), for clients and tests.
pub fn content_digest(body: &[u8]) -> String {
    use base64::Engine;
    let digest = Sha256::digest(body);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_9530_example_verifies() {
        // RFC 9530 §2, example for {"hello": "world"}.
        let body = b"{\"hello\": \"world\"}";
        let header = b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
        assert_eq!(verify(header, body), Ok(()));
        assert_eq!(content_digest(body).as_bytes(), header);
        assert_eq!(
            verify(header, b"{\"hello\": \"World\"}"),
            Err(DigestError::Mismatch)
        );
    }

    #[test]
    fn unusable_digests_are_refused() {
        for header in [
            &b""[..],
            b"md5=:AAAA:",
            b"sha-256=abc",
            b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512",
            b"garbage(",
        ] {
            assert!(verify(header, b"x").is_err(), "{header:?}");
        }
        // A second, unknown algorithm beside a good one is fine.
        let both = format!("{}, unixsum=:AAA=:", content_digest(b"x"));
        assert_eq!(verify(both.as_bytes(), b"x"), Ok(()));
    }
}
