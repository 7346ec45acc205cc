//! Bodies that keep streaming, with the bounds an exchange needs: a byte
//! ceiling and an idle timeout on request bodies, an idle timeout and a
//! deadline on response bodies, and bookkeeping that ends exactly once.
//!
//! A peer that stops *reading* cannot be seen from inside a body (nobody
//! polls it), so each response body also carries a [`StreamClock`] that the
//! connection's watchdog checks (see `conn`).

use super::headers;
use crate::refusal::Reason;
use crate::runtime::upstream::{BoxError, ProxyBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// Why the gateway ended a body mid-stream; found again in error chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    #[error("request body exceeds the route's limit")]
    TooLarge,
    #[error("no body bytes for the idle timeout")]
    Stalled(Reason),
    #[error("the exchange ran past the route's max_duration")]
    MaxDuration,
}

impl Cut {
    pub fn reason(self) -> Reason {
        match self {
            Cut::TooLarge => Reason::BodyTooLarge,
            Cut::Stalled(r) => r,
            Cut::MaxDuration => Reason::MaxDuration,
        }
    }

    /// The `Cut` somewhere in an error's source chain.
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<Cut> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(c) = err.downcast_ref::<Cut>() {
                return Some(*c);
            }
            cur = err.source();
        }
        None
    }
}

/// Milliseconds since `epoch`, for atomics.
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the pipeline learns from a request body as it streams.
#[derive(Debug)]
pub struct BodyStats {
    epoch: Instant,
    pub bytes: AtomicU64,
    /// The ceiling was crossed (an upstream failure is then reported as 413).
    pub too_large: AtomicBool,
    /// The body reached its end (the request is then fully sent).
    done: AtomicBool,
    /// When the upstream side last asked for more (ms since `epoch`;
    /// `u64::MAX` until it first asks).
    last_asked_ms: AtomicU64,
    /// The last ask found no data: the client, not the upstream, is slow.
    waiting_on_client: AtomicBool,
    /// Wakes the forward phase when the body has been sent.
    pub finished: tokio::sync::Notify,
}

impl BodyStats {
    pub fn new() -> BodyStats {
        BodyStats {
            epoch: Instant::now(),
            bytes: AtomicU64::new(0),
            too_large: AtomicBool::new(false),
            done: AtomicBool::new(false),
            last_asked_ms: AtomicU64::new(u64::MAX),
            waiting_on_client: AtomicBool::new(false),
            finished: tokio::sync::Notify::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    pub fn mark_done(&self) {
        if !self.done.swap(true, Ordering::Relaxed) {
            self.finished.notify_one();
        }
    }

    /// The body goes upstream again from another source (the spool, once
    /// the client's has ended): not sent until that ends, nothing asked yet.
    pub fn restart(&self) {
        self.done.store(false, Ordering::Relaxed);
        self.last_asked_ms.store(u64::MAX, Ordering::Relaxed);
        self.waiting_on_client.store(false, Ordering::Relaxed);
    }

    /// The upstream side asks for more of the body now.
    pub fn asking(&self) {
        self.last_asked_ms
            .store(ms_since(self.epoch), Ordering::Relaxed);
    }

    /// What the ask found: nothing yet (`true`) means the sender (the
    /// client, or the spool), not the upstream, is the slow side.
    pub fn waiting(&self, on_sender: bool) {
        self.waiting_on_client.store(on_sender, Ordering::Relaxed);
    }

    /// How long since the upstream side last polled the body for data (zero
    /// before it first does: until then the connect timeout applies).
    pub fn since_asked(&self) -> Duration {
        let last = self.last_asked_ms.load(Ordering::Relaxed);
        if last == u64::MAX {
            return Duration::ZERO;
        }
        Duration::from_millis(ms_since(self.epoch).saturating_sub(last))
    }

    /// The upstream side has asked for the body: the request headers are out.
    pub fn asked(&self) -> bool {
        self.last_asked_ms.load(Ordering::Relaxed) != u64::MAX
    }

    /// The upstream has stopped taking the request body: it asked before,
    /// had what it asked for, and has not asked again for `idle`.
    pub fn upstream_stalled(&self, idle: Duration) -> bool {
        !self.is_done()
            && !self.waiting_on_client.load(Ordering::Relaxed)
            && self.last_asked_ms.load(Ordering::Relaxed) != u64::MAX
            && self.since_asked() >= idle
    }
}

impl Default for BodyStats {
    fn default() -> Self {
        BodyStats::new()
    }
}

/// A request body on its way upstream: counted, capped at `limit`, failed
/// with `client_stalled` when the client sends nothing for `idle`, and with
/// its trailers scrubbed of anything a client may not forge.
pub struct Limited<B> {
    inner: Option<B>,
    limit: u64,
    stats: Arc<BodyStats>,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    identity_header: Option<http::HeaderName>,
    /// A static credential's header, out of trailers too (`-` for `_`).
    own_credential: Option<Arc<str>>,
}

impl<B: Body> Limited<B> {
    pub fn new(inner: B, limit: u64, idle: Duration, stats: Arc<BodyStats>) -> Self {
        if inner.is_end_stream() {
            stats.mark_done();
        }
        Limited {
            inner: Some(inner),
            limit,
            stats,
            idle,
            timer: None,
            identity_header: None,
            own_credential: None,
        }
    }

    /// Trailers lose the identity header (and hop-by-hop and origin claims) too.
    pub fn scrubbing(mut self, identity_header: &http::HeaderName) -> Self {
        self.identity_header = Some(identity_header.clone());
        self
    }

    /// Trailers lose this header (the route's own credential) too.
    /// `name` as `headers::strip_where` compares names (`-` for `_`).
    pub fn scrubbing_also(mut self, name: Option<Arc<str>>) -> Self {
        self.own_credential = name;
        self
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        this.stats.asking();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(Cut::TooLarge))));
        };
        let polled = Pin::new(inner).poll_frame(cx);
        this.stats.waiting(polled.is_pending());
        match polled {
            Poll::Ready(Some(Ok(mut frame))) => {
                this.timer = None;
                if let Some(data) = frame.data_ref() {
                    let n = this
                        .stats
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if n > this.limit {
                        this.stats.too_large.store(true, Ordering::Relaxed);
                        if let Some(rest) = this.inner.take() {
                            linger(rest);
                        }
                        return Poll::Ready(Some(Err(Box::new(Cut::TooLarge))));
                    }
                }
                if let (Some(t), Some(id)) = (frame.trailers_mut(), &this.identity_header) {
                    headers::scrub_trailers(t, id);
                    if let Some(own) = &this.own_credential {
                        headers::strip_where(t, |n| n == &**own);
                    }
                }
                if this.inner.as_ref().is_some_and(|b| b.is_end_stream()) {
                    this.stats.mark_done();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.stats.mark_done();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.inner = None;
                    return Poll::Ready(Some(Err(Box::new(Cut::Stalled(Reason::ClientStalled)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

/// How much of an unwanted request body is read and thrown away, at most.
const LINGER_BYTES: u64 = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(3);

/// Reads and discards the rest of a request body the gateway has refused, for
/// a bounded time and size, as nginx's lingering close does: an HTTP/1.1 client
/// still uploading then reads the error reply instead of a connection reset.
pub fn linger<B>(body: B)
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            let mut n = 0u64;
            while let Some(Ok(f)) = body.frame().await {
                n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                if n > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// How a response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Delivered whole.
    Complete,
    /// The client went away first.
    ClientGone,
    /// The gateway cut it.
    Cut(Reason),
}

/// Called once when a response body ends or is dropped: bytes sent, and how.
pub type Finish = Box<dyn FnOnce(u64, End) + Send>;

/// When a response's client last asked for data; the connection's watchdog
/// ends the exchange when that was longer ago than `idle`.
#[derive(Debug)]
pub struct StreamClock {
    epoch: Instant,
    last_asked_ms: AtomicU64,
    /// The last ask found the upstream with nothing to send: the upstream's
    /// idle timer, not the client, is what counts then.
    waiting_on_upstream: AtomicBool,
    pub idle: Duration,
    stalled: AtomicBool,
}

impl StreamClock {
    pub fn new(epoch: Instant, idle: Duration) -> StreamClock {
        StreamClock {
            epoch,
            last_asked_ms: AtomicU64::new(ms_since(epoch)),
            waiting_on_upstream: AtomicBool::new(false),
            idle,
            stalled: AtomicBool::new(false),
        }
    }

    fn asked(&self) {
        self.last_asked_ms
            .store(ms_since(self.epoch), Ordering::Relaxed);
    }

    /// Time left before this stream counts as stalled (zero: it is; `None`:
    /// it waits on the upstream, not on the client).
    pub fn left(&self) -> Option<Duration> {
        if self.waiting_on_upstream.load(Ordering::Relaxed) {
            return None;
        }
        let since = ms_since(self.epoch).saturating_sub(self.last_asked_ms.load(Ordering::Relaxed));
        Some(self.idle.saturating_sub(Duration::from_millis(since)))
    }

    pub fn mark_stalled(&self) {
        self.stalled.store(true, Ordering::Relaxed);
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    /// The response body handed to hyper: ended with `upstream_stalled` when
    /// the upstream sends nothing for the idle timeout, with `max_duration`
    /// past the route's deadline; runs `finish` exactly once.
    pub struct Tracked {
        #[pin]
        inner: ProxyBody,
        sent: u64,
        finish: Option<Finish>,
        idle: Duration,
        timer: Option<Pin<Box<Sleep>>>,
        deadline: Option<Pin<Box<Sleep>>>,
        clock: Option<Arc<StreamClock>>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.finish.take() {
                // An empty body is never polled, yet it was delivered whole.
                let end = if this.inner.is_end_stream() {
                    End::Complete
                } else if this.clock.as_ref().is_some_and(|c| c.is_stalled()) {
                    End::Cut(Reason::ClientStalled)
                } else {
                    End::ClientGone
                };
                f(*this.sent, end);
            }
        }
    }
}

impl Tracked {
    /// A body the gateway wrote itself: no timers.
    pub fn new(inner: ProxyBody, finish: Finish) -> Self {
        Tracked {
            inner,
            sent: 0,
            finish: Some(finish),
            idle: Duration::MAX,
            timer: None,
            deadline: None,
            clock: None,
        }
    }

    /// An upstream's body: idle timeout, deadline, and a clock for the watchdog.
    pub fn streamed(
        inner: ProxyBody,
        finish: Finish,
        idle: Duration,
        deadline: Option<tokio::time::Instant>,
        clock: Arc<StreamClock>,
    ) -> Self {
        Tracked {
            inner,
            sent: 0,
            finish: Some(finish),
            idle,
            timer: None,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            clock: Some(clock),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(c) = this.clock.as_ref() {
            c.asked();
        }
        if this
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
        {
            return cut(this.finish, *this.sent, Cut::MaxDuration);
        }
        let out = this.inner.as_mut().poll_frame(cx);
        if let Some(c) = this.clock.as_ref() {
            c.waiting_on_upstream
                .store(out.is_pending(), Ordering::Relaxed);
        }
        match &out {
            Poll::Ready(Some(Ok(frame))) => {
                *this.timer = None;
                if let Some(d) = frame.data_ref() {
                    *this.sent += d.len() as u64;
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    if let Some(f) = this.finish.take() {
                        f(*this.sent, End::Complete);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.finish.take() {
                    f(*this.sent, End::Complete);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let end = match Cut::find(e.as_ref()) {
                    Some(c) => End::Cut(c.reason()),
                    None => End::Cut(Reason::UpstreamError),
                };
                if let Some(f) = this.finish.take() {
                    f(*this.sent, end);
                }
            }
            Poll::Pending if *this.idle != Duration::MAX => {
                let idle = *this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    return cut(
                        this.finish,
                        *this.sent,
                        Cut::Stalled(Reason::UpstreamStalled),
                    );
                }
            }
            Poll::Pending => {}
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Ends a response body the gateway cuts: bookkeeping first, then the error
/// that makes hyper reset the stream (or close the HTTP/1.1 connection).
fn cut(
    finish: &mut Option<Finish>,
    sent: u64,
    why: Cut,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if let Some(f) = finish.take() {
        f(sent, End::Cut(why.reason()));
    }
    Poll::Ready(Some(Err(Box::new(why))))
}

/// A complete body from bytes the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body read whole before it goes on (to verify, sign or splice
/// it): under the route's ceiling and idle timeout, all of it within
/// `read_timeout`. Trailers are not kept: the message is the bytes.
pub async fn read_whole(
    body: hyper::body::Incoming,
    limit: u64,
    idle: Duration,
    read_timeout: Duration,
    stats: &Arc<BodyStats>,
) -> Result<Bytes, Reason> {
    use http_body_util::BodyExt;
    let limited = Limited::new(body, limit, idle, stats.clone());
    match tokio::time::timeout(read_timeout, limited.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => Err(read_failure(e.as_ref(), stats)),
        Err(_) => Err(Reason::BodyReadTimeout),
    }
}

/// Why reading a [`Limited`] request body failed.
pub fn read_failure(e: &(dyn std::error::Error + 'static), stats: &BodyStats) -> Reason {
    match Cut::find(e) {
        Some(cut) => cut.reason(),
        None if stats.too_large.load(Ordering::Relaxed) => Reason::BodyTooLarge,
        None => Reason::ClientBodyError,
    }
}

/// The first bytes of a response body, read to look at, and what is left.
pub struct Peeked {
    pub head: Bytes,
    /// More than the cap: `rest` holds the remainder.
    pub over: bool,
    /// Put back behind `head` with [`prefixed`] (trailers, or the remainder).
    pub rest: Option<ProxyBody>,
}

/// Reads a body up to `cap` bytes (the frame that crosses it included).
/// Written without `http_body_util::Limited`, whose error conversion a
/// request's future cannot prove `Send` for every lifetime.
pub async fn peek(mut body: ProxyBody, cap: usize) -> Result<Peeked, BoxError> {
    use http_body_util::BodyExt;
    let mut held = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Err(e),
        };
        match frame.into_data() {
            Ok(data) => {
                held.extend_from_slice(&data);
                if held.len() > cap {
                    return Ok(Peeked {
                        head: held.freeze(),
                        over: true,
                        rest: Some(body),
                    });
                }
            }
            // Trailers: the body has ended; they go on after the data.
            Err(trailers) => {
                let trailers = trailers.into_trailers().ok();
                let rest = http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .with_trailers(std::future::ready(trailers.map(Ok)))
                    .boxed_unsync();
                return Ok(Peeked {
                    head: held.freeze(),
                    over: false,
                    rest: Some(rest),
                });
            }
        }
    }
    Ok(Peeked {
        head: held.freeze(),
        over: false,
        rest: None,
    })
}

/// `first`, then whatever `rest` still has.
pub fn prefixed(first: Bytes, rest: Option<ProxyBody>) -> ProxyBody {
    use http_body_util::BodyExt;
    match rest {
        None => full(first),
        Some(rest) => {
            let head = http_body_util::Full::new(first).map_err(|never| match never {});
            Chain::new(head.boxed_unsync(), rest).boxed_unsync()
        }
    }
}

pin_project_lite::pin_project! {
    /// A body whose every poll tells `stats` that the upstream asks for more
    /// (and whether it had to wait), as [`Limited`] does for a client's.
    struct Watched {
        #[pin]
        inner: ProxyBody,
        stats: Arc<BodyStats>,
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        this.stats.asking();
        let polled = this.inner.poll_frame(cx);
        this.stats.waiting(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, its polls recorded in `stats` (for stall detection).
pub fn watched(body: ProxyBody, stats: Arc<BodyStats>) -> ProxyBody {
    use http_body_util::BodyExt;
    Watched { inner: body, stats }.boxed_unsync()
}

pin_project_lite::pin_project! {
    /// One body after the other.
    struct Chain {
        #[pin]
        first: ProxyBody,
        #[pin]
        then: ProxyBody,
        first_done: bool,
    }
}

impl Chain {
    fn new(first: ProxyBody, then: ProxyBody) -> Chain {
        Chain {
            first,
            then,
            first_done: false,
        }
    }
}

impl Body for Chain {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if !*this.first_done {
            match this.first.as_mut().poll_frame(cx) {
                Poll::Ready(None) => *this.first_done = true,
                other => return other,
            }
        }
        this.then.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first_done && self.then.is_end_stream()
    }
}

/// An upstream's body as the pipeline passes it on.
pub fn boxed(b: hyper::body::Incoming) -> ProxyBody {
    use http_body_util::BodyExt;
    b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}
