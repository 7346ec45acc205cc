//! The per-request stages: route, identity, limits, header hygiene, upstream,
//! and one access-log line with metrics when the response is done.

use super::body::{BodyStats, Finish, Limited, Tracked};
use super::headers::{self, Forwarded};
use super::reply::{self, refusals, Refusal};
use super::server::Activity;
use crate::admission::concurrency::Slot;
use crate::admission::rate::{retry_after_secs, Key};
use crate::config::RateKey;
use crate::runtime::route::{Denied, Outcome, Route};
use crate::runtime::upstream::ProxyBody;
use crate::runtime::wssec_stage::VerifyStage;
use crate::runtime::{Listener, Runtime};
use crate::tls::identity::PeerIdentity;
use crate::wssec::replay::ReplayCache;
use crate::wssec::verify::{self, Verified};
use http::{header, HeaderValue, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;
use std::time::{Duration, Instant};

/// What every request on one connection shares.
pub struct ConnCtx {
    pub rt: Arc<Runtime>,
    pub listener: Arc<Listener>,
    pub peer: SocketAddr,
    pub identity: Option<Arc<PeerIdentity>>,
    /// The identity header value, rendered once per connection.
    pub identity_value: Option<HeaderValue>,
    /// The identity as a rate-limit key, computed once.
    pub client_key: Key,
    /// The identity as a block key, computed once (blocks are checked per request).
    pub block_identity: Option<crate::admission::block::Who>,
    pub activity: Arc<Activity>,
}

/// The result of forwarding: a response, or a refusal to render.
struct Forwarded200 {
    resp: Response<ProxyBody>,
    /// The route's and the upstream's concurrency slots, held until the response ends.
    slots: (Slot, Slot),
    upstream_time: Duration,
    /// Subject of the verified WS-Security signer, when the route verified one.
    signer: Option<String>,
}

pub async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<Tracked>, Infallible> {
    let request_id = req
        .headers()
        .get(&ctx.rt.request_id_header)
        .and_then(headers::well_formed_request_id)
        .map(str::to_owned)
        .unwrap_or_else(headers::new_request_id);
    // Written when the response ends, or right away if the client goes first.
    let mut rec = Record::new(
        ctx.clone(),
        request_id,
        req.method().clone(),
        req.uri().path(),
    );
    let host = request_host(&req);
    let normalized = super::path::normalize(req.uri().path());
    let route = match &normalized {
        Err(_) => None,
        Ok(path) => ctx
            .listener
            .routes
            .iter()
            .find(|r| {
                r.matches(
                    host.as_deref().map(host_without_port),
                    req.method(),
                    path,
                    req.headers(),
                )
            })
            .cloned(),
    };
    rec.route = route.clone();
    let flavor = reply::flavor(route.as_ref().is_some_and(|r| r.soap), req.headers());

    let outcome = match (&route, normalized) {
        (_, Err(_)) => {
            super::body::linger(req.into_body());
            Err(refusals::BAD_PATH)
        }
        (_, Ok(_)) if crate::runtime::route::ambiguous_soap_action(req.headers()) => {
            super::body::linger(req.into_body());
            Err(refusals::AMBIGUOUS_SOAP_ACTION)
        }
        (None, Ok(_)) => {
            super::body::linger(req.into_body());
            Err(refusals::NO_ROUTE)
        }
        (Some(r), Ok(path)) => {
            forward(
                &ctx,
                r,
                req,
                &rec.request_id,
                &path,
                host.as_deref(),
                rec.stats.clone(),
            )
            .await
        }
    };
    let mut resp = match outcome {
        Ok(f) => {
            rec.slots = Some(f.slots);
            rec.upstream_time = Some(f.upstream_time);
            rec.signer = f.signer;
            rec.reason = None;
            f.resp
        }
        Err(refusal) => {
            let route_name = route.as_ref().map(|r| r.name.as_str()).unwrap_or("none");
            ctx.rt
                .metrics
                .rejections
                .with_label_values(&[route_name, refusal.stage, refusal.reason])
                .inc();
            rec.reason = Some(refusal.reason);
            rec.stage = Some(refusal.stage);
            reply::render(&refusal, flavor, &rec.request_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&rec.request_id) {
        resp.headers_mut()
            .insert(ctx.rt.request_id_header.clone(), v);
    }
    rec.status = resp.status().as_u16();
    let finish: Finish = Box::new(move |bytes_out, complete| {
        rec.bytes_out = bytes_out;
        rec.complete = complete;
        drop(rec);
    });
    Ok(resp.map(|b| Tracked::new(b, finish)))
}

/// One request's access-log line and metrics, written exactly once: when the
/// response body ends or fails, or when hyper drops the request because the
/// client went away first (then as 499 `client_cancelled`).
struct Record {
    ctx: Arc<ConnCtx>,
    start: Instant,
    request_id: String,
    method: http::Method,
    /// As the client sent it (query excluded: it may carry secrets).
    path: String,
    route: Option<Arc<Route>>,
    status: u16,
    /// Set when the gateway itself answered.
    reason: Option<&'static str>,
    stage: Option<&'static str>,
    upstream_time: Option<Duration>,
    signer: Option<String>,
    stats: Arc<BodyStats>,
    /// Concurrency slots, given back when the record is written.
    slots: Option<(Slot, Slot)>,
    bytes_out: u64,
    complete: bool,
}

/// Nginx's code for "the client closed the request before the response".
const CLIENT_CLOSED: u16 = 499;

impl Record {
    fn new(ctx: Arc<ConnCtx>, request_id: String, method: http::Method, path: &str) -> Record {
        ctx.activity.begin();
        Record {
            ctx,
            start: Instant::now(),
            request_id,
            method,
            path: path.to_owned(),
            route: None,
            status: CLIENT_CLOSED,
            reason: Some("client_cancelled"),
            stage: None,
            upstream_time: None,
            signer: None,
            stats: Arc::new(BodyStats::default()),
            slots: None,
            bytes_out: 0,
            complete: false,
        }
    }

    fn outcome(&self) -> Outcome {
        match (self.reason, self.status) {
            (Some("client_cancelled"), CLIENT_CLOSED) => Outcome::Cancelled,
            // A WS-Security fault is a refusal, though SOAP 1.1 sends it as a 500.
            (Some(r), _)
                if self.stage == Some("wssec")
                    && r.starts_with("wssec_")
                    && r != "wssec_unavailable" =>
            {
                Outcome::Refused
            }
            (Some(_), s) if s >= 500 => Outcome::Failed,
            (Some(_), _) => Outcome::Refused,
            (None, s) if s >= 500 => Outcome::UpstreamError,
            (None, _) => Outcome::Ok,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.slots.take();
        self.ctx.activity.end();
        let elapsed = self.start.elapsed();
        let outcome = self.outcome();
        match &self.route {
            Some(r) => {
                r.count(self.status, outcome);
                r.duration.observe(elapsed.as_secs_f64());
            }
            None => {
                let class = format!("{}xx", (self.status / 100).clamp(1, 5));
                self.ctx
                    .rt
                    .metrics
                    .requests
                    .with_label_values(&["none", &class, outcome.label()])
                    .inc();
            }
        }
        // Refusals pass a cap so a flood cannot flood the logs; served requests always log.
        let suppressed = match self.reason {
            None => 0,
            Some(_) => match self.ctx.rt.logs.requests.admit() {
                Some(n) => n,
                None => return,
            },
        };
        let ctx = &self.ctx;
        let client = ctx.identity.as_deref().map(PeerIdentity::display_name);
        tracing::info!(
            target: "sealgate::access",
            request_id = %self.request_id,
            listener = %ctx.listener.name,
            peer = %ctx.peer,
            client = client.unwrap_or("-"),
            client_fingerprint = ctx.identity.as_deref().map(|i| i.fingerprint_sha256.as_str()).unwrap_or("-"),
            route = self.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
            method = %self.method,
            path = %self.path,
            status = self.status,
            outcome = outcome.label(),
            reason = self.reason.unwrap_or("-"),
            bytes_in = self.stats.bytes.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
            complete = self.complete,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream_ms = self.upstream_time.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
            signer = self.signer.as_deref().unwrap_or("-"),
            suppressed,
            "request"
        );
    }
}

/// The host the client addressed, without a port: Host header (HTTP/1.1) or :authority (HTTP/2).
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    Some(raw)
}

fn host_without_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_inclusive(']').next().unwrap_or(h);
    }
    h.rsplit_once(':').map(|(a, _)| a).unwrap_or(h)
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    ctx: &ConnCtx,
    route: &Arc<Route>,
    req: Request<Incoming>,
    request_id: &str,
    path: &str,
    host: Option<&str>,
    stats: Arc<BodyStats>,
) -> Result<Forwarded200, Refusal> {
    if let Err(refusal) = admit(ctx, route, &req) {
        // Refused before the body was read: drain it so the client sees the reply.
        super::body::linger(req.into_body());
        return Err(refusal);
    }
    let route_slot = match route.gate.acquire().await {
        Ok(s) => s,
        Err(_) => {
            super::body::linger(req.into_body());
            return Err(Refusal {
                retry_after_secs: Some(route.gate.retry_after_secs()),
                ..refusals::ROUTE_BUSY
            });
        }
    };

    let up = &route.upstream;
    let (mut parts, body) = req.into_parts();
    // The normalised path is the one that matched the route, so it is the one forwarded.
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    parts.uri = up.uri_for(&pq).map_err(|_| refusals::BAD_REQUEST)?;
    parts.version = Version::HTTP_11;
    headers::prepare_upstream(
        &mut parts.headers,
        &Forwarded {
            peer_ip: ctx.peer.ip(),
            original_host: host,
            request_id,
            request_id_header: &ctx.rt.request_id_header,
            identity_header: &ctx.rt.identity_header,
            identity: ctx.identity_value.as_ref(),
        },
    );
    let upstream_host = if up.preserve_host {
        host.and_then(|h| HeaderValue::from_str(h).ok())
    } else {
        HeaderValue::from_str(up.authority.as_str()).ok()
    };
    match upstream_host {
        Some(h) => {
            parts.headers.insert(header::HOST, h);
        }
        None => {
            parts.headers.remove(header::HOST);
        }
    }
    let mut signer = None;
    let mut replay_keys = Vec::new();
    let body = match &route.wssec {
        None => Limited::new(body, route.max_body, stats.clone())
            .stripping(&ctx.rt.identity_header)
            .boxed_unsync(),
        Some(stage) => {
            let verified = verify_request(ctx, route, stage, &parts.headers, body, &stats).await?;
            signer = verified.signer.as_ref().map(|s| s.subject.clone());
            replay_keys = verified.replay_keys.clone();
            // The body may have lost its Security header: the length is the new one's.
            parts.headers.remove(header::CONTENT_LENGTH);
            super::body::full(verified.output)
        }
    };
    let upstream_req = Request::from_parts(parts, body);

    // A verified message that never reaches the upstream was not delivered:
    // its sender's retry must not be refused as a replay.
    let undelivered = || {
        if let Some(stage) = &route.wssec {
            for k in &replay_keys {
                stage.replay.forget(k);
            }
        }
    };
    let slot = match up.gate.acquire().await {
        Ok(s) => s,
        Err(_) => {
            undelivered();
            super::body::linger(upstream_req.into_body());
            return Err(Refusal {
                retry_after_secs: Some(up.gate.retry_after_secs()),
                ..refusals::UPSTREAM_BUSY
            });
        }
    };
    let t0 = Instant::now();
    let result = tokio::time::timeout(up.request_timeout, up.client.request(upstream_req)).await;
    let upstream_time = t0.elapsed();
    up.duration.observe(upstream_time.as_secs_f64());
    let too_large = || stats.too_large.load(Ordering::Relaxed);
    let resp = match result {
        Err(_) if too_large() => return Err(refusals::BODY_TOO_LARGE),
        Err(_) => return Err(refusals::UPSTREAM_TIMEOUT),
        Ok(Err(_)) if too_large() => return Err(refusals::BODY_TOO_LARGE),
        Ok(Err(e)) => {
            let refusal = classify(&e);
            if e.is_connect() {
                undelivered();
            }
            return Err(refusal);
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let body = body.map_err(Into::into).boxed_unsync();
    Ok(Forwarded200 {
        resp: Response::from_parts(parts, body),
        slots: (route_slot, slot),
        upstream_time,
        signer,
    })
}

/// Buffers the body (up to the route's ceiling and within its read timeout),
/// verifies its WS-Security header off the async threads, and checks the signer
/// against the client before the message counts as seen.
async fn verify_request(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Arc<VerifyStage>,
    headers: &http::HeaderMap,
    body: Incoming,
    stats: &Arc<BodyStats>,
) -> Result<Verified, Refusal> {
    // The verifier reads identity-encoded UTF-8; anything else could be read
    // one way here and another way upstream.
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let charset = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| {
            ct.split(';')
                .skip(1)
                .find_map(|p| p.trim().strip_prefix("charset="))
                .map(|c| c.trim_matches('"').to_ascii_lowercase())
        });
    if encoded || charset.is_some_and(|c| c != "utf-8" && c != "utf8") {
        super::body::linger(body);
        return Err(refusals::UNSUPPORTED_ENCODING);
    }
    let Ok(Ok(_permit)) = tokio::time::timeout(
        route.gate.queue_timeout,
        stage.slots.clone().acquire_owned(),
    )
    .await
    else {
        super::body::linger(body);
        return Err(Refusal {
            retry_after_secs: Some(route.gate.retry_after_secs()),
            ..refusals::ROUTE_BUSY
        });
    };
    let collected = tokio::time::timeout(
        stage.read_timeout,
        Limited::new(body, route.max_body, stats.clone()).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) if stats.too_large.load(Ordering::Relaxed) => {
            return Err(refusals::BODY_TOO_LARGE)
        }
        Ok(Err(_)) => return Err(refusals::CLIENT_BODY_ERROR),
        Err(_) => return Err(refusals::BODY_READ_TIMEOUT),
    };
    let job = stage.clone();
    let client = ctx.identity.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let accept = |signer: Option<&crate::wssec::verify::SignerInfo>| {
            job.check_binding(client.as_deref(), signer)
        };
        verify::verify_accepting(
            &bytes,
            &job.policy,
            SystemTime::now(),
            &*job.replay,
            &accept,
        )
    })
    .await;
    let metrics = &ctx.rt.metrics;
    let failed = |reason: &str| {
        metrics
            .wssec_verifications
            .with_label_values(&[route.name.as_str(), "failed", reason])
            .inc();
    };
    match outcome {
        Ok(Ok(v)) => {
            route.wssec_ok.inc();
            Ok(v)
        }
        Ok(Err(e)) => {
            let reason = e.reason();
            failed(reason);
            if ctx.rt.logs.requests.admit().is_some() {
                // The detail (which Reference, which certificate) is for the operator only.
                tracing::warn!(
                    target: "sealgate::wssec",
                    route = %route.name,
                    peer = %ctx.peer,
                    client = ctx.identity.as_deref().map(PeerIdentity::display_name).unwrap_or("-"),
                    reason,
                    detail = %e,
                    "WS-Security verification refused"
                );
            }
            if gateway_side(reason) {
                // Our own limits, not the caller's fault: no block, and a server fault.
                return Err(refusals::WSSEC_UNAVAILABLE);
            }
            super::server::auth_failure(&ctx.rt, ctx.peer.ip(), ctx.identity.as_deref(), reason);
            Err(Refusal::wssec(reason, e.fault_code()))
        }
        Err(_) => {
            failed("wssec_internal");
            Err(refusals::INTERNAL)
        }
    }
}

/// Verification refusals caused by the gateway's own state, not the message.
fn gateway_side(reason: &str) -> bool {
    matches!(
        reason,
        "wssec_replay_cache_full" | "wssec_internal" | "wssec_config"
    )
}

/// The checks made on request headers alone, before any body byte is read:
/// client address, identity, rate, header count, declared body size.
fn admit<B>(ctx: &ConnCtx, route: &Route, req: &Request<B>) -> Result<(), Refusal> {
    let ip = ctx.peer.ip();
    // A block imposed while this connection was already open applies to it too.
    if let Some(b) = &ctx.rt.blocker {
        let id_blocked = ctx.block_identity.as_ref().is_some_and(|w| b.is_blocked(w));
        if id_blocked || b.ip_blocked(ip) {
            return Err(refusals::BLOCKED);
        }
    }
    if !route.allow_ips.admits(ip) {
        return Err(refusals::IP_NOT_ALLOWED);
    }
    if let Err(d) = route.authorize(ctx.identity.as_deref()) {
        super::server::auth_failure(&ctx.rt, ip, ctx.identity.as_deref(), d.reason());
        return Err(match d {
            Denied::Anonymous => refusals::NO_CLIENT_IDENTITY,
            Denied::NotAllowed => refusals::IDENTITY_NOT_ALLOWED,
        });
    }
    for l in &route.limits {
        let key = match l.key {
            // Anonymous callers are keyed by address (see ConnCtx::client_key).
            RateKey::Client => ctx.client_key,
            RateKey::Ip => Key::ip(ip),
            RateKey::Route | RateKey::Global => Key::One,
        };
        if let Err(wait) = l.limit.check(&key) {
            return Err(Refusal {
                retry_after_secs: Some(retry_after_secs(wait)),
                ..refusals::RATE_LIMITED
            });
        }
    }
    if req.headers().len() > ctx.rt.limits.max_headers {
        return Err(refusals::TOO_MANY_HEADERS);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body) {
        return Err(refusals::BODY_TOO_LARGE);
    }
    Ok(())
}

/// Names what went wrong talking to the upstream.
fn classify(e: &hyper_util::client::legacy::Error) -> Refusal {
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
    if e.is_connect() {
        if timed_out {
            refusals::UPSTREAM_CONNECT_TIMEOUT
        } else if tls {
            refusals::UPSTREAM_TLS
        } else {
            refusals::UPSTREAM_UNREACHABLE
        }
    } else if client_body {
        refusals::CLIENT_BODY_ERROR
    } else {
        refusals::UPSTREAM_ERROR
    }
}
