//! The WS-Security part of the transform phase: buffer the body (up to the
//! route's ceiling, within its read and idle timeouts), verify it off the
//! async threads, and check the signer against the client before the message
//! counts as seen.
//!
//! The verification permit belongs to the work, not to the request: it moves
//! into the blocking closure, so a client that resets its stream cannot free
//! the slot while the work runs on. The policy's work limit bounds how long
//! that can be.

use super::conn::ConnCtx;
use crate::refusal::{Reason, Refusal};
use crate::runtime::route::Route;
use crate::runtime::wssec_stage::VerifyStage;
use crate::tls::identity::PeerIdentity;
use crate::wssec::verify::{self, Verified};
use http::{header, HeaderMap};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Refused from headers alone: the body is not asked for when the client
/// waits for `100 Continue`, otherwise drained for a bounded time.
fn refuse_early(headers: &HeaderMap, body: Incoming, reason: Reason) -> Refusal {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        super::body::linger(body);
    }
    Refusal::new(reason)
}

pub async fn request(
    ctx: &ConnCtx,
    route: &Route,
    stage: &Arc<VerifyStage>,
    headers: &HeaderMap,
    body: Incoming,
    stats: &Arc<super::body::BodyStats>,
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
                .map(|c| c.trim_matches('"'))
        });
    let utf8 = |c: &str| c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8");
    if encoded || charset.is_some_and(|c| !utf8(c)) {
        return Err(refuse_early(headers, body, Reason::UnsupportedEncoding));
    }
    let permit = match tokio::time::timeout(
        route.gate.queue_timeout,
        stage.slots.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            let busy = refuse_early(headers, body, Reason::RouteBusy);
            return Err(busy.retry_after(route.gate.retry_after_secs()));
        }
    };
    let limited =
        super::body::Limited::new(body, route.max_body, route.body_idle_timeout, stats.clone());
    let collected = tokio::time::timeout(stage.read_timeout, limited.collect()).await;
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            let reason = match super::body::Cut::find(e.as_ref()) {
                Some(cut) => cut.reason(),
                None if stats.too_large.load(Ordering::Relaxed) => Reason::BodyTooLarge,
                None => Reason::ClientBodyError,
            };
            return Err(reason.into());
        }
        Err(_) => return Err(Reason::BodyReadTimeout.into()),
    };
    let job = stage.clone();
    let client = ctx.identity.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let accept =
            |signer: Option<&verify::SignerInfo>| job.check_binding(client.as_deref(), signer);
        verify::verify_accepting(
            &bytes,
            &job.policy,
            SystemTime::now(),
            &*job.replay,
            &accept,
        )
    })
    .await;
    let counters = &route.counters;
    match outcome {
        Ok(Ok(v)) => {
            counters.wssec_ok.inc();
            Ok(v)
        }
        Ok(Err(e)) => {
            let reason = e.reason();
            counters
                .wssec_failed
                .inc(reason.index(), &[reason.as_str()]);
            if ctx.rt.logs.requests.admit().is_some() {
                // The detail (which Reference, which certificate) is for the operator only.
                tracing::warn!(
                    target: "sealgate::wssec",
                    route = %route.name,
                    peer = %ctx.peer,
                    client = ctx.identity.as_deref().map(PeerIdentity::display_name).unwrap_or("-"),
                    reason = reason.as_str(),
                    detail = %e,
                    "WS-Security verification refused"
                );
            }
            if reason.gateway_side() {
                // Our own limits, not the caller's fault: no block, and a server fault.
                return Err(Reason::WssecUnavailable.into());
            }
            if let Some(b) = &ctx.rt.blocker {
                b.failed(
                    ctx.peer.ip(),
                    ctx.identity.as_deref().map(|i| i.fingerprint),
                    reason.as_str(),
                );
            }
            Err(Refusal::wssec(reason))
        }
        // The work ended without an answer (it panicked).
        Err(_) => {
            let internal = crate::wssec::reason::Reason::Internal;
            counters
                .wssec_failed
                .inc(internal.index(), &[internal.as_str()]);
            Err(Reason::Internal.into())
        }
    }
}
