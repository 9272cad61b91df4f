//! Header edits for the upstream request, planned for the host at hand and checked after the
//! host applied them: a filter that assumes its edits happened forwards whatever a host ignored.
//!
//! Identity and credential headers are "guarded": none may reach the upstream except as the
//! filter set it. A header's spelling does not matter (`X-Client-Id`, `x_client_id`): CGI-style
//! upstreams read `_` as `-`, so guarded names are compared after lowercasing and mapping `_`
//! to `-`.

use crate::auth::credentials::HeaderList;
use crate::denial::Denial;
use crate::profile::HostProfile;
use std::rc::Rc;

/// A header name: the built-in ones are static, configured ones (JWT claim headers) owned.
pub type HeaderName = std::borrow::Cow<'static, str>;

/// A value set upstream: borrowed when it is static (the method, the security level).
pub type HeaderValue = std::borrow::Cow<'static, str>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Headers to remove, as the host spelled them.
    pub remove: Vec<String>,
    /// Headers to set: replaced in place when present, else added.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Normalised names that may reach the upstream only as set here.
    pub guarded: Rc<[HeaderName]>,
}

/// Lowercase, `_` read as `-`.
pub fn normalise(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

fn same_name(name: &str, guarded: &str) -> bool {
    same_name_bytes(name.as_bytes(), guarded)
}

fn same_name_bytes(name: &[u8], guarded: &str) -> bool {
    name.len() == guarded.len()
        && name
            .iter()
            .zip(guarded.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (*a == b'_' && b == b'-'))
}

fn identity_header_refused() -> Denial {
    Denial::bad_request(
        "identity_header_not_allowed",
        "the request carries a header the proxy sets itself (x-client-id, x-client-name, \
         x-auth-method, x-security-level, x-client-scopes); remove it",
    )
}

/// Plans the edits. `guarded` are the identity and credential headers this request must not
/// forward as received; `identity` of them are the ones the filter sets; `set` their values.
///
/// Envoy removes what it is asked to. Kong's host cannot remove a header (nginx forwards it
/// anyway), so there a request carrying an identity header in any spelling is refused (the
/// signing scheme's `X-Client-Id` passes when it is exactly the client the filter sets), and
/// credentials are blanked in place, which that host does apply.
pub fn plan(
    profile: HostProfile,
    incoming: &HeaderList,
    guarded: &Rc<[HeaderName]>,
    identity: &[HeaderName],
    set: Vec<(HeaderName, HeaderValue)>,
) -> Result<HeaderEdits, Denial> {
    let mut edits = HeaderEdits {
        remove: Vec::new(),
        set: Vec::with_capacity(set.len()),
        guarded: guarded.clone(),
    };
    for (name, value) in incoming.iter() {
        let Some(g) = guarded.iter().find(|g| same_name(name, g)) else {
            continue;
        };
        if profile.removes_headers() {
            if !edits.remove.iter().any(|r| r == name) {
                edits.remove.push(name.to_string());
            }
        } else if identity.contains(g) {
            let occurrences = incoming.iter().filter(|(n, _)| same_name(n, g)).count();
            let kept = set.iter().any(|(s, v)| s == g && v.as_bytes() == value);
            if occurrences != 1 || !kept || !name.eq_ignore_ascii_case(g) {
                return Err(identity_header_refused());
            }
        } else if !edits.set.iter().any(|(n, _)| n == name) {
            edits.set.push((
                HeaderName::Owned(name.to_string()),
                HeaderValue::Borrowed(""),
            ));
        }
    }
    edits.set.extend(set);
    Ok(edits)
}

/// Checks the upstream-bound headers after the edits: every guarded header present is one the
/// filter set, with its value, exactly once. `Err` names the header that is wrong.
pub fn verify(edits: &HeaderEdits, after: &[(&[u8], &[u8])]) -> Result<(), String> {
    for g in edits.guarded.iter() {
        let mut present = after.iter().filter(|(n, _)| same_name_bytes(n, g));
        let expected = edits
            .set
            .iter()
            .find(|(n, _)| same_name(n, g))
            .map(|(_, v)| v.as_bytes());
        match (present.next(), present.next(), expected) {
            (None, _, None) => {}
            // A blanked credential is as good as a removed one.
            (Some((_, v)), None, Some(want)) if *v == want => {}
            (Some((_, [])), None, None) => {}
            _ => return Err(g.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUARDED: [HeaderName; 3] = [
        HeaderName::Borrowed("x-client-id"),
        HeaderName::Borrowed("x-security-level"),
        HeaderName::Borrowed("x-api-key"),
    ];
    fn guarded() -> Rc<[HeaderName]> {
        GUARDED.into()
    }

    const IDENTITY: [HeaderName; 2] = [
        HeaderName::Borrowed("x-client-id"),
        HeaderName::Borrowed("x-security-level"),
    ];

    fn h(list: &[(&str, &str)]) -> crate::wire::HeaderMap {
        crate::wire::HeaderMap::from_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    fn identity() -> Vec<(HeaderName, HeaderValue)> {
        vec![("x-client-id".into(), "marketing".into())]
    }

    #[test]
    fn envoy_removes_every_spelling_then_sets() {
        let incoming = h(&[
            ("x-client-id", "analytics"),
            ("x_client_id", "analytics"),
            ("x-api-key", "k"),
            ("accept", "*/*"),
        ]);
        let e = plan(
            HostProfile::Envoy,
            &incoming,
            &guarded(),
            &IDENTITY,
            identity(),
        )
        .unwrap();
        assert_eq!(e.remove, ["x-client-id", "x_client_id", "x-api-key"]);
        assert_eq!(
            e.set,
            [("x-client-id".into(), "marketing".into())] as [(HeaderName, HeaderValue); 1]
        );
    }

    #[test]
    fn kong_refuses_identity_headers_and_blanks_credentials() {
        for spoof in [
            h(&[("X-Client-Id", "analytics")]),
            h(&[("x_security_level", "critical")]),
            h(&[("X-CLIENT-ID", "marketing"), ("x-client-id", "marketing")]),
        ] {
            let err = plan(HostProfile::Kong, &spoof, &guarded(), &IDENTITY, identity());
            assert_eq!(err.unwrap_err().code, "identity_header_not_allowed");
        }
        // The signing scheme's own X-Client-Id, naming the client the filter sets, passes.
        let signed = h(&[("X-Client-Id", "marketing"), ("X-API-Key", "k")]);
        let e = plan(
            HostProfile::Kong,
            &signed,
            &guarded(),
            &IDENTITY,
            identity(),
        )
        .unwrap();
        assert!(e.remove.is_empty());
        assert_eq!(
            e.set,
            [
                // (Names arrive lowercased from the map, whatever the client sent.)
                ("x-api-key".into(), "".into()),
                ("x-client-id".into(), "marketing".into())
            ] as [(HeaderName, HeaderValue); 2]
        );
    }

    fn check(e: &HeaderEdits, after: &crate::wire::HeaderMap) -> Result<(), String> {
        let pairs: Vec<(&[u8], &[u8])> = after.iter().map(|(k, v)| (k.as_bytes(), v)).collect();
        verify(e, &pairs)
    }

    #[test]
    fn verification_catches_what_a_host_ignored() {
        let incoming = h(&[("x-client-id", "analytics"), ("x-api-key", "k")]);
        let e = plan(
            HostProfile::Envoy,
            &incoming,
            &guarded(),
            &IDENTITY,
            identity(),
        )
        .unwrap();
        let applied = h(&[("x-client-id", "marketing")]);
        assert_eq!(check(&e, &applied), Ok(()));
        let removal_ignored = h(&[
            ("x-client-id", "analytics"),
            ("x-client-id", "marketing"),
            ("x-api-key", "k"),
        ]);
        assert_eq!(check(&e, &removal_ignored), Err("x-client-id".into()));
        let key_kept = h(&[("x-client-id", "marketing"), ("X-Api-Key", "k")]);
        assert_eq!(check(&e, &key_kept), Err("x-api-key".into()));
        let set_ignored = h(&[]);
        assert_eq!(check(&e, &set_ignored), Err("x-client-id".into()));
        let blanked = h(&[("x-client-id", "marketing"), ("x-api-key", "")]);
        assert_eq!(check(&e, &blanked), Ok(()));
    }
}
