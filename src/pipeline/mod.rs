//! The whole per-request decision, free of host calls: the adapter hands in the request head
//! (and later the body), the time and the shared store, and applies the verdict it gets back.

use crate::auth::credentials::{self, Credentials, HeaderList};
use crate::auth::{
    self, Attempt, AuthContext, AuthMethod, Directory, Identity, Outcome, RequestFacts, Resume,
    Suspension, Wait,
};
use crate::authz::{self, levels::SecurityLevel, path};
use crate::callout::CalloutAnswer;
use crate::config::{Client, Config};
use crate::denial::Denial;
use crate::engine::headers::{HeaderName, HeaderValue};
use crate::ratelimit::Target;
use crate::store::SharedStore;
use std::net::IpAddr;
use std::rc::Rc;

/// Identity headers sent upstream. Removed from every incoming request first, so a client can
/// never choose them.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-client-id",
    "x-client-name",
    "x-auth-method",
    "x-security-level",
    "x-client-scopes",
];

const CREDENTIAL_HEADERS: [&str; 6] = [
    credentials::HEADER_API_KEY,
    credentials::HEADER_SIGNATURE,
    credentials::HEADER_TIMESTAMP,
    credentials::HEADER_NONCE,
    credentials::HEADER_SIGNATURE_INPUT,
    credentials::HEADER_MESSAGE_SIGNATURE,
];

/// The headers a grant keeps from the upstream: the identity headers (JWT claim headers
/// included) and, unless credentials are forwarded, the credential headers; `authorization`
/// too when the request authenticated with it (or, on a public route, carried a bearer token).
#[derive(Debug, Clone, Default)]
pub struct GuardedHeaders {
    plain: Rc<[HeaderName]>,
    with_authorization: Rc<[HeaderName]>,
}

impl GuardedHeaders {
    pub fn new(identity_headers: &[HeaderName], forward_credentials: bool) -> Self {
        let mut plain = identity_headers.to_vec();
        if !forward_credentials {
            plain.extend(CREDENTIAL_HEADERS.map(HeaderName::Borrowed));
        }
        let mut with_authorization = plain.clone();
        if !forward_credentials {
            with_authorization.push(HeaderName::Borrowed("authorization"));
        }
        Self {
            plain: plain.into(),
            with_authorization: with_authorization.into(),
        }
    }

    fn for_request(&self, used_authorization: bool) -> Rc<[HeaderName]> {
        if used_authorization {
            self.with_authorization.clone()
        } else {
            self.plain.clone()
        }
    }
}

pub struct RequestHead<'a> {
    pub method: &'a [u8],
    /// `:path` as received (Envoy has normalised it already, if configured to).
    pub path: &'a [u8],
    pub headers: &'a HeaderList,
    pub source: Source<'a>,
    /// False when the headers ended the request.
    pub has_body: bool,
    /// The TLS peer certificate (read only when `mtls` is configured).
    pub peer: Option<crate::auth::mtls::PeerCertificate>,
}

/// The caller's address, looked up only when a decision needs it (on the host each lookup is a
/// call out of the VM): authenticated clients without an address allowlist never need it.
pub struct Source<'a> {
    lookup: Box<dyn Fn() -> Option<IpAddr> + 'a>,
    cached: std::cell::OnceCell<Option<IpAddr>>,
}

impl<'a> Source<'a> {
    pub fn lazy(lookup: impl Fn() -> Option<IpAddr> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
            cached: std::cell::OnceCell::new(),
        }
    }

    pub fn known(ip: Option<IpAddr>) -> Self {
        Self::lazy(move || ip)
    }

    pub fn get(&self) -> Option<IpAddr> {
        *self.cached.get_or_init(|| (self.lookup)())
    }

    /// The address if a decision already looked it up; never asks the host.
    pub fn peek(&self) -> Option<IpAddr> {
        self.cached.get().copied().flatten()
    }

    /// `Some` (the address, or none) once a decision looked it up; `None` before.
    fn looked_up(&self) -> Option<Option<IpAddr>> {
        self.cached.get().copied()
    }
}

#[derive(Debug)]
pub struct Grant {
    pub identity: Option<Identity>,
    /// The route's security level.
    pub level: SecurityLevel,
    pub remove_headers: Rc<[HeaderName]>,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// What to count the request against before letting it through.
    pub limit: Option<Target>,
}

#[derive(Debug)]
pub struct Rejection {
    pub denial: Denial,
    /// The route's level, when the path was valid.
    pub level: Option<SecurityLevel>,
    /// Which method the request authenticated with, or failed at: for the auth metrics.
    pub auth: Option<(AuthMethod, bool)>,
    /// Failed authentication is counted per caller address: over its limit, a 429 replaces the
    /// 401, so guessing credentials is throttled.
    pub limit: Option<Target>,
}

/// A request whose authentication method waits (for the body, or a call's answer).
#[derive(Debug)]
pub struct Pending {
    /// What it waits for.
    pub wait: Wait,
    resume: Box<dyn Resume>,
    rest: PendingRequest,
}

#[derive(Debug)]
struct PendingRequest {
    method: String,
    target: path::RequestTarget,
    /// The address if the head's decision looked it up; else the resumed phase asks for it
    /// only if a decision needs it (one host call fewer for most signed requests).
    source: Option<Option<IpAddr>>,
    level: SecurityLevel,
    creds: Credentials,
    claimed: Option<usize>,
    /// The claimed client's refusal, told once its signature verified.
    deferred: Option<Denial>,
    /// The claimed client's identity headers went on with the request while it waited.
    claim_applied: bool,
}

impl Pending {
    /// The route's security level.
    pub fn level(&self) -> SecurityLevel {
        self.rest.level
    }

    /// The largest body accepted, while the body is awaited.
    pub fn max_body_bytes(&self) -> Option<usize> {
        match self.wait {
            Wait::Body { max_bytes } => Some(max_bytes),
            Wait::Call(_) => None,
        }
    }
}

#[derive(Debug)]
pub enum Verdict {
    Allow(Grant),
    Deny(Rejection),
    /// A method waits. For the body: Envoy holds the headers until [`on_request_body`] decided
    /// (no grant comes with the suspension); nginx cannot, so there the adapter applies the
    /// claimed client's grant and lets the headers continue to nginx's request buffering, which
    /// keeps them from the upstream until [`on_request_body`] has verified the body. For a call:
    /// the request is held, and [`on_auth_answer`] continues it.
    Suspend(Box<Pending>, Option<Grant>),
}

fn deny(denial: Denial) -> Verdict {
    Verdict::Deny(Rejection {
        denial,
        level: None,
        auth: None,
        limit: None,
    })
}

/// An authentication failure, counted against the caller's address.
fn unauthenticated(
    cfg: &Config,
    denial: Denial,
    auth: Option<(AuthMethod, bool)>,
    source: &Source,
) -> Verdict {
    Verdict::Deny(Rejection {
        denial,
        level: None,
        auth,
        limit: address_limit(cfg, source),
    })
}

fn address_limit(cfg: &Config, source: &Source) -> Option<Target> {
    let rl = &cfg.rate_limiting;
    if !rl.enabled {
        return None;
    }
    Some(rl.rules.for_address(source.get()))
}

fn client_limit(cfg: &Config, client: &Client, path: &str) -> Option<Target> {
    let rl = &cfg.rate_limiting;
    rl.enabled.then(|| {
        rl.rules.for_client(
            &client.id,
            client.registered,
            client.rate_limits.as_ref(),
            path,
        )
    })
}

/// Decides on the request head. `remove_headers` in a grant lists every identity and credential
/// header name to keep from the upstream, present or not: the engine plans the edits per host.
pub fn on_request_headers(
    cfg: &Config,
    req: &RequestHead,
    now: u64,
    store: &dyn SharedStore,
) -> Verdict {
    let target = match path::normalise(req.path) {
        Ok(t) => t,
        Err(e) => return deny(Denial::bad_request("invalid_path", e.message())),
    };
    let level = cfg.routes.level_for(&target.path);
    let mut verdict = decide_route(cfg, req, target, level, now, store);
    // Every refusal of a valid path names its route's level.
    if let Verdict::Deny(rejection) = &mut verdict {
        rejection.level.get_or_insert(level);
    }
    verdict
}

fn decide_route(
    cfg: &Config,
    req: &RequestHead,
    target: path::RequestTarget,
    level: SecurityLevel,
    now: u64,
    store: &dyn SharedStore,
) -> Verdict {
    if level == SecurityLevel::Public {
        // Credentials have no business upstream of a public route either.
        return Verdict::Allow(Grant {
            identity: None,
            level,
            remove_headers: cfg.guarded_headers.for_request(bearer_present(req.headers)),
            set_headers: Vec::new(),
            limit: address_limit(cfg, &req.source),
        });
    }
    let creds = match credentials::extract(req.headers).map(|mut c| {
        c.peer = req.peer.clone();
        c
    }) {
        Ok(c) => c,
        Err(d) => return deny(d),
    };
    let method = String::from_utf8_lossy(req.method).into_owned();
    let body = if req.has_body { None } else { Some(&b""[..]) };
    let facts = RequestFacts {
        method: &method,
        target: &target.raw,
        body,
        content_length: content_length(req.headers),
        headers: req.headers,
    };
    let ctx = auth_context(cfg, store, now);
    match auth::authenticate(&ctx, &creds, &facts) {
        Outcome::Suspended(suspension) => {
            suspend(cfg, suspension, creds, method, target, &req.source, level)
        }
        outcome => finish(cfg, outcome, &creds, &target.path, &req.source, level),
    }
}

fn auth_context<'a>(cfg: &'a Config, store: &'a dyn SharedStore, now: u64) -> AuthContext<'a> {
    AuthContext {
        settings: &cfg.auth,
        directory: cfg,
        registry: cfg.registry.as_ref(),
        store,
        now,
    }
}

/// A method waits (for the body, or a call). A claimed client is authorised now, its refusal
/// told only once its signature verified. Where the host cannot hold the headers while the body
/// is read, the claimed identity's headers go on with the request (see [`Verdict::Suspend`]);
/// where it can, nothing is claimed: the body phase authenticates, authorises and sets the
/// identity as for any other request.
fn suspend(
    cfg: &Config,
    suspension: Suspension,
    creds: Credentials,
    method: String,
    target: path::RequestTarget,
    source: &Source,
    level: SecurityLevel,
) -> Verdict {
    let mut deferred = None;
    let claimed = match suspension.wait {
        Wait::Body { .. } if cfg.host.holds_headers_for_body() => None,
        _ => suspension.claimed,
    };
    let claim = match claimed {
        Some(client) => {
            let claimed = Identity {
                client,
                method: suspension.method,
                scopes: Directory::scopes(cfg, client).to_vec(),
                warning: None,
                headers: Vec::new(),
            };
            // Authorised now, but a refusal is told only once the signature verified: an
            // unverified caller learns nothing about another client's rules.
            deferred = authorise(cfg, &claimed, &target.path, source, level).err();
            match identity_grant(cfg, claimed, &creds, &target.path, level) {
                Ok(grant) => Some(grant),
                Err(denial) => return deny(denial),
            }
        }
        None => None,
    };
    Verdict::Suspend(
        Box::new(Pending {
            rest: PendingRequest {
                method,
                target,
                source: source.looked_up(),
                level,
                claim_applied: claim.is_some() && matches!(suspension.wait, Wait::Body { .. }),
                claimed,
                deferred,
                creds,
            },
            wait: suspension.wait,
            resume: suspension.resume,
        }),
        claim,
    )
}

/// Continues a suspended request with its complete body. `source` is the caller's address as
/// the host gives it in this callback (asked only if the head's decision did not).
pub fn on_request_body(
    cfg: &Config,
    pending: Box<Pending>,
    body: &[u8],
    now: u64,
    store: &dyn SharedStore,
    source: &Source,
) -> Verdict {
    let Pending { resume, rest, .. } = *pending;
    let facts = RequestFacts {
        method: &rest.method,
        target: &rest.target.raw,
        body: Some(body),
        content_length: None,
        headers: &Default::default(),
    };
    let attempt = resume.with_body(&auth_context(cfg, store, now), &facts, body);
    resumed(cfg, attempt, rest, source)
}

/// Continues a suspended request with the answer to the call its method asked for.
pub fn on_auth_answer(
    cfg: &Config,
    pending: Box<Pending>,
    answer: &CalloutAnswer,
    now: u64,
    store: &dyn SharedStore,
    source: &Source,
) -> Verdict {
    let Pending { resume, rest, .. } = *pending;
    let attempt = resume.with_answer(&auth_context(cfg, store, now), answer);
    resumed(cfg, attempt, rest, source)
}

fn resumed(cfg: &Config, attempt: Attempt, rest: PendingRequest, source: &Source) -> Verdict {
    let known;
    let source = match rest.source {
        Some(ip) => {
            known = Source::known(ip);
            &known
        }
        None => source,
    };
    match attempt {
        Attempt::Verified(identity) if rest.deferred.is_some() => {
            let denial = rest.deferred.unwrap_or_else(no_client);
            Verdict::Deny(Rejection {
                denial,
                level: Some(rest.level),
                auth: Some((identity.method, true)),
                limit: None,
            })
        }
        Attempt::Verified(identity) if rest.claim_applied => {
            if Some(identity.client) != rest.claimed {
                return deny(Denial::new(
                    500,
                    "internal_error",
                    "the verified client is not the one claimed",
                ));
            }
            // Its identity headers were set when the headers went through.
            Verdict::Allow(Grant {
                level: rest.level,
                limit: cfg
                    .client(identity.client)
                    .and_then(|c| client_limit(cfg, &c, &rest.target.path)),
                identity: Some(identity),
                remove_headers: Rc::from([]),
                set_headers: Vec::new(),
            })
        }
        settled @ (Attempt::Verified(_) | Attempt::Failed(_)) => finish(
            cfg,
            settled.into(),
            &rest.creds,
            &rest.target.path,
            source,
            rest.level,
        ),
        // Waiting again (a verified body whose replay record goes to Redis): what the first
        // wait applied and deferred stands.
        Attempt::Suspended(again) => Verdict::Suspend(
            Box::new(Pending {
                wait: again.wait,
                resume: again.resume,
                rest: PendingRequest {
                    source: source.looked_up(),
                    ..rest
                },
            }),
            None,
        ),
    }
}

pub use crate::auth::hmac_signature::body_too_large;

fn bearer_present(headers: &HeaderList) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("authorization")
            && v.len() > 7
            && v[..7].eq_ignore_ascii_case(b"bearer ")
    })
}

fn content_length(headers: &HeaderList) -> Option<u64> {
    let value = headers.iter().find(|(k, _)| *k == "content-length")?;
    std::str::from_utf8(value.1).ok()?.trim().parse().ok()
}

fn finish(
    cfg: &Config,
    outcome: Outcome,
    creds: &Credentials,
    path: &str,
    source: &Source,
    level: SecurityLevel,
) -> Verdict {
    let identity = match outcome {
        Outcome::Authenticated(identity) => identity,
        Outcome::Failed(f) => {
            return unauthenticated(cfg, f.denial, Some((f.method, false)), source);
        }
        Outcome::NoCredentials | Outcome::Suspended(_) => {
            let challenge = cfg
                .auth
                .methods
                .iter()
                .map(|m| m.challenge())
                .collect::<Vec<_>>()
                .join(", ");
            let denial = Denial::unauthorized(
                "missing_credentials",
                "this endpoint requires authentication",
                challenge,
            );
            return unauthenticated(cfg, denial, None, source);
        }
    };
    let method = identity.method;
    match grant_for(cfg, identity, creds, path, source, level) {
        Ok(grant) => Verdict::Allow(grant),
        Err(denial) => Verdict::Deny(Rejection {
            denial,
            level: Some(level),
            auth: Some((method, true)),
            limit: None,
        }),
    }
}

/// Authorises an identity and lists the header changes for the upstream request.
fn grant_for(
    cfg: &Config,
    identity: Identity,
    creds: &Credentials,
    path: &str,
    source: &Source,
    level: SecurityLevel,
) -> Result<Grant, Denial> {
    authorise(cfg, &identity, path, source, level)?;
    identity_grant(cfg, identity, creds, path, level)
}

fn authorise(
    cfg: &Config,
    identity: &Identity,
    path: &str,
    source: &Source,
    level: SecurityLevel,
) -> Result<(), Denial> {
    let client = cfg.client(identity.client).ok_or_else(no_client)?;
    authz::authorise(&client.access, path, || source.get(), level)
}

fn no_client() -> Denial {
    Denial::new(500, "internal_error", "identity refers to no client")
}

/// The headers and rate-limit target of an identity, authorised or not.
fn identity_grant(
    cfg: &Config,
    identity: Identity,
    creds: &Credentials,
    path: &str,
    level: SecurityLevel,
) -> Result<Grant, Denial> {
    let client = cfg.client(identity.client).ok_or_else(no_client)?;
    if client.require_mtls && identity.method != AuthMethod::Mtls {
        return Err(Denial::unauthorized(
            "mtls_required",
            "this client must authenticate with its TLS client certificate",
            AuthMethod::Mtls.challenge(),
        ));
    }
    let remove_headers = cfg.guarded_headers.for_request(creds.used_authorization);
    // Only the headers the configuration sends are made; those it leaves out stay guarded:
    // removed, never forwarded as sent. Static values are borrowed, not copied.
    let mut set_headers: Vec<(HeaderName, HeaderValue)> =
        Vec::with_capacity(IDENTITY_HEADERS.len() + identity.headers.len());
    let mut set = |name: &'static str, value: &dyn Fn() -> HeaderValue| {
        if cfg.sent_identity_headers.contains(&name) {
            set_headers.push((HeaderName::Borrowed(name), value()));
        }
    };
    set("x-client-id", &|| client.id.clone().into());
    set("x-client-name", &|| client.name.clone().into());
    set("x-auth-method", &|| identity.method.as_str().into());
    set("x-security-level", &|| {
        client.access.security_level.as_str().into()
    });
    if !identity.scopes.is_empty() {
        set("x-client-scopes", &|| identity.scopes.join(" ").into());
    }
    // Claims the configuration maps to headers (JWT), checked when the token was verified.
    set_headers.extend(
        identity
            .headers
            .iter()
            .map(|(name, value)| (HeaderName::Owned(name.clone()), value.clone().into())),
    );
    Ok(Grant {
        level,
        limit: client_limit(cfg, &client, path),
        identity: Some(identity),
        remove_headers,
        set_headers,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
