//! Client identity from the TLS peer certificate, with the proxy terminating TLS and asking for
//! client certificates (Envoy: `require_client_certificate`, a trusted CA). The adapter reads the
//! certificate's properties (`connection.sha256_peer_certificate_digest`,
//! `connection.uri_san_peer_certificate`, `connection.subject_peer_certificate`); a client is
//! the one whose configured `certificate` matches every field it gives. The proxy has already
//! verified the chain; this maps a verified certificate to a client, and refuses one that maps to
//! none (`unknown_certificate`).

use super::credentials::Credentials;
use super::{unauthorized, Attempt, AuthContext, AuthMethod, Identity, Method, RequestFacts};
use crate::field::ConfigError;
use schemars::JsonSchema;
use serde::Deserialize;

/// What the proxy tells about the peer's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 of the DER certificate, lowercase hex without separators.
    pub sha256: String,
    /// The first URI SAN (for example a SPIFFE id).
    pub uri_san: Option<String>,
    /// The subject, as the proxy prints it (Envoy: `CN=acme,O=Example`).
    pub subject: Option<String>,
}

/// `certificate` in a client entry: at least one field.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// SHA-256 fingerprint of the certificate (hex; `:` separators allowed).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The URI SAN, e.g. `spiffe://example.org/acme`.
    #[serde(default)]
    pub uri_san: Option<String>,
    /// The subject exactly as Envoy prints it, e.g. `CN=acme,O=Example`.
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateMatch {
    sha256: Option<String>,
    uri_san: Option<String>,
    subject: Option<String>,
}

fn fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

impl CertificateMatch {
    pub fn compile(field: &str, raw: &RawCertificate) -> Result<CertificateMatch, ConfigError> {
        let sha256 = raw.sha256.as_deref().map(fingerprint);
        if sha256
            .as_ref()
            .is_some_and(|f| f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::new(
                format!("{field}.sha256"),
                "must be 64 hex digits (a SHA-256 fingerprint)",
            ));
        }
        let nonempty = |v: &Option<String>| v.as_ref().filter(|s| !s.is_empty()).cloned();
        let m = CertificateMatch {
            sha256,
            uri_san: nonempty(&raw.uri_san),
            subject: nonempty(&raw.subject),
        };
        if m.sha256.is_none() && m.uri_san.is_none() && m.subject.is_none() {
            return Err(ConfigError::new(
                field,
                "give at least one of sha256, uri_san, subject",
            ));
        }
        Ok(m)
    }

    pub fn matches(&self, peer: &PeerCertificate) -> bool {
        self.sha256.as_ref().is_none_or(|f| *f == peer.sha256)
            && self
                .uri_san
                .as_ref()
                .is_none_or(|u| peer.uri_san.as_ref() == Some(u))
            && self
                .subject
                .as_ref()
                .is_none_or(|s| peer.subject.as_ref() == Some(s))
    }
}

/// The `mtls` method.
pub struct MtlsMethod;

impl Method for MtlsMethod {
    fn attempt(
        &self,
        ctx: &AuthContext,
        creds: &Credentials,
        _facts: &RequestFacts,
    ) -> Option<Attempt> {
        let peer = creds.peer.as_ref().filter(|p| !p.sha256.is_empty())?;
        Some(match ctx.directory.by_certificate(peer) {
            Some(client) => Attempt::Verified(Identity {
                client,
                method: AuthMethod::Mtls,
                scopes: Vec::new(),
                warning: None,
                headers: Vec::new(),
            }),
            None => Attempt::Failed(unauthorized(
                AuthMethod::Mtls,
                "unknown_certificate",
                "the client certificate belongs to no configured client",
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerCertificate {
        PeerCertificate {
            sha256: "ab".repeat(32),
            uri_san: Some("spiffe://test/acme".into()),
            subject: Some("CN=acme".into()),
        }
    }

    fn raw(sha256: Option<&str>, uri: Option<&str>, subject: Option<&str>) -> RawCertificate {
        RawCertificate {
            sha256: sha256.map(String::from),
            uri_san: uri.map(String::from),
            subject: subject.map(String::from),
        }
    }

    #[test]
    fn every_given_field_must_match() {
        let colons = vec!["AB"; 32].join(":");
        let m = CertificateMatch::compile("c", &raw(Some(&colons), None, None)).unwrap();
        assert!(
            m.matches(&peer()),
            "fingerprints compare without case or colons"
        );
        let m =
            CertificateMatch::compile("c", &raw(None, Some("spiffe://test/acme"), Some("CN=acme")))
                .unwrap();
        assert!(m.matches(&peer()));
        let m = CertificateMatch::compile(
            "c",
            &raw(None, Some("spiffe://test/acme"), Some("CN=other")),
        )
        .unwrap();
        assert!(!m.matches(&peer()));
        let mut no_san = peer();
        no_san.uri_san = None;
        let m =
            CertificateMatch::compile("c", &raw(None, Some("spiffe://test/acme"), None)).unwrap();
        assert!(!m.matches(&no_san));
    }

    #[test]
    fn a_match_names_at_least_one_well_formed_field() {
        assert!(CertificateMatch::compile("c", &raw(None, None, Some(""))).is_err());
        assert_eq!(
            CertificateMatch::compile("c", &raw(Some("abc"), None, None))
                .unwrap_err()
                .field,
            "c.sha256"
        );
    }
}
