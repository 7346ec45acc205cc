//! One request through named phases, each a small function that lets the
//! request go on or refuses it: route → admit (blocks, addresses) → authorize
//! (identity) → limit (rate, headers, size, concurrency) → transform (headers,
//! WS-Security) → forward → respond → log (`record`). Nothing else decides an
//! outcome.
//!
//! A phase decided from headers alone never reads the body: a client that
//! sent `Expect: 100-continue` is refused without a `100 Continue`, and any
//! other HTTP/1.1 body is drained for a bounded time so the client can read
//! the reply (nginx's lingering close).

use super::body::{self, BodyStats, End, Finish, Limited, Tracked};
use super::conn::ConnCtx;
use super::credentials;
use super::headers::{self, ForwardContext};
use super::record::Record;
use super::reply;
use super::wssec;
use crate::admission::concurrency::Slot;
use crate::admission::rate::Key;
use crate::refusal::{Reason, Refusal};
use crate::runtime::authz::Denied;
use crate::runtime::route::{self, Limit, Route};
use crate::runtime::upstream::ProxyBody;
use crate::runtime::wssec_stage::Recorded;
use http::{header, HeaderMap, HeaderValue, Request, Response, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the route phase sent a request.
struct Routed {
    route: Arc<Route>,
    /// Normalised: what matched, and what the upstream receives.
    path: String,
    /// The host the client addressed, as sent (for `X-Forwarded-Host`).
    host: Option<String>,
    /// Whom the upstream's brokered token is for, on a route with one.
    principal: Option<String>,
}

/// The upstream's answer and what the exchange still holds.
struct Upstreamed {
    resp: Response<ProxyBody>,
    route: Arc<Route>,
}

pub async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<Tracked>, Infallible> {
    let request_id = req
        .headers()
        .get(&ctx.rt.headers.request_id)
        .and_then(headers::well_formed_request_id)
        .map(str::to_owned)
        .unwrap_or_else(crate::hex::random_id);
    let mut rec = Record::new(
        ctx.clone(),
        request_id,
        req.method().clone(),
        req.uri().path(),
    );
    let soap_request = reply::flavor(false, req.headers());
    let outcome = run(&ctx, &mut rec, req).await;
    Ok(respond(&ctx, rec, outcome, soap_request))
}

/// The phases in order.
async fn run(
    ctx: &ConnCtx,
    rec: &mut Record,
    req: Request<Incoming>,
) -> Result<Upstreamed, Refusal> {
    let mut routed = match route_phase(ctx, &req) {
        Ok(r) => r,
        Err(refusal) => return Err(dispose(req, refusal)),
    };
    rec.route = Some(routed.route.clone());
    let route = routed.route.clone();
    let early = match admit(ctx, &route) {
        Ok(()) => authorize(ctx, &route).await,
        Err(r) => Err(r),
    };
    let early = early.and_then(|()| {
        routed.principal = credentials::principal(ctx, &route)?;
        Ok(())
    });
    let early = match early {
        Ok(()) => limit(ctx, &route, &req).await,
        Err(r) => Err(r),
    };
    if let Err(refusal) = early {
        return Err(dispose(req, refusal));
    }
    match route.gate.acquire().await {
        Ok(slot) => rec.slots.push(slot),
        Err(_) => {
            let busy = Refusal::new(Reason::RouteBusy).retry_after(route.gate.retry_after_secs());
            return Err(dispose(req, busy));
        }
    }
    let carried = match credentials::token(ctx, &route, routed.principal.as_deref()).await {
        Ok(c) => c,
        Err(refusal) => return Err(dispose(req, refusal)),
    };
    let deadline = route
        .max_duration
        .map(|d| tokio::time::Instant::from_std(rec.start + d));
    let (upstream_req, undelivered, resend) =
        transform(ctx, rec, &routed, carried.as_ref(), req).await?;
    let (resp, mut slot) = forward(rec, &route, upstream_req, undelivered, deadline).await?;
    let mut resp = resp.map(body::boxed);
    if let Some(carried) = &carried {
        (resp, slot) =
            retry_refused(ctx, rec, &route, carried, resend, (resp, slot), deadline).await?;
    }
    // Held until the answer has been passed on.
    rec.slots.push(slot);
    let resp = match &route.wssec_response {
        Some(stage) => wssec::response(ctx, &route, stage, resp, deadline).await?,
        None => resp,
    };
    Ok(Upstreamed { resp, route })
}

/// A token the upstream refused: forgotten, and the request sent once more
/// with a new one when its whole body is at hand.
async fn retry_refused(
    ctx: &ConnCtx,
    rec: &mut Record,
    route: &Route,
    carried: &credentials::Carried,
    resend: Option<credentials::Resend>,
    (resp, slot): (Response<ProxyBody>, Slot),
    deadline: Option<tokio::time::Instant>,
) -> Result<(Response<ProxyBody>, Slot), Refusal> {
    let Some(c) = &route.credentials else {
        return Ok((resp, slot));
    };
    let soap_call = resend.as_ref().is_some_and(|r| r.soap_call(route));
    let (resp, refused) =
        credentials::refused(ctx, route, c, carried, resp, soap_call, deadline).await?;
    let Some(resend) = resend.filter(|_| refused) else {
        return Ok((resp, slot));
    };
    let Some((req, _held)) = credentials::again(ctx, route, carried, resend).await else {
        return Ok((resp, slot));
    };
    // The first attempt's answer and upstream slot go before the second.
    drop(resp);
    drop(slot);
    let (resp, slot) = forward(rec, route, req, Recorded::none(), deadline).await?;
    Ok((resp.map(body::boxed), slot))
}

/// Disposes of the body of a request refused before it was read: a client
/// waiting for `100 Continue` gets none (the body is never asked for), an
/// HTTP/1.1 upload in progress is drained for a bounded time.
fn dispose(req: Request<Incoming>, refusal: Refusal) -> Refusal {
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if req.version() == Version::HTTP_11 && !expects_continue {
        body::linger(req.into_body());
    }
    refusal
}

// ---------- route ----------

fn route_phase(ctx: &ConnCtx, req: &Request<Incoming>) -> Result<Routed, Refusal> {
    let path = crate::path::normalize(req.uri().path()).map_err(|_| Reason::BadPath)?;
    let host = request_host(req)?;
    let h = req.headers();
    if route::ambiguous_soap_action(h) {
        return Err(Reason::AmbiguousSoapAction.into());
    }
    if h.contains_key(header::CONNECTION) && connection_names_routing_header(ctx, h) {
        return Err(Reason::ConnectionNamesRoutingHeader.into());
    }
    let bare = host
        .as_deref()
        .map(host_without_port)
        .map(str::to_ascii_lowercase);
    let route_path = crate::path::without_params(&path);
    let action = route::soap_action(h);
    let route = ctx
        .listener
        .routes
        .select(bare.as_deref(), req.method(), &route_path, action)
        .cloned()
        .ok_or(Reason::NoRoute)?;
    Ok(Routed {
        route,
        path,
        host,
        principal: None,
    })
}

/// The host the client addressed: the request target's authority (absolute
/// form in HTTP/1.1, `:authority` in HTTP/2) takes precedence over `Host`
/// (RFC 9112 §3.2.2); two hosts that disagree, or two `Host` headers, are refused.
fn request_host<B>(req: &Request<B>) -> Result<Option<String>, Refusal> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(Reason::HostMismatch.into());
    }
    let header = header
        .map(|v| v.to_str().map_err(|_| Refusal::new(Reason::BadRequest)))
        .transpose()?;
    match (req.uri().authority().map(|a| a.as_str()), header) {
        (Some(a), _) if a.contains('@') => Err(Reason::HostMismatch.into()),
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h.trim()) => Err(Reason::HostMismatch.into()),
        (Some(a), _) => Ok(Some(a.to_owned())),
        (None, h) => Ok(h.map(|h| h.trim().to_owned())),
    }
}

fn host_without_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_inclusive(']').next().unwrap_or(h);
    }
    h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
}

/// `Connection` may name headers to drop before forwarding, but not one that
/// routing, framing or identity was decided on: stripping it would forward a
/// request other than the one the gateway judged.
fn connection_names_routing_header(ctx: &ConnCtx, h: &HeaderMap) -> bool {
    let hdrs = &ctx.rt.headers;
    headers::connection_named(h).iter().any(|n| {
        crate::hygiene::ROUTING.contains(&n.as_str())
            || *n == hdrs.identity
            || *n == hdrs.request_id
    })
}

// ---------- admit, authorize, limit ----------

/// Blocks this process holds (imposed while this connection was already
/// open apply to it too; the shared store is asked in `limit`) and the
/// route's address allowlist.
fn admit(ctx: &ConnCtx, route: &Route) -> Result<(), Refusal> {
    let ip = ctx.peer.ip();
    if let Some(b) = &ctx.rt.blocker {
        if b.held(ip, ctx.block_identity.as_ref()) {
            return Err(Reason::Blocked.into());
        }
    }
    if !route.allow_ips.admits(ip) {
        return Err(Reason::IpNotAllowed.into());
    }
    Ok(())
}

/// The route's identity rules; a denial counts towards blocking (and is
/// `blocked` when the shared store already holds a block on the client).
async fn authorize(ctx: &ConnCtx, route: &Route) -> Result<(), Refusal> {
    let Err(d) = route.authz.authorize(ctx.identity.as_deref()) else {
        return Ok(());
    };
    let reason = match d {
        Denied::Anonymous => Reason::NoClientIdentity,
        Denied::NotAllowed => Reason::IdentityNotAllowed,
    };
    if let Some(b) = &ctx.rt.blocker {
        let fp = ctx.identity.as_deref().map(|i| i.fingerprint);
        if b.failed(ctx.peer.ip(), fp, reason.as_str()).await {
            return Err(Reason::Blocked.into());
        }
    }
    Err(reason.into())
}

/// Rate limits, header count and the declared body size.
async fn limit<B>(ctx: &ConnCtx, route: &Route, req: &Request<B>) -> Result<(), Refusal> {
    let wait = match ctx.rt.store() {
        Some(store) if !route.limits.is_empty() || ctx.rt.blocker.is_some() => {
            shared_admission(ctx, route, store).await?
        }
        _ => local_limits(ctx, route),
    };
    if let Some(wait) = wait {
        let secs = crate::admission::rate::retry_after_secs(wait);
        return Err(Refusal::new(Reason::RateLimited).retry_after(secs));
    }
    if req.headers().len() > ctx.rt.limits.max_headers {
        return Err(Reason::TooManyHeaders.into());
    }
    let declared = headers::declared_length(req.headers());
    if declared.is_some_and(|n| n > route.max_body.max(route.max_streamed)) {
        return Err(Reason::BodyTooLarge.into());
    }
    Ok(())
}

/// The route's limits in this process: how long to wait, when one refuses.
fn local_limits(ctx: &ConnCtx, route: &Route) -> Option<std::time::Duration> {
    route.limits.iter().find_map(|l| {
        let verdict = match l {
            // Anonymous callers are keyed by address (see ConnCtx::client_key).
            Limit::Client(r) => r.check(&ctx.client_key),
            Limit::Ip(r) => r.check(&Key::ip(ctx.peer.ip())),
            Limit::One(r) => r.check(),
        };
        verdict.err()
    })
}

/// The client's blocks and the route's limits in the shared store, in one
/// round trip; while it does not answer, blocks are this process's (already
/// checked in `admit`) and limits as `on_failure.rate` says.
async fn shared_admission(
    ctx: &ConnCtx,
    route: &Route,
    store: &crate::store::RedisStore,
) -> Result<Option<std::time::Duration>, Refusal> {
    use crate::store::rate::{Bucket, Verdict};
    use crate::store::Blocks;
    let lookups = match &ctx.rt.blocker {
        Some(_) => Blocks::lookups(ctx.peer.ip(), ctx.block_identity.as_ref()),
        None => Vec::new(),
    };
    let block_keys: Vec<String> = lookups.iter().map(|w| Blocks::key(store, w)).collect();
    let buckets: Vec<Bucket<'_>> = route
        .limits
        .iter()
        .map(|l| match l {
            Limit::Client(r) => Bucket {
                id: &r.id,
                key: Some(ctx.client_key),
                gcra: r.gcra(),
            },
            Limit::Ip(r) => Bucket {
                id: &r.id,
                key: Some(Key::ip(ctx.peer.ip())),
                gcra: r.gcra(),
            },
            Limit::One(r) => Bucket {
                id: &r.id,
                key: None,
                gcra: r.gcra(),
            },
        })
        .collect();
    match crate::store::rate::check(store, &block_keys, &buckets).await {
        Ok(Verdict::Admit) => Ok(None),
        Ok(Verdict::Wait(wait)) => Ok(Some(wait)),
        Ok(Verdict::Blocked(i, block)) => {
            if let (Some(b), Some(who)) = (&ctx.rt.blocker, lookups.get(i)) {
                b.met(*who, &block);
            }
            Err(Reason::Blocked.into())
        }
        Err(_) if buckets.is_empty() => {
            store.count("block", "fallback");
            Ok(None)
        }
        Err(_) => match store.settings().rate_failure {
            crate::config::RateFailure::Local => {
                store.count("rate", "fallback");
                Ok(local_limits(ctx, route))
            }
            crate::config::RateFailure::FailOpen => {
                store.count("rate", "fail_open");
                Ok(None)
            }
            crate::config::RateFailure::FailClosed => {
                store.count("rate", "fail_closed");
                Err(Reason::RateStoreUnavailable.into())
            }
        },
    }
}

// ---------- transform ----------

/// The request as the upstream receives it: its URI and headers rewritten,
/// its body streamed under the route's bounds — or buffered and verified on a
/// WS-Security route, and given its SessionHeader on a Salesforce SOAP
/// route. Returns the replay keys a verified message recorded, and, for a
/// brokered token, what it takes to send the request again (when its whole
/// body is at hand).
async fn transform(
    ctx: &ConnCtx,
    rec: &mut Record,
    routed: &Routed,
    carried: Option<&credentials::Carried>,
    req: Request<Incoming>,
) -> Result<(Request<ProxyBody>, Recorded, Option<credentials::Resend>), Refusal> {
    let route = &routed.route;
    let up = &route.upstream;
    let (mut parts, body) = req.into_parts();
    parts.uri = up
        .uri_for(&routed.path, parts.uri.query())
        .map_err(|_| Reason::BadRequest)?;
    parts.version = Version::HTTP_11;
    let hdrs = &ctx.rt.headers;
    let request_id =
        HeaderValue::from_str(&rec.request_id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    headers::prepare_upstream(
        &mut parts.headers,
        &ForwardContext {
            peer_ip: &ctx.peer_value,
            original_host: routed.host.as_deref(),
            request_id: &request_id,
            request_id_header: &hdrs.request_id,
            identity_header: &hdrs.identity,
            identity: ctx.identity_value.as_ref(),
        },
    );
    let upstream_host = if up.preserve_host {
        routed
            .host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
    } else {
        up.host_value.clone()
    };
    match upstream_host {
        Some(h) => {
            parts.headers.insert(header::HOST, h);
        }
        None => {
            parts.headers.remove(header::HOST);
        }
    }
    let session = credentials::session_for(route, parts.uri.path());
    // Only a body held whole (or none) can be sent again with a new token.
    let held = route.wssec_request.is_some() || session.is_some() || body.is_end_stream();
    let resend = carried
        .filter(|_| held)
        .map(|_| credentials::Resend::head(&parts));
    if let Some(c) = &route.credentials {
        credentials::apply(c, session.is_some(), carried, &mut parts)?;
    }
    let stats = rec.stats.clone();
    if route.wssec_response.is_some() || session.is_some() {
        // The answer is verified, signed or read for a fault as sent: it
        // must come unencoded.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let mut buffered = None;
    let mut tail = None;
    let (output, undelivered) = match (&route.wssec_request, session) {
        (None, None) if carried.is_none() || !body.is_end_stream() => {
            let own = route
                .credentials
                .as_ref()
                .and_then(|c| c.own_header.clone());
            let limited = Limited::new(body, route.max_body, route.body_idle_timeout, stats)
                .scrubbing(&hdrs.identity)
                .scrubbing_also(own);
            return Ok((
                Request::from_parts(parts, limited.boxed_unsync()),
                Recorded::none(),
                None,
            ));
        }
        // No body: a request that can be sent again as it is.
        (None, None) => (bytes::Bytes::new(), Recorded::none()),
        (Some(stage), _) => {
            let passed = wssec::request(ctx, route, stage, &parts.headers, body, &stats).await?;
            tail = passed.tail;
            let done = passed.done;
            rec.signer = done.signer.as_ref().map(|s| s.subject.to_string());
            (done.output.into(), done.replay_keys)
        }
        (None, Some(session)) => {
            let (msg, permit) =
                credentials::read_soap(route, session, &parts.headers, body, &stats).await?;
            buffered = Some(permit);
            (msg, Recorded::none())
        }
    };
    if route.wssec_request.is_some() || session.is_some() {
        // The body lost or gained a Security header or a SessionHeader: its
        // length and digests were the old one's.
        super::headers::body_replaced(&mut parts.headers);
    }
    if let Some((rest, len)) = tail {
        // Streamed: the verified head, then the rest from the spool (which
        // marks the body done when it ends, so the upstream's time to answer
        // counts from then). Too large to hold, it is never sent again.
        let total = output.len() as u64 + len;
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        let body = body::watched(body::prefixed(output, Some(rest)), stats);
        return Ok((Request::from_parts(parts, body), undelivered, None));
    }
    stats.mark_done();
    // Sent again, the message is spliced anew with the new token.
    let resend = resend.map(|r| r.with_body(output.clone(), buffered));
    let output = match (&route.credentials, session) {
        (Some(c), Some(s)) => credentials::splice(c, s, carried, parts.uri.path(), output).await?,
        _ => output,
    };
    Ok((
        Request::from_parts(parts, body::full(output)),
        undelivered,
        resend,
    ))
}

// ---------- forward ----------

/// Sends the request upstream within its bounds: the upstream's concurrency
/// ceiling, connect (TCP and TLS) within `connect_timeout`, an upload that
/// keeps moving (the body idle timeout, both ways), response headers within
/// `request_timeout` of the end of the body, all within the route's deadline.
async fn forward(
    rec: &mut Record,
    route: &Route,
    req: Request<ProxyBody>,
    mut undelivered: Recorded,
    deadline: Option<tokio::time::Instant>,
) -> Result<(Response<Incoming>, Slot), Refusal> {
    let up = &route.upstream;
    let slot: Slot = match up.gate.acquire().await {
        Ok(s) => s,
        // Dropping `undelivered` forgets the message: it never left.
        Err(_) => {
            return Err(Refusal::new(Reason::UpstreamBusy).retry_after(up.gate.retry_after_secs()))
        }
    };
    let stats = rec.stats.clone();
    let t0 = Instant::now();
    let sending = up.client().request(req);
    tokio::pin!(sending);
    let idle = route.body_idle_timeout;
    let mut body_done_at: Option<Instant> = stats.is_done().then_some(t0);
    let result = loop {
        let now = Instant::now();
        if body_done_at.is_none() && stats.is_done() {
            body_done_at = Some(now);
        }
        // The next moment something could be late.
        let wait = match body_done_at {
            Some(done) => (done + up.request_timeout).saturating_duration_since(now),
            None => idle
                .saturating_sub(stats.since_asked())
                .max(Duration::from_millis(50)),
        };
        let wake = tokio::time::Instant::now() + wait;
        let wake = deadline.map_or(wake, |d| d.min(wake));
        tokio::select! {
            r = &mut sending => break r,
            _ = stats.finished.notified(), if body_done_at.is_none() => {}
            _ = tokio::time::sleep_until(wake) => {
                // Past these points the upstream may have the request.
                if stats.asked() {
                    undelivered.sent();
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    up.duration.observe(t0.elapsed().as_secs_f64());
                    return Err(Reason::MaxDuration.into());
                }
                match body_done_at {
                    Some(done) if done.elapsed() >= up.request_timeout => {
                        up.duration.observe(t0.elapsed().as_secs_f64());
                        return Err(Reason::UpstreamTimeout.into());
                    }
                    None if stats.upstream_stalled(idle) => {
                        up.duration.observe(t0.elapsed().as_secs_f64());
                        return Err(Reason::UpstreamStalled.into());
                    }
                    _ => {}
                }
            }
        }
    };
    let upstream_time = t0.elapsed();
    up.duration.observe(upstream_time.as_secs_f64());
    rec.upstream_time = Some(upstream_time);
    match result {
        Ok(resp) => {
            undelivered.sent();
            Ok((resp, slot))
        }
        Err(e) => {
            // A message that failed to connect never left; any other failure
            // may have reached the upstream, so it stays remembered.
            if !e.is_connect() {
                undelivered.sent();
            }
            Err(classify(&e, &stats))
        }
    }
}

/// Names what went wrong talking to the upstream.
fn classify(e: &hyper_util::client::legacy::Error, stats: &BodyStats) -> Refusal {
    if let Some(cut) = body::Cut::find(e) {
        return cut.reason().into();
    }
    if stats.too_large.load(Ordering::Relaxed) {
        return Reason::BodyTooLarge.into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut timed_out = false;
    let mut tls = false;
    let mut client_body = false;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            tls |= io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>());
        }
        tls |= s.is::<rustls::Error>();
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            client_body |= h.is_body_write_aborted() || h.is_user();
        }
        source = s.source();
    }
    let reason = if e.is_connect() {
        if timed_out {
            Reason::UpstreamConnectTimeout
        } else if tls {
            Reason::UpstreamTls
        } else {
            Reason::UpstreamUnreachable
        }
    } else if client_body {
        Reason::ClientBodyError
    } else {
        Reason::UpstreamError
    };
    reason.into()
}

// ---------- respond ----------

/// The response the client receives: the upstream's (its body bounded by the
/// route's idle timeout and deadline, and watched for a client that stops
/// reading), or the gateway's own reply.
fn respond(
    ctx: &Arc<ConnCtx>,
    mut rec: Record,
    outcome: Result<Upstreamed, Refusal>,
    flavor_hint: reply::Flavor,
) -> Response<Tracked> {
    let request_id = HeaderValue::from_str(&rec.request_id).ok();
    let (mut resp, timers) = match outcome {
        Ok(u) => {
            rec.reason = None;
            let (mut parts, body) = u.resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, false);
            // Only the gateway says it refused.
            parts.headers.remove(reply::REFUSAL_HEADER);
            let deadline = u
                .route
                .max_duration
                .map(|d| tokio::time::Instant::from_std(rec.start + d));
            (
                Response::from_parts(parts, body),
                Some((u.route.body_idle_timeout, deadline)),
            )
        }
        Err(refusal) => {
            let counters = match &rec.route {
                Some(r) => &r.counters,
                None => &ctx.rt.unrouted,
            };
            counters.rejections.inc(
                refusal.kind.index(),
                &[refusal.kind.stage().as_str(), refusal.kind.as_str()],
            );
            rec.reason = Some(refusal.kind);
            let flavor = match (&rec.route, flavor_hint) {
                (Some(r), reply::Flavor::Problem) if r.soap => reply::Flavor::Soap11,
                (_, f) => f,
            };
            let mut reply = reply::render(&refusal, flavor, &rec.request_id);
            // A HEAD answer has no body; over HTTP/2 one would be a
            // protocol error (HTTP/1.1 drops it by itself).
            if rec.method == http::Method::HEAD {
                *reply.body_mut() = body::full(Vec::new());
            }
            (reply, None)
        }
    };
    if let Some(v) = request_id {
        resp.headers_mut()
            .insert(ctx.rt.headers.request_id.clone(), v);
    }
    rec.status = resp.status().as_u16();
    let finish: Finish = Box::new(move |bytes_out, end: End| {
        rec.ended(bytes_out, end);
        drop(rec);
    });
    match timers {
        Some((idle, deadline)) => {
            let clock = ctx.activity.watch(idle);
            resp.map(|b| Tracked::streamed(b, finish, idle, deadline, clock))
        }
        None => resp.map(|b| Tracked::new(b, finish)),
    }
}
