//! The request's credential phase: the principal the caller's identity maps
//! to, the upstream's token for it from the broker, and the request made to
//! carry that token instead of whatever credential the client sent.

use super::conn::ConnCtx;
use crate::credentials::source::Kind;
use crate::credentials::Token;
use crate::refusal::{Reason, Refusal};
use crate::runtime::route::{Route, RouteCredentials};
use http::{header, HeaderValue};
use std::sync::Arc;

/// A token a request carries: invalidated when the upstream refuses it.
pub struct Carried {
    principal: String,
    token: Arc<Token>,
}

/// The principal of the caller on this route (`None`: the route brokers no
/// credential); 403 `no_principal` when no rule maps the caller.
pub fn principal(ctx: &ConnCtx, route: &Route) -> Result<Option<String>, Refusal> {
    let Some(c) = &route.credentials else {
        return Ok(None);
    };
    c.principal(ctx.identity.as_deref())
        .map(|p| Some(p.to_owned()))
        .ok_or_else(|| Reason::NoPrincipal.into())
}

/// The upstream's token for this request, had before its body is read (a
/// refusal then disposes of the body as every early refusal does): 503
/// `token_unavailable` with Retry-After while the broker has none.
pub async fn token(
    ctx: &ConnCtx,
    route: &Route,
    principal: Option<&str>,
) -> Result<Option<Carried>, Refusal> {
    let (Some(c), Some(principal)) = (&route.credentials, principal) else {
        return Ok(None);
    };
    let Kind::Fetched(f) = &c.source.kind else {
        return Ok(None);
    };
    let token = ctx
        .rt
        .broker
        .token(&c.source, f, principal)
        .await
        .map_err(|e| {
            Refusal::new(Reason::TokenUnavailable).retry_after(e.retry_after.as_secs().max(1))
        })?;
    Ok(Some(Carried {
        principal: principal.to_owned(),
        token,
    }))
}

/// Headers that carry a client's own credential (and, with `_` for `-`,
/// what CGI-style servers read as the same).
const CLIENT_CREDENTIALS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    // Salesforce's session header (Bulk API 1.0).
    "x-sfdc-session",
];

/// The client's credentials out (unless the route passes them), the
/// upstream's in.
pub fn apply(
    c: &RouteCredentials,
    carried: Option<&Carried>,
    parts: &mut http::request::Parts,
) -> Result<(), Refusal> {
    let own = match &c.source.kind {
        Kind::Static { header, .. } => Some(header.as_str()),
        Kind::Fetched(_) => None,
    };
    if !c.pass_client_credentials {
        super::headers::strip_where(&mut parts.headers, |n| {
            CLIENT_CREDENTIALS.contains(&n) || own == Some(n)
        });
    }
    match (&c.source.kind, carried) {
        (Kind::Static { header, value }, _) => {
            parts.headers.insert(header.clone(), value.clone());
        }
        (Kind::Fetched(f), Some(carried)) => {
            parts
                .headers
                .insert(header::AUTHORIZATION, carried.token.bearer.clone());
            if f.use_instance_url {
                if let Some(instance) = carried.token.instance_url.as_deref() {
                    to_instance(parts, instance)?;
                }
            }
        }
        (Kind::Fetched(_), None) => return Err(Reason::Internal.into()),
    }
    Ok(())
}

/// The request goes to the token's instance (Salesforce's `instance_url`)
/// instead of the upstream's host, path and query kept.
fn to_instance(parts: &mut http::request::Parts, instance: &str) -> Result<(), Refusal> {
    let base: http::Uri = instance.parse().map_err(|_| Reason::Internal)?;
    let mut uri = http::uri::Builder::new();
    if let Some(s) = base.scheme() {
        uri = uri.scheme(s.clone());
    }
    if let Some(a) = base.authority() {
        uri = uri.authority(a.clone());
        if let Ok(h) = HeaderValue::from_str(a.as_str()) {
            parts.headers.insert(header::HOST, h);
        }
    }
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = uri
        .path_and_query(pq)
        .build()
        .map_err(|_| Reason::Internal)?;
    Ok(())
}

/// After the upstream answered: a 401 means it no longer takes the token,
/// which the broker then fetches anew for the next request.
pub fn answered(ctx: &ConnCtx, route: &Route, carried: Option<&Carried>, status: http::StatusCode) {
    if let (Some(c), Some(carried)) = (&route.credentials, carried) {
        if status == http::StatusCode::UNAUTHORIZED {
            ctx.rt
                .broker
                .invalidate(&c.source, &carried.principal, &carried.token);
        }
    }
}
