//! The request's credential phase: the principal the caller's identity maps
//! to, the upstream's token for it from the broker, and the request made to
//! carry that token instead of whatever credential the client sent.

use super::conn::ConnCtx;
use crate::credentials::soap;
use crate::credentials::source::Kind;
use crate::credentials::Token;
use crate::refusal::{Reason, Refusal};
use crate::runtime::route::{Route, RouteCredentials, SessionSplice};
use crate::runtime::upstream::ProxyBody;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

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

/// A gRPC call (`application/grpc`, `application/grpc+proto`, ...).
fn is_grpc(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        })
}

/// The client's credentials out (unless the route passes them), the
/// upstream's in: `Authorization`, Pub/Sub's metadata on a gRPC call, or
/// nothing here on a SOAP call (its SessionHeader: `splice`).
pub fn apply(
    c: &RouteCredentials,
    soap_call: bool,
    carried: Option<&Carried>,
    parts: &mut http::request::Parts,
) -> Result<(), Refusal> {
    if !c.pass_client_credentials {
        super::headers::strip_where(&mut parts.headers, |n| {
            super::headers::CLIENT_CREDENTIALS.contains(&n) || c.own_header.as_deref() == Some(n)
        });
    }
    match (&c.source.kind, carried) {
        (Kind::Static { header, value }, _) => {
            parts.headers.insert(header.clone(), value.clone());
        }
        (Kind::Fetched(f), Some(carried)) => {
            let t = &carried.token;
            if c.salesforce && is_grpc(&parts.headers) {
                // Pub/Sub API: the session, its instance and its org.
                let mut token =
                    HeaderValue::from_bytes(t.value.expose()).map_err(|_| Reason::Internal)?;
                token.set_sensitive(true);
                parts.headers.insert("accesstoken", token);
                for (name, value) in [("instanceurl", &t.instance_url), ("tenantid", &t.tenant_id)]
                {
                    match value.as_deref().map(HeaderValue::from_str) {
                        Some(Ok(v)) => parts.headers.insert(name, v),
                        _ => parts.headers.remove(name),
                    };
                }
            } else if !soap_call {
                // (A SOAP call carries it in its SessionHeader: `splice`.)
                parts
                    .headers
                    .insert(header::AUTHORIZATION, t.bearer.clone());
            }
            if f.use_instance_url {
                if let Some(instance) = t.instance_url.as_deref() {
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

/// A SOAP message read whole to write its SessionHeader into, under the
/// splice's ceiling and its share of the messages buffered at once; the
/// share is held until the upstream has answered (it goes with the `Resend`).
pub async fn read_soap(
    route: &Route,
    session: &SessionSplice,
    headers: &http::HeaderMap,
    body: Incoming,
    stats: &Arc<super::body::BodyStats>,
) -> Result<(Bytes, OwnedSemaphorePermit), Refusal> {
    let bounds = (session.max_body, SESSION_READ_TIMEOUT);
    super::wssec::buffer(route, &session.slots, headers, body, bounds, stats).await
}

/// How this request's session is written, if in a SessionHeader: on a SOAP
/// route to Salesforce, or to a SOAP endpoint's path on any route to it (so
/// a client's own SessionHeader cannot pass there either).
pub fn session_for<'r>(route: &'r Route, path: &str) -> Option<&'r SessionSplice> {
    let s = route.credentials.as_ref()?.session.as_ref()?;
    (s.soap_route || soap::is_soap_endpoint(path)).then_some(s)
}

/// The whole SOAP message arrives within this (as WS-Security's default).
const SESSION_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A SOAP message to Salesforce with the brokered session as its
/// `SessionHeader/sessionId` (the client's replaced), in the namespace of
/// the endpoint's API; large messages are spliced off the async threads.
pub async fn splice(
    c: &RouteCredentials,
    session: &SessionSplice,
    carried: Option<&Carried>,
    path: &str,
    msg: Bytes,
) -> Result<Bytes, Refusal> {
    let Some(carried) = carried else {
        return Ok(msg);
    };
    let namespace = soap::namespace_for(path);
    let limits = session.limits.clone();
    let token = carried.token.clone();
    let small = msg.len() <= INLINE_SPLICE;
    let run = move || soap::set_session_id(&msg, &limits, &namespace, token.value.expose());
    let out = if small {
        run()
    } else {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|_| Reason::Internal)?
    };
    out.map(Bytes::from).map_err(|e| {
        // What was wrong is for the operator; the caller reads the reason.
        tracing::warn!(
            target: "sealgate::credentials",
            upstream = %c.source.upstream,
            reason = Reason::NotASoapEnvelope.as_str(),
            detail = %e,
            "the SessionHeader could not be written into the request"
        );
        Reason::NotASoapEnvelope.into()
    })
}

/// Messages up to this size are spliced on the request's own thread: the
/// envelope reader takes about 100 µs for 5 KiB (BENCHMARKS.md), about what
/// a task should run between awaits; larger ones go to the blocking pool.
const INLINE_SPLICE: usize = 4 << 10;

/// What it takes to send a request again with a new token: its head as
/// prepared for the upstream before a token went in (the client's
/// credentials are taken out again), and its whole body.
pub struct Resend {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    /// Before the SessionHeader splice, on a SOAP call.
    body: Bytes,
    /// A SOAP message's share of what is buffered, held until it is answered.
    _buffered: Option<OwnedSemaphorePermit>,
}

impl Resend {
    /// `parts` as prepared for the upstream, before `apply`.
    pub fn head(parts: &http::request::Parts) -> Resend {
        Resend {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: Bytes::new(),
            _buffered: None,
        }
    }

    /// The whole body that goes with it (before any splice); it is sent
    /// whole, so what described the body as the client sent it goes.
    pub fn with_body(mut self, body: Bytes, buffered: Option<OwnedSemaphorePermit>) -> Resend {
        super::headers::body_replaced(&mut self.headers);
        self.body = body;
        self._buffered = buffered;
        self
    }

    /// The request was a SOAP call with the session in its SessionHeader.
    pub fn soap_call(&self, route: &Route) -> bool {
        session_for(route, self.uri.path()).is_some()
    }
}

/// The upstream no longer takes the token: 401 (REST), or a SOAP fault
/// `INVALID_SESSION_ID` (Salesforce answers 500; the fault is read from at
/// most the first 64 KiB, which go on to the caller if it is another). The
/// broker forgets the token, so the next request fetches a new one.
pub async fn refused(
    ctx: &ConnCtx,
    route: &Route,
    c: &RouteCredentials,
    carried: &Carried,
    resp: Response<ProxyBody>,
    soap_call: bool,
    deadline: Option<tokio::time::Instant>,
) -> Result<(Response<ProxyBody>, bool), Refusal> {
    let status = resp.status();
    let soap = soap_call && status == http::StatusCode::INTERNAL_SERVER_ERROR;
    let answer = if status == http::StatusCode::UNAUTHORIZED {
        (resp, true)
    } else if c.salesforce && grpc_unauthenticated(resp.headers()) {
        // Pub/Sub: a trailers-only answer, grpc-status 16 (UNAUTHENTICATED).
        (resp, true)
    } else if soap {
        let (parts, body) = resp.into_parts();
        // The fault is read within the route's idle timeout and deadline:
        // an upstream that stalls after the status line holds nothing.
        let idle = tokio::time::Instant::now() + route.body_idle_timeout;
        let until = deadline.map_or(idle, |d| d.min(idle));
        let p = match tokio::time::timeout_at(until, super::body::peek(body, FAULT_PEEK)).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(Reason::UpstreamError.into()),
            Err(_) if until < idle => return Err(Reason::MaxDuration.into()),
            Err(_) => return Err(Reason::UpstreamStalled.into()),
        };
        let expired = !p.over && session_expired(&p.head);
        (
            Response::from_parts(parts, super::body::prefixed(p.head, p.rest)),
            expired,
        )
    } else {
        (resp, false)
    };
    if answer.1 {
        ctx.rt
            .broker
            .invalidate(&c.source, &carried.principal, &carried.token);
    }
    Ok(answer)
}

fn grpc_unauthenticated(h: &http::HeaderMap) -> bool {
    h.get("grpc-status").is_some_and(|v| v.as_bytes() == b"16")
}

const FAULT_PEEK: usize = 64 << 10;

/// Salesforce's fault for a session that ended: `sf:INVALID_SESSION_ID` as
/// the faultcode (SOAP 1.1) or the Code's Value (SOAP 1.2).
fn session_expired(fault: &[u8]) -> bool {
    const CODE: &[u8] = b":INVALID_SESSION_ID<";
    fault.windows(CODE.len()).any(|w| w == CODE)
}

/// After a refused token: the request again with a new one, when the broker
/// has one that is not the refused token (fetched anew, by this request or
/// another); `None` leaves the refusal as the answer.
pub async fn again(
    ctx: &ConnCtx,
    route: &Route,
    carried: &Carried,
    mut resend: Resend,
) -> Option<(Request<ProxyBody>, Resend)> {
    let c = route.credentials.as_ref()?;
    let fresh = token(ctx, route, Some(&carried.principal)).await.ok()??;
    if fresh.token.serial == carried.token.serial {
        return None;
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = resend.method.clone();
    parts.uri = resend.uri.clone();
    parts.version = http::Version::HTTP_11;
    parts.headers = std::mem::take(&mut resend.headers);
    let session = session_for(route, parts.uri.path());
    apply(c, session.is_some(), Some(&fresh), &mut parts).ok()?;
    let body = match session {
        Some(s) => splice(c, s, Some(&fresh), parts.uri.path(), resend.body.clone())
            .await
            .ok()?,
        None => resend.body.clone(),
    };
    // (The buffered share stays held until this answer, with `resend`.)
    Some((Request::from_parts(parts, super::body::full(body)), resend))
}
