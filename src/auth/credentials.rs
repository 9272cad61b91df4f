//! Finds the credentials on a request and sorts them by method.

use super::hmac_signature::SignedRequest;
use super::jwt::looks_like_jwt;
use crate::denial::Denial;

/// Request headers as the host gives them: lowercase names, raw byte values.
pub type HeaderList = crate::wire::HeaderMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// A JWT-shaped `Authorization: Bearer` token.
    pub jwt: Option<Vec<u8>>,
    /// `X-API-Key`, else an opaque bearer token.
    pub api_key: Option<Vec<u8>>,
    /// An `Authorization: Bearer` token that is not JWT-shaped (an API key or an OAuth2 token).
    pub opaque_bearer: Option<Vec<u8>>,
    pub signed: Option<SignedRequest>,
    /// RFC 9421 `Signature-Input` and `Signature`, as sent.
    pub message_signature: Option<MessageSignature>,
    /// The `Authorization` header carried a bearer credential (so it is stripped upstream).
    pub used_authorization: bool,
    /// The TLS peer certificate, when the proxy terminated TLS with one (and `mtls` is on).
    pub peer: Option<super::mtls::PeerCertificate>,
}

pub const HEADER_API_KEY: &str = "x-api-key";
pub const HEADER_CLIENT_ID: &str = "x-client-id";
pub const HEADER_TIMESTAMP: &str = "x-timestamp";
pub const HEADER_SIGNATURE: &str = "x-signature";
pub const HEADER_NONCE: &str = "x-nonce";
pub const HEADER_SIGNATURE_INPUT: &str = "signature-input";
pub const HEADER_MESSAGE_SIGNATURE: &str = "signature";

/// The two headers of an RFC 9421 signature, unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSignature {
    pub input: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The single value of a header; a credential header sent twice is ambiguous and refused.
pub fn single<'a>(headers: &'a HeaderList, name: &str) -> Result<Option<&'a [u8]>, Denial> {
    let mut found = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    let first = found.next();
    if found.next().is_some() {
        return Err(Denial::bad_request(
            "duplicate_credential_header",
            format!("header {name} must appear once"),
        ));
    }
    Ok(first.map(|(_, v)| v))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

pub fn extract(headers: &HeaderList) -> Result<Credentials, Denial> {
    let mut creds = Credentials::default();
    if let Some(auth) = single(headers, "authorization")? {
        let auth = trim(auth);
        if auth.len() > 7 && auth[..7].eq_ignore_ascii_case(b"bearer ") {
            let token = trim(&auth[7..]).to_vec();
            creds.used_authorization = true;
            if token.is_empty() {
                // "Bearer " alone carries no credential.
            } else if looks_like_jwt(&token) {
                creds.jwt = Some(token);
            } else {
                creds.opaque_bearer = Some(token.clone());
                creds.api_key = Some(token);
            }
        }
    }
    if let Some(key) = single(headers, HEADER_API_KEY).map(|k| k.map(trim))? {
        if !key.is_empty() {
            creds.api_key = Some(key.to_vec());
        }
    }
    let text = |name: &str| -> Result<Option<String>, Denial> {
        Ok(single(headers, name)?.map(|v| String::from_utf8_lossy(trim(v)).into_owned()))
    };
    if let Some(signature) = text(HEADER_SIGNATURE)? {
        creds.signed = Some(SignedRequest {
            client_id: text(HEADER_CLIENT_ID)?.unwrap_or_default(),
            timestamp: text(HEADER_TIMESTAMP)?.unwrap_or_default(),
            signature,
            nonce: text(HEADER_NONCE)?,
        });
    }
    let input = single(headers, HEADER_SIGNATURE_INPUT)?;
    let signature = single(headers, HEADER_MESSAGE_SIGNATURE)?;
    if input.is_some() || signature.is_some() {
        creds.message_signature = Some(MessageSignature {
            input: input.unwrap_or_default().to_vec(),
            signature: signature.unwrap_or_default().to_vec(),
        });
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(list: &[(&str, &[u8])]) -> crate::wire::HeaderMap {
        crate::wire::HeaderMap::from_pairs(list.iter().map(|(k, v)| (k.as_bytes(), *v)))
    }

    const JWT: &[u8] = b"eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.c2ln";

    #[test]
    fn bearer_is_routed_by_shape() {
        let c = extract(&h(&[("authorization", b"Bearer ak_live_123")])).unwrap();
        assert_eq!(c.api_key.as_deref(), Some(&b"ak_live_123"[..]));
        assert!(c.jwt.is_none());
        let mut auth = b"bearer ".to_vec();
        auth.extend_from_slice(JWT);
        let c = extract(&h(&[("authorization", &auth)])).unwrap();
        assert_eq!(c.jwt.as_deref(), Some(JWT));
        assert!(c.api_key.is_none());
    }

    #[test]
    fn api_key_header_and_signature_headers() {
        let c = extract(&h(&[
            ("x-api-key", b" k1 "),
            ("x-signature", b"ab"),
            ("x-client-id", b"marketing"),
            ("x-timestamp", b"100"),
        ]))
        .unwrap();
        assert_eq!(c.api_key.as_deref(), Some(&b"k1"[..]));
        let s = c.signed.unwrap();
        assert_eq!(
            (s.client_id.as_str(), s.timestamp.as_str(), s.nonce),
            ("marketing", "100", None)
        );
    }

    #[test]
    fn other_schemes_and_non_utf8_are_handled() {
        let c = extract(&h(&[("authorization", b"Basic dXNlcjpwYXNz")])).unwrap();
        assert_eq!(c, Credentials::default());
        let c = extract(&h(&[("x-api-key", b"\xff\xfe")])).unwrap();
        assert_eq!(c.api_key.as_deref(), Some(&b"\xff\xfe"[..]));
    }

    #[test]
    fn duplicated_credential_headers_are_refused() {
        let err = extract(&h(&[("x-api-key", b"a"), ("x-api-key", b"b")])).unwrap_err();
        assert_eq!(err.status, 400);
    }
}
