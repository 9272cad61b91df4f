//! Asymmetric JWT signatures checked faster than jwt-simple's pure-Rust backends do in wasm:
//! RS256/384/512 and PS256/384/512 by [`rsa_pkcs1`](super::rsa_pkcs1) (each key's constants
//! computed once; PSS decoding in [`rsa_pss`](super::rsa_pss)), ES256 and ES384 by
//! [`ecdsa`](super::ecdsa) (each key's multiples precomputed), EdDSA by
//! [`ed25519`](super::ed25519) (likewise). jwt-simple stays the token library: it parses keys,
//! and [`verify`] follows its `Token::verify` step by step (length, compact form, header type,
//! algorithm, signature, claims and their validation) with only the signature check replaced.
//! Tests run tokens through both and compare outcomes; Wycheproof vectors test every check
//! behind [`FastKey`].

use super::ecdsa::{self, NistP256, NistP384};
use super::ed25519;
use super::rsa_pkcs1::{self, Hash};
use super::{JwtFailure, Key};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{Map, Value};

/// jwt-simple's bound on the encoded header.
const MAX_HEADER_LENGTH: usize = 8192;

/// A public key ready for its fast check, with the algorithm its JWT `alg` names.
pub enum FastKey {
    /// RS256/384/512.
    RsaPkcs1 {
        key: rsa_pkcs1::PublicKey,
        hash: Hash,
    },
    /// PS256/384/512.
    RsaPss {
        key: rsa_pkcs1::PublicKey,
        hash: Hash,
    },
    /// ES256.
    EcdsaP256(ecdsa::PublicKey<NistP256>),
    /// ES384.
    EcdsaP384(ecdsa::PublicKey<NistP384>),
    /// EdDSA (Ed25519).
    Ed25519(ed25519::PublicKey),
}

impl std::fmt::Debug for FastKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RsaPkcs1 { key, hash } => write!(f, "FastKey::RsaPkcs1({key:?}, {hash:?})"),
            Self::RsaPss { key, hash } => write!(f, "FastKey::RsaPss({key:?}, {hash:?})"),
            Self::EcdsaP256(key) => write!(f, "FastKey::EcdsaP256({key:?})"),
            Self::EcdsaP384(key) => write!(f, "FastKey::EcdsaP384({key:?})"),
            Self::Ed25519(key) => write!(f, "FastKey::Ed25519({key:?})"),
        }
    }
}

fn rsa(
    components: jwt_simple::algorithms::RSAPublicKeyComponents,
    make: impl FnOnce(rsa_pkcs1::PublicKey) -> FastKey,
) -> Option<FastKey> {
    rsa_pkcs1::PublicKey::new(&components.n, &components.e).map(make)
}

impl FastKey {
    /// The fast form of a configured key; `None` for keys no fast check takes (HMAC keys, RSA
    /// moduli outside 2048–8192 bits), which jwt-simple keeps checking. (Ed25519 bytes that are
    /// no curve point never get here: jwt-simple refuses them when it reads the key.)
    pub(super) fn for_key(key: &Key) -> Option<FastKey> {
        let pkcs1 = |hash| move |key| FastKey::RsaPkcs1 { key, hash };
        let pss = |hash| move |key| FastKey::RsaPss { key, hash };
        match key {
            Key::RS256(k) => rsa(k.to_components(), pkcs1(Hash::Sha256)),
            Key::RS384(k) => rsa(k.to_components(), pkcs1(Hash::Sha384)),
            Key::RS512(k) => rsa(k.to_components(), pkcs1(Hash::Sha512)),
            Key::PS256(k) => rsa(k.to_components(), pss(Hash::Sha256)),
            Key::PS384(k) => rsa(k.to_components(), pss(Hash::Sha384)),
            Key::PS512(k) => rsa(k.to_components(), pss(Hash::Sha512)),
            Key::ES256(k) => ecdsa::PublicKey::new(&k.public_key().to_bytes_uncompressed())
                .map(FastKey::EcdsaP256),
            Key::ES384(k) => ecdsa::PublicKey::new(&k.public_key().to_bytes_uncompressed())
                .map(FastKey::EcdsaP384),
            Key::EdDSA(k) => ed25519::PublicKey::new(&k.to_bytes()).map(FastKey::Ed25519),
            Key::HS256(_) | Key::HS384(_) | Key::HS512(_) => None,
        }
    }

    /// Whether `signature` is this key's over `message`.
    pub fn check(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::RsaPkcs1 { key, hash } => key.verify(*hash, message, signature),
            Self::RsaPss { key, hash } => key.verify_pss(*hash, message, signature),
            Self::EcdsaP256(key) => key.verify(message, signature),
            Self::EcdsaP384(key) => key.verify(message, signature),
            Self::Ed25519(key) => key.verify(message, signature),
        }
    }
}

fn decode(part: &str) -> Result<Vec<u8>, JwtFailure> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtFailure::Malformed)
}

/// A token checked as jwt-simple's `verify_token` checks it, the signature by its fast check.
pub(super) fn verify(
    key: &FastKey,
    alg: &str,
    token: &str,
    options: &VerificationOptions,
) -> Result<JWTClaims<Map<String, Value>>, JwtFailure> {
    if options
        .max_token_length
        .is_some_and(|max| token.len() > max)
    {
        return Err(JwtFailure::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtFailure::Malformed);
    };
    if header_b64.len() > MAX_HEADER_LENGTH {
        return Err(JwtFailure::Malformed);
    }
    let header: Map<String, Value> =
        serde_json::from_slice(&decode(header_b64)?).map_err(|_| JwtFailure::Malformed)?;
    if header
        .get("crit")
        .is_some_and(|c| c.as_array().is_none_or(|list| !list.is_empty()))
    {
        return Err(JwtFailure::UnknownCritical);
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) => {
            let t = t.to_uppercase();
            if t != "JWT" && !t.ends_with("+JWT") {
                return Err(JwtFailure::Malformed);
            }
        }
        Some(_) => return Err(JwtFailure::Malformed),
    }
    if header.get("alg").and_then(Value::as_str) != Some(alg) {
        return Err(JwtFailure::AlgorithmNotAllowed);
    }
    let signature = decode(signature_b64)?;
    let signed = token
        .as_bytes()
        .get(..header_b64.len() + 1 + claims_b64.len())
        .ok_or(JwtFailure::Malformed)?;
    if !key.check(signed, &signature) {
        return Err(JwtFailure::BadSignature);
    }
    let claims: JWTClaims<Map<String, Value>> =
        serde_json::from_slice(&decode(claims_b64)?).map_err(|_| JwtFailure::Malformed)?;
    validate(&claims, options)?;
    Ok(claims)
}

/// jwt-simple's `JWTClaims::validate` for the options the filter sets (times with tolerance
/// against the given clock, issuers, audiences).
fn validate(
    claims: &JWTClaims<Map<String, Value>>,
    options: &VerificationOptions,
) -> Result<(), JwtFailure> {
    let now = options
        .artificial_time
        .unwrap_or_else(jwt_simple::prelude::Clock::now_since_epoch);
    let tolerance = options.time_tolerance.unwrap_or_default();
    if let Some(reject_before) = options.reject_before {
        if claims.issued_at.is_none_or(|iat| iat < reject_before) {
            return Err(JwtFailure::Malformed);
        }
    }
    if !options.accept_future && claims.issued_at.is_some_and(|iat| iat > now + tolerance) {
        return Err(JwtFailure::IssuedInFuture);
    }
    if let Some(max_validity) = options.max_validity {
        let fresh = claims
            .issued_at
            .is_some_and(|iat| now <= iat || now - iat <= max_validity);
        if !fresh {
            return Err(JwtFailure::Expired);
        }
    }
    if !options.accept_future
        && claims
            .invalid_before
            .is_some_and(|nbf| now + tolerance < nbf)
    {
        return Err(JwtFailure::NotYetValid);
    }
    if let Some(exp) = claims.expires_at {
        if now < tolerance || now - tolerance > exp {
            return Err(JwtFailure::Expired);
        }
    }
    if let Some(allowed) = &options.allowed_issuers {
        if !claims.issuer.as_ref().is_some_and(|i| allowed.contains(i)) {
            return Err(JwtFailure::WrongIssuer);
        }
    }
    if options.required_subject.is_some() || options.required_nonce.is_some() {
        // The filter sets neither; refuse rather than skip a check it was asked for.
        return Err(JwtFailure::Malformed);
    }
    if let Some(allowed) = &options.allowed_audiences {
        if !claims
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(allowed))
        {
            return Err(JwtFailure::WrongAudience);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
