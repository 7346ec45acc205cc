//! The log phase: one request's access-log line and metrics, written exactly
//! once — when the response body ends, is cut, or is dropped because the
//! client went away (then as 499 `client_cancelled`).

use super::body::End;
use super::conn::ConnCtx;
use crate::admission::concurrency::Slot;
use crate::refusal::{Kind, Reason};
use crate::runtime::route::{Outcome, Route, RouteCounters};
use crate::tls::identity::PeerIdentity;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Record {
    pub ctx: Arc<ConnCtx>,
    pub start: Instant,
    pub request_id: String,
    pub method: http::Method,
    /// As the client sent it (query excluded: it may carry secrets).
    pub path: String,
    pub route: Option<Arc<Route>>,
    pub status: u16,
    /// Why the gateway answered itself, or ended the exchange.
    pub reason: Option<Kind>,
    pub upstream_time: Option<Duration>,
    /// Subject of the verified WS-Security signer, when the route verified one.
    pub signer: Option<String>,
    pub stats: Arc<super::body::BodyStats>,
    /// Concurrency slots, given back when the record is written.
    pub slots: Vec<Slot>,
    pub bytes_out: u64,
    pub complete: bool,
}

/// nginx's code for "the client closed the request before the response".
const CLIENT_CLOSED: u16 = 499;

impl Record {
    pub fn new(ctx: Arc<ConnCtx>, request_id: String, method: http::Method, path: &str) -> Record {
        ctx.activity.begin();
        Record {
            ctx,
            start: Instant::now(),
            request_id,
            method,
            path: path.to_owned(),
            route: None,
            status: CLIENT_CLOSED,
            reason: Some(Kind::Proxy(Reason::ClientCancelled)),
            upstream_time: None,
            signer: None,
            stats: Arc::new(super::body::BodyStats::new()),
            slots: Vec::new(),
            bytes_out: 0,
            complete: false,
        }
    }

    /// Notes how the response body ended.
    pub fn ended(&mut self, bytes_out: u64, end: End) {
        self.bytes_out = bytes_out;
        self.complete = end == End::Complete;
        match end {
            End::Complete => {}
            End::ClientGone if self.reason.is_none() => {
                self.reason = Some(Kind::Proxy(Reason::ClientCancelled));
            }
            End::ClientGone => {}
            End::Cut(r) => {
                self.reason = Some(Kind::Proxy(r));
                // Cut mid-stream: the response was already under way, so this is
                // its only count as a refusal.
                self.counters()
                    .rejections
                    .inc(Kind::Proxy(r).index(), &[r.stage().as_str(), r.as_str()]);
            }
        }
    }

    fn counters(&self) -> &RouteCounters {
        match &self.route {
            Some(r) => &r.counters,
            None => &self.ctx.rt.unrouted,
        }
    }

    fn outcome(&self) -> Outcome {
        use Reason as R;
        match self.reason {
            None if self.status >= 500 => Outcome::UpstreamError,
            None => Outcome::Ok,
            Some(Kind::Proxy(R::ClientCancelled | R::ClientStalled)) => Outcome::Cancelled,
            // A WS-Security fault is a refusal, though SOAP 1.1 sends it as a 500.
            Some(Kind::Wssec(w)) if !w.gateway_side() => Outcome::Refused,
            Some(Kind::Wssec(_)) => Outcome::Failed,
            Some(Kind::Proxy(r)) if r.stage() == crate::refusal::Stage::Upstream => Outcome::Failed,
            Some(Kind::Proxy(R::MaxDuration)) => Outcome::Failed,
            Some(_) if self.status >= 500 => Outcome::Failed,
            Some(_) => Outcome::Refused,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.slots.clear();
        self.ctx.activity.end();
        let elapsed = self.start.elapsed();
        let outcome = self.outcome();
        let counters = self.counters();
        counters.count(self.status, outcome);
        counters.duration.observe(elapsed.as_secs_f64());
        counters
            .request_body
            .observe(self.stats.bytes.load(Ordering::Relaxed) as f64);
        counters.response_body.observe(self.bytes_out as f64);
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
            client_fingerprint = %ctx.fingerprint_text,
            route = self.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
            method = %self.method,
            path = %self.path,
            status = self.status,
            outcome = outcome.label(),
            reason = self.reason.map(Kind::as_str).unwrap_or("-"),
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
