//! The WS-Security parts of the transform phases. A request is buffered (up
//! to the stage's ceiling, within its read and idle timeouts), verified or
//! signed — a small message on its connection's event loop, a large one on
//! a blocking thread — and, when verified, its signer checked against the
//! client before the message counts as seen. An upstream's answer on a
//! route with a response stage is buffered the same way and verified or
//! signed before any of it reaches the caller; one that fails is replaced
//! by a 502 fault.
//!
//! The work's permit belongs to the work, not to the request: it moves into
//! the work's closure, so a client that resets its stream cannot free the
//! slot while the work runs on. The policy's work limit bounds how long that
//! can be.

use super::conn::ConnCtx;
use crate::refusal::{Reason, Refusal};
use crate::runtime::route::{Route, WssecCounters};
use crate::runtime::upstream::ProxyBody;
use crate::runtime::wssec_stage::{Direction, Processed, Stage, Work};
use crate::tls::identity::PeerIdentity;
use crate::wssec::reason::Reason as WssecReason;
use bytes::Bytes;
use http::{header, HeaderMap, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::OwnedSemaphorePermit;

/// Refused from headers alone: the body is not asked for when the client
/// waits for `100 Continue`, otherwise drained for a bounded time.
fn refuse_early(headers: &HeaderMap, body: Incoming, reason: Reason) -> Refusal {
    if !expects_continue(headers) {
        super::body::linger(body);
    }
    Refusal::new(reason)
}

pub(super) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The body is identity-encoded UTF-8 (or says no charset), said once:
/// anything else could be read one way here and another way by the receiver
/// (a second `Content-Type` with `charset=utf-7`, a `Charset = UTF-16`).
fn readable_as_sent(headers: &HeaderMap) -> bool {
    let single = |h: &header::HeaderName| headers.get_all(h).iter().count() <= 1;
    if !single(&header::CONTENT_TYPE) || !single(&header::CONTENT_ENCODING) {
        return false;
    }
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    let charset = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(ct)) => crate::runtime::route::content_type_param(ct, "charset"),
        Some(Err(_)) => return false,
    };
    let utf8 = |c: &str| c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8");
    !encoded && charset.is_none_or(utf8)
}

/// A message the stage will read, as sent (not compressed, UTF-8: 415
/// otherwise), once it has one of `slots` (503 `route_busy` past the
/// route's queue timeout, the body not asked for). The slot bounds what is
/// buffered or spooled at once; it goes with the message.
pub(super) async fn admit_body(
    route: &Route,
    slots: &Arc<tokio::sync::Semaphore>,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<(OwnedSemaphorePermit, Incoming), Refusal> {
    if !readable_as_sent(headers) {
        return Err(refuse_early(headers, body, Reason::UnsupportedEncoding));
    }
    match tokio::time::timeout(route.gate.queue_timeout, slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => Ok((p, body)),
        _ => {
            let busy = refuse_early(headers, body, Reason::RouteBusy);
            Err(busy.retry_after(route.gate.retry_after_secs()))
        }
    }
}

/// A request body read whole to work on (verify, sign, splice), admitted
/// as [`admit_body`] says, under `limit`, within `read_timeout`.
pub(super) async fn buffer(
    route: &Route,
    slots: &Arc<tokio::sync::Semaphore>,
    headers: &HeaderMap,
    body: Incoming,
    (limit, read_timeout): (u64, std::time::Duration),
    stats: &Arc<super::body::BodyStats>,
) -> Result<(Bytes, OwnedSemaphorePermit), Refusal> {
    let (permit, body) = admit_body(route, slots, headers, body).await?;
    let bytes =
        super::body::read_whole(body, limit, route.body_idle_timeout, read_timeout, stats).await?;
    Ok((bytes, permit))
}

/// A request past its stage: the message to forward, whole, or its part
/// before the Body's content with the rest coming from the spool.
pub struct Passed {
    pub done: Processed,
    /// The rest of a streamed message, and its length.
    pub tail: Option<(ProxyBody, u64)>,
}

pub async fn request(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Arc<Stage>,
    headers: &HeaderMap,
    body: Incoming,
    stats: &Arc<super::body::BodyStats>,
) -> Result<Passed, Refusal> {
    let held = |done| Passed { done, tail: None };
    let outcome = if route.max_streamed > 0 {
        match super::streamed::receive(route, stage, headers, body, stats).await? {
            super::streamed::Received::Whole(bytes, permit) => {
                work(ctx, route, stage, bytes, permit).await.map(held)
            }
            super::streamed::Received::Over(over) => {
                super::streamed::verify(ctx, route, stage, over, stats).await?
            }
        }
    } else {
        let (bytes, permit) = buffer(
            route,
            &stage.slots,
            headers,
            body,
            (route.max_body, stage.read_timeout),
            stats,
        )
        .await?;
        work(ctx, route, stage, bytes, permit).await.map(held)
    };
    let e = match outcome {
        Ok(p) => return Ok(p),
        Err(e) => e,
    };
    let Some(reason) = e else {
        return Err(Reason::Internal.into());
    };
    if reason.gateway_side() {
        // Our own limits or keys, not the caller's fault: no block, a server fault.
        return Err(Reason::WssecUnavailable.into());
    }
    if stage.verifies() {
        if let Some(b) = &ctx.rt.blocker {
            let fp = ctx.identity.as_deref().map(|i| i.fingerprint);
            b.failed(ctx.peer.ip(), fp, reason.as_str()).await;
        }
    }
    Err(Refusal::wssec(reason))
}

/// The upstream's answer through the route's response stage: buffered whole
/// under the stage's ceiling, then verified or signed. Nothing of an answer
/// that fails reaches the caller.
pub async fn response(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Arc<Stage>,
    resp: Response<ProxyBody>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Response<ProxyBody>, Refusal> {
    let failed = match stage.work {
        Work::Verify(_) | Work::Strip { .. } => Reason::WssecResponseRefused,
        Work::Sign(_) => Reason::WssecResponseUnsigned,
    };
    let (mut parts, body) = resp.into_parts();
    if !readable_as_sent(&parts.headers) {
        log_refused(
            ctx,
            route,
            stage,
            "unsupported_encoding",
            &"the answer is compressed or not UTF-8",
        );
        return Err(failed.into());
    }
    let declared = super::headers::declared_length(&parts.headers);
    if declared.is_some_and(|n| n > stage.max_body) {
        return Err(Reason::UpstreamResponseTooLarge.into());
    }
    // Waiting for a slot counts against the read timeout too, and all of
    // it against the route's deadline for the whole exchange.
    let read_by = tokio::time::Instant::now() + stage.read_timeout;
    let until = deadline.map_or(read_by, |d| d.min(read_by));
    let buffered = tokio::time::timeout_at(until, async {
        let permit = stage.slots.clone().acquire_owned().await;
        let limit = usize::try_from(stage.max_body).unwrap_or(usize::MAX);
        let collected = super::body::peek(body, limit).await;
        (permit, collected)
    })
    .await;
    let (permit, bytes) = match buffered {
        Ok((Ok(p), Ok(c))) if !c.over => (p, c.head),
        Ok((_, Ok(_))) => return Err(Reason::UpstreamResponseTooLarge.into()),
        Ok(_) => return Err(Reason::UpstreamError.into()),
        Err(_) if until < read_by => return Err(Reason::MaxDuration.into()),
        Err(_) => return Err(Reason::UpstreamTimeout.into()),
    };
    match work(ctx, route, stage, bytes, permit).await {
        Ok(mut p) => {
            // The answer goes to the caller now: it stays seen.
            p.replay_keys.sent();
            super::headers::body_replaced(&mut parts.headers);
            Ok(Response::from_parts(parts, super::body::full(p.output)))
        }
        Err(None) => Err(Reason::Internal.into()),
        Err(Some(_)) => Err(failed.into()),
    }
}

fn counters<'r>(route: &'r Route, stage: &Stage) -> &'r WssecCounters {
    &route.counters.wssec[stage.direction as usize]
}

/// Runs the stage's work on a buffered message — on this event loop when
/// it is small (`Stage::runs_inline`), else on a blocking thread — counting
/// and logging the outcome. `Err(None)`: the work ended without an answer
/// (it panicked).
async fn work(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Arc<Stage>,
    bytes: Bytes,
    permit: OwnedSemaphorePermit,
) -> Result<Processed, Option<WssecReason>> {
    let (job, len) = (stage.clone(), bytes.len());
    let client = match stage.direction {
        Direction::Request => ctx.identity.clone(),
        Direction::Response => None,
    };
    let run = move || {
        let _permit = permit;
        job.apply(&bytes, SystemTime::now(), client.as_deref())
    };
    let outcome = if stage.runs_inline(len) {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).ok()
    } else {
        tokio::task::spawn_blocking(run).await.ok()
    };
    tally(ctx, route, stage, outcome)
}

/// Counts and logs what the stage's work on one message came to: `None`
/// when the work ended without an answer (it panicked), which gives
/// `Err(None)`.
pub(super) fn tally<T>(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Stage,
    outcome: Option<Result<T, crate::wssec::verify::WssecError>>,
) -> Result<T, Option<WssecReason>> {
    let c = counters(route, stage);
    // Stripping judges nothing: it counts as neither a verification nor a
    // signature (its refusals are in sealgate_rejections_total).
    let (ok, failed) = match stage.work {
        Work::Verify(_) => (Some(&c.verified), Some(&c.verify_failed)),
        Work::Sign(_) => (Some(&c.signed), Some(&c.sign_failed)),
        Work::Strip { .. } => (None, None),
    };
    match outcome {
        Some(Ok(p)) => {
            if let Some(ok) = ok {
                ok.inc();
            }
            Ok(p)
        }
        Some(Err(e)) => {
            let reason = e.reason();
            if let Some(f) = failed {
                f.inc(reason.index(), &[reason.as_str()]);
            }
            log_refused(ctx, route, stage, reason.as_str(), &e);
            Err(Some(reason))
        }
        None => {
            let internal = WssecReason::Internal;
            if let Some(f) = failed {
                f.inc(internal.index(), &[internal.as_str()]);
            }
            Err(None)
        }
    }
}

/// The detail (which Reference, which certificate) is for the operator only.
fn log_refused(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Stage,
    reason: &str,
    detail: &dyn std::fmt::Display,
) {
    if ctx.rt.logs.requests.admit().is_none() {
        return;
    }
    let what = match (&stage.work, stage.direction) {
        (Work::Verify(_), Direction::Request) => "WS-Security verification refused the request",
        (Work::Verify(_), Direction::Response) => {
            "WS-Security verification refused the upstream's answer; the caller gets a 502 fault"
        }
        (Work::Sign(_), Direction::Request) => "WS-Security signing failed for the request",
        (Work::Sign(_), Direction::Response) => {
            "WS-Security signing failed for the upstream's answer; the caller gets a 502 fault"
        }
        (Work::Strip { .. }, Direction::Request) => {
            "the request is not a SOAP envelope its Security header could be removed from"
        }
        (Work::Strip { .. }, Direction::Response) => {
            "the upstream's answer is not a SOAP envelope its Security header could be removed from; the caller gets a 502 fault"
        }
    };
    tracing::warn!(
        target: "sealgate::wssec",
        route = %route.name,
        direction = stage.direction.as_str(),
        peer = %ctx.peer,
        client = ctx.identity.as_deref().map(PeerIdentity::display_name).unwrap_or("-"),
        reason,
        detail = %detail,
        "{what}"
    );
}
