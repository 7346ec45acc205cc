//! One client connection: the checks at accept (before any TLS work), the TLS
//! handshake and its refusal reasons, the identity parsed once, then HTTP —
//! watched for idleness, and for responses whose client stopped reading.

use super::body::StreamClock;
use crate::admission::block::Who;
use crate::admission::proxy_protocol;
use crate::admission::rate::Key;
use crate::admission::Refused;
use crate::runtime::listener::Listener;
use crate::runtime::Runtime;
use crate::tls::identity::PeerIdentity;
use crate::tls::reason::Handshake;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// What every request on one connection shares.
pub struct ConnCtx {
    pub rt: Arc<Runtime>,
    pub listener: Arc<Listener>,
    pub peer: SocketAddr,
    /// The peer address as the `X-Forwarded-For` value, rendered once.
    pub peer_value: HeaderValue,
    pub identity: Option<Arc<PeerIdentity>>,
    /// The identity header value, rendered once per connection.
    pub identity_value: Option<HeaderValue>,
    /// The identity as a rate-limit key (anonymous callers: their address).
    pub client_key: Key,
    /// The identity as a block key (blocks are checked per request).
    pub block_identity: Option<Who>,
    /// The client certificate's fingerprint as logged, rendered once (`-`: none).
    pub fingerprint_text: String,
    pub activity: Arc<Activity>,
}

/// Per-connection activity: requests in flight and when the last one began
/// or ended (for the idle timeout; bytes on the wire do not count, so HTTP/2
/// pings cannot keep an unused connection open), when the head of the next
/// HTTP/1 request began to arrive (for the header timeout), and the clocks of
/// responses in flight (for the stall watchdog).
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Since when a request head has been awaited (`NO_HEAD`: none is).
    head_since_ms: AtomicU64,
    http1: bool,
    streams: Mutex<Vec<Weak<StreamClock>>>,
    /// How long a request head may take to arrive once it has begun.
    header_timeout_ms: u64,
    /// When the watchdog looks at this connection next at the latest (ms
    /// since `epoch`); `NOT_ARMED` while it works that out.
    armed_ms: AtomicU64,
    /// Wakes the watchdog when a head or a response starts whose deadline
    /// comes before `armed_ms`: most requests on a busy keep-alive
    /// connection do not wake it at all, as it looks again before either
    /// could be due.
    watched: tokio::sync::Notify,
}

const NO_HEAD: u64 = u64::MAX;
const NOT_ARMED: u64 = u64::MAX;

impl Activity {
    /// `http1`: the first request's head is awaited from now, as a silent
    /// new connection is a slowloris too (HTTP/2 has no head clock: its
    /// pings and settings are not request heads).
    fn new(http1: bool, header_timeout: Duration) -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_since_ms: AtomicU64::new(if http1 { 0 } else { NO_HEAD }),
            http1,
            streams: Mutex::new(Vec::new()),
            header_timeout_ms: millis(header_timeout),
            armed_ms: AtomicU64::new(NOT_ARMED),
            watched: tokio::sync::Notify::new(),
        }
    }

    /// Wakes the watchdog if something is due at `due_ms` before it would
    /// look again. Either the watchdog's reading of the state sees what
    /// changed, or this sees it working out its next look (`NOT_ARMED`) or
    /// the look it settled on: for a head by the sequentially consistent
    /// head clock and `armed_ms`, for a response by the `streams` lock the
    /// watchdog's stall check takes after `arm(None)`.
    fn wake_before(&self, due_ms: u64) {
        if due_ms < self.armed_ms.load(Ordering::SeqCst) {
            self.watched.notify_one();
        }
    }

    /// The watchdog looks again `after` from now at the latest.
    fn arm(&self, after: Option<Duration>) {
        let at = after.map_or(NOT_ARMED, |d| self.now_ms().saturating_add(millis(d)));
        self.armed_ms.store(at, Ordering::SeqCst);
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed()).min(NO_HEAD - 1)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn begin(&self) {
        self.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// Bytes came from the client. With no request in flight they begin the
    /// next request's head, which must then be complete within the header
    /// timeout; the watchdog is woken to time it.
    fn bytes_arrived(&self) {
        if !self.http1
            || self.in_flight.load(Ordering::Relaxed) != 0
            || self.head_since_ms.load(Ordering::Relaxed) != NO_HEAD
        {
            return;
        }
        let now = self.now_ms();
        let began =
            self.head_since_ms
                .compare_exchange(NO_HEAD, now, Ordering::SeqCst, Ordering::Relaxed);
        if began.is_ok() {
            self.wake_before(now.saturating_add(self.header_timeout_ms));
        }
    }

    /// How long the awaited head has left within `limit` (zero: overdue), or
    /// `None` when no head is awaited.
    fn head_left(&self, limit: Duration) -> Option<Duration> {
        let since = self.head_since_ms.load(Ordering::SeqCst);
        if since == NO_HEAD || self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let waited = Duration::from_millis(self.now_ms().saturating_sub(since));
        Some(limit.saturating_sub(waited))
    }

    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// How long the connection has been idle, or `None` while a request is in flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        ))
    }

    /// A clock for a new response, watched until the response is dropped.
    pub fn watch(&self, idle: Duration) -> Arc<StreamClock> {
        let clock = Arc::new(StreamClock::new(self.epoch, idle));
        let mut s = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        s.retain(|w| w.strong_count() > 0);
        s.push(Arc::downgrade(&clock));
        drop(s);
        self.wake_before(self.now_ms().saturating_add(millis(idle)));
        clock
    }

    /// Marks the responses whose client has not asked for data within their
    /// idle timeout; returns whether there was one, and when to look again.
    fn check_stalls(&self) -> (bool, Option<Duration>) {
        let mut s = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        s.retain(|w| w.strong_count() > 0);
        let mut stalled = false;
        let mut next: Option<Duration> = None;
        for clock in s.iter().filter_map(Weak::upgrade) {
            // Waiting on the upstream (its own timer covers that): look again
            // within one idle period, in case data comes and the client stops.
            let left = clock.left().unwrap_or(clock.idle);
            if left.is_zero() {
                clock.mark_stalled();
                stalled = true;
            } else {
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        (stalled, next)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The client's stream as the HTTP server reads it, telling `Activity` when
/// bytes arrive: hyper's own header timer also runs while a keep-alive
/// connection waits for its next request, which would cut idle connections
/// at the header timeout; this one starts at a head's first byte, as
/// nginx's `client_header_timeout` and Envoy's `request_headers_timeout` do.
struct HeadWatch<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadWatch<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadWatch<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The checks made at accept, before any TLS work: the PROXY header from a
/// trusted load balancer, blocks, the listener's allowlist and the handshake
/// rate. Returns the client's address (from the PROXY header when there is one).
async fn admit(
    rt: &Runtime,
    l: &Listener,
    tcp: &mut TcpStream,
    tcp_peer: SocketAddr,
) -> Result<SocketAddr, (Refused, SocketAddr)> {
    let mut client = tcp_peer;
    let trusted_lb = l
        .proxy_protocol
        .as_ref()
        .is_some_and(|pp| pp.trusted.contains(tcp_peer.ip()));
    if let (true, Some(pp)) = (trusted_lb, &l.proxy_protocol) {
        match proxy_protocol::read_header(tcp, pp.optional, pp.timeout).await {
            Ok(Some(a)) => client = a,
            Ok(None) => {}
            Err(e) => return Err((e.reason(), client)),
        }
    }
    client.set_ip(crate::admission::ip::canonical(client.ip()));
    // Cheap checks first: a peer refused here costs no waiting and no TLS.
    if rt
        .blocker
        .as_ref()
        .is_some_and(|b| b.local().ip_blocked(client.ip()))
    {
        return Err((Refused::Blocked, client));
    }
    if !l.allow_ips.admits(client.ip()) {
        return Err((Refused::IpNotAllowed, client));
    }
    if let Some(h) = &l.handshake_rate {
        if h.check(&Key::ip(client.ip())).is_err() {
            return Err((Refused::HandshakeRate, client));
        }
    }
    // The shared store last: a peer refused above costs it nothing.
    if let Some(b) = &rt.blocker {
        if b.ip_blocked_in_store(client.ip()).await {
            return Err((Refused::Blocked, client));
        }
    }
    if let (false, Some(pp)) = (trusted_lb, &l.proxy_protocol) {
        // Only an admitted peer gets this far; it may not pose as a load balancer.
        if let Err(e) = proxy_protocol::refuse_untrusted_header(tcp, pp.timeout).await {
            return Err((e.reason(), client));
        }
    }
    Ok(client)
}

/// Counts and (within the log cap) logs a connection refused at accept.
pub fn refuse_connection(
    rt: &Runtime,
    l: &Listener,
    tcp_peer: SocketAddr,
    client: SocketAddr,
    reason: Refused,
) {
    l.counters.refused(reason);
    if let Some(suppressed) = rt.logs.connections.admit() {
        tracing::warn!(
            target: "sealgate::admission",
            listener = %l.name,
            peer = %client,
            via = %tcp_peer,
            reason = reason.as_str(),
            suppressed,
            "connection refused"
        );
    }
}

/// What ends a connection besides its peer: shutdown, and a newer snapshot.
pub struct Lifetime {
    pub shutdown: watch::Receiver<bool>,
    /// The live snapshot's generation; once it is not `started`, the
    /// connection is retired after the grace period.
    pub generation: watch::Receiver<u64>,
    pub started: u64,
    /// Keeps the drain waiting until the connection ends.
    pub _drain: mpsc::Sender<()>,
}

/// Serves one accepted connection to its end.
pub async fn serve(
    rt: Arc<Runtime>,
    l: Arc<Listener>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut tcp: TcpStream,
    tcp_peer: SocketAddr,
    lifetime: Lifetime,
) {
    let Lifetime {
        mut shutdown,
        mut generation,
        started,
        _drain,
    } = lifetime;
    let open = l.counters.open.clone();
    open.inc();
    let _open = scopeguard(move || open.dec());
    let peer = match admit(&rt, &l, &mut tcp, tcp_peer).await {
        Ok(client) => client,
        Err((reason, client)) => {
            refuse_connection(&rt, &l, tcp_peer, client, reason);
            return;
        }
    };
    let Some(ctx) = handshake(&rt, &l, tcp, tcp_peer, peer).await else {
        return;
    };
    let (ctx, tls) = ctx;
    let activity = ctx.activity.clone();
    let ctx = Arc::new(ctx);
    let svc = service_fn(move |req| super::request::handle(ctx.clone(), req));
    let io = HeadWatch {
        io: tls,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle_timeout = rt.limits.idle_timeout.0;
    let header_timeout = rt.limits.header_read_timeout.0;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    // Once a newer snapshot is live: asked to close after one grace period
    // (it finishes what is in flight), cut after a second one — so a client
    // the new snapshot refuses cannot keep an old connection for ever.
    let grace = rt.grace_period;
    let mut retire: Option<tokio::time::Instant> = None;
    let mut watching_generation = true;
    loop {
        // Whatever starts from here on wakes the watchdog, until it has
        // settled on when it looks again.
        activity.arm(None);
        let next_idle_check = match activity.idle_for() {
            Some(idle) => idle_timeout.saturating_sub(idle),
            None => idle_timeout,
        };
        let head_left = activity.head_left(header_timeout);
        if head_left.is_some_and(|left| left.is_zero()) {
            tracing::debug!(target: "sealgate", peer = %peer, "closing a connection whose request headers did not arrive in time");
            break;
        }
        let (stalled, next_stall_check) = activity.check_stalls();
        if stalled {
            // The client stopped reading a response: writes to it would
            // block for ever, so the connection is closed, which ends the
            // exchange and gives its concurrency slots back.
            tracing::debug!(target: "sealgate", peer = %peer, "closing a connection whose client stopped reading");
            break;
        }
        let floor = |d: Duration| d.max(Duration::from_millis(10));
        let looks = [
            (!closing).then_some(next_idle_check),
            next_stall_check,
            head_left,
        ];
        activity.arm(looks.into_iter().flatten().map(floor).min());
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(target: "sealgate", peer = %peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(next_idle_check.max(Duration::from_millis(10))), if !closing => {
                if activity.idle_for().is_some_and(|d| d >= idle_timeout) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep(next_stall_check.unwrap_or_default().max(Duration::from_millis(10))),
                if next_stall_check.is_some() => {}
            _ = tokio::time::sleep(head_left.unwrap_or_default().max(Duration::from_millis(10))),
                if head_left.is_some() => {}
            _ = activity.watched.notified() => {}
            changed = generation.changed(), if watching_generation => {
                if changed.is_err() {
                    watching_generation = false;
                } else if *generation.borrow_and_update() != started {
                    watching_generation = false;
                    retire = Some(tokio::time::Instant::now() + grace);
                }
            }
            _ = tokio::time::sleep_until(retire.unwrap_or_else(tokio::time::Instant::now)), if retire.is_some() => {
                if closing {
                    tracing::debug!(target: "sealgate", peer = %peer, "cutting a connection of a replaced configuration after the grace period");
                    break;
                }
                tracing::debug!(target: "sealgate", peer = %peer, "closing a connection of a replaced configuration");
                closing = true;
                conn.as_mut().graceful_shutdown();
                retire = Some(tokio::time::Instant::now() + grace);
            }
        }
    }
}

/// The TLS handshake and the identity check that follows it; `None` when the
/// connection was refused (counted and logged here).
async fn handshake(
    rt: &Arc<Runtime>,
    l: &Arc<Listener>,
    tcp: TcpStream,
    tcp_peer: SocketAddr,
    peer: SocketAddr,
) -> Option<(ConnCtx, tokio_rustls::server::TlsStream<TcpStream>)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(l.tls.clone());
    let (result, presented) = crate::tls::server::capture_presented(tokio::time::timeout(
        rt.limits.handshake_timeout.0,
        acceptor.accept(tcp),
    ))
    .await;
    let tls = match result {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            refuse_handshake(rt, l, peer, Handshake::of_io(&e), &e.to_string(), presented).await;
            return None;
        }
        Err(_) => {
            refuse_handshake(
                rt,
                l,
                peer,
                Handshake::Timeout,
                "handshake not finished in time",
                presented,
            )
            .await;
            return None;
        }
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(der) => match PeerIdentity::from_der(der) {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => {
                refuse_handshake(
                    rt,
                    l,
                    peer,
                    Handshake::BadCertificate,
                    &e.to_string(),
                    presented,
                )
                .await;
                return None;
            }
        },
    };
    // A resumed session skips certificate verification, and its cache
    // outlives reloads: the chain goes through the current verifier again, so
    // a CRL that revoked the client since, or its expiry, ends resumption.
    let session = tls.get_ref().1;
    if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        if let (Some(verifier), Some((leaf, rest))) = (
            &l.client_verifier,
            session.peer_certificates().and_then(|c| c.split_first()),
        ) {
            if let Err(e) =
                verifier.verify_client_cert(leaf, rest, rustls::pki_types::UnixTime::now())
            {
                refuse_handshake(
                    rt,
                    l,
                    peer,
                    Handshake::of(&e),
                    &format!("{e} (resumed session)"),
                    presented,
                )
                .await;
                return None;
            }
        }
    }
    let http1 = session.alpn_protocol() != Some(b"h2");
    let block_identity = identity.as_deref().map(|id| Who::Identity(id.fingerprint));
    if let (Some(b), Some(id)) = (&rt.blocker, identity.as_deref()) {
        if b.identity_blocked(id.fingerprint).await {
            refuse_connection(rt, l, tcp_peer, peer, Refused::Blocked);
            return None;
        }
    }
    l.counters.handshake_ok.inc();
    let identity_value = identity
        .as_deref()
        .and_then(|id| HeaderValue::from_str(&super::headers::identity_value(id)).ok());
    let client_key = identity
        .as_deref()
        .map(|id| Key::Client(id.fingerprint.prefix_u64()))
        .unwrap_or_else(|| Key::ip(peer.ip()));
    let fingerprint_text = identity
        .as_deref()
        .map_or_else(|| "-".to_owned(), |id| id.fingerprint.to_string());
    let peer_value = HeaderValue::from_str(&peer.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    Some((
        ConnCtx {
            rt: rt.clone(),
            listener: l.clone(),
            peer,
            peer_value,
            identity,
            identity_value,
            client_key,
            block_identity,
            fingerprint_text,
            activity: Arc::new(Activity::new(http1, rt.limits.header_read_timeout.0)),
        },
        tls,
    ))
}

/// Counts and logs a refused handshake, and (awaited, so the next connection
/// on any replica sees it) records the failure towards a block.
async fn refuse_handshake(
    rt: &Runtime,
    l: &Listener,
    peer: SocketAddr,
    reason: Handshake,
    detail: &str,
    presented: Option<rustls::pki_types::CertificateDer<'static>>,
) {
    l.counters.handshake_refused(reason);
    if reason.is_auth_failure() {
        if let Some(b) = &rt.blocker {
            b.failed(peer.ip(), None, reason.as_str()).await;
        }
    }
    // Peers that connect and leave (port scans, health checks) are only debug noise.
    let quiet = reason.is_quiet();
    let suppressed = if quiet {
        0
    } else {
        match rt.logs.handshakes.admit() {
            Some(n) => n,
            None => return,
        }
    };
    let cert = presented
        .as_ref()
        .map(crate::tls::server::describe)
        .unwrap_or_default();
    macro_rules! line {
        ($lvl:ident) => {
            tracing::$lvl!(
                target: "sealgate::tls",
                listener = %l.name,
                peer = %peer,
                reason = reason.as_str(),
                fault = reason.fault().as_str(),
                detail,
                client_cert_presented = presented.is_some(),
                subject = %cert.subject,
                issuer = %cert.issuer,
                serial = %cert.serial,
                fingerprint_sha256 = %cert.fingerprint_sha256,
                suppressed,
                "TLS handshake refused"
            )
        };
    }
    if quiet {
        line!(debug);
    } else {
        line!(warn);
    }
}

/// Runs a closure on drop.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct G<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for G<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    G(Some(f))
}
