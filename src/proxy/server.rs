//! Listening sockets, TLS handshakes, HTTP connections and the graceful drain.

use super::pipeline::{self, ConnCtx};
use crate::admin::{self, AdminState};
use crate::admission::block::Who;
use crate::admission::proxy_protocol;
use crate::admission::rate::Key;
use crate::runtime::{Listener, Runtime};
use crate::tls::identity::{forwarded_client_cert, PeerIdentity};
use crate::tls::server as tls_server;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Could not start serving.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source} (is another process using the port?)")]
pub struct BindError {
    pub what: String,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Per-connection activity, for the idle timeout: requests in flight and when
/// the last one began or ended. Bytes on the wire do not count, so HTTP/2 pings
/// cannot keep an unused connection open.
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
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
        let now = self.epoch.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        ))
    }
}

/// A running gateway: its bound addresses and the handle to stop it.
pub struct Gateway {
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin_addr: SocketAddr,
    pub echo_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    drained: mpsc::Receiver<()>,
    drain_guard: Option<mpsc::Sender<()>>,
    admin: JoinHandle<()>,
    echo: Option<JoinHandle<()>>,
    state: Arc<AdminState>,
    grace: Duration,
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_string(),
        addr,
        source,
    })
}

impl Gateway {
    /// Binds every listener, the admin endpoint and the optional echo server, and starts serving.
    pub async fn start(rt: Arc<Runtime>) -> Result<Gateway, BindError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (drain_tx, drained) = mpsc::channel(1);
        let mut bound = Vec::new();
        for l in &rt.listeners {
            let sock = bind(&format!("listener {:?}", l.name), l.addr).await?;
            bound.push((l.clone(), sock));
        }
        let admin_sock = bind("the admin endpoint", rt.admin_listen).await?;
        let admin_addr = admin_sock.local_addr().map_err(|source| BindError {
            what: "the admin endpoint".into(),
            addr: rt.admin_listen,
            source,
        })?;
        let (echo, echo_addr) = match rt.echo_listen {
            Some(a) => {
                let s = bind("the echo server", a).await?;
                let addr = s.local_addr().unwrap_or(a);
                (
                    Some(tokio::spawn(crate::echo::serve(s, shutdown_rx.clone()))),
                    Some(addr),
                )
            }
            None => (None, None),
        };
        let mut listeners = Vec::new();
        for (l, sock) in bound {
            let addr = sock.local_addr().unwrap_or(l.addr);
            tracing::info!(target: "sealgate", listener = %l.name, addr = %addr, routes = l.routes.len(), "listening");
            listeners.push((l.name.clone(), addr));
            tokio::spawn(accept_loop(
                rt.clone(),
                l,
                sock,
                shutdown_rx.clone(),
                drain_tx.clone(),
            ));
        }
        let state = Arc::new(AdminState::new(rt.clone()));
        let admin = tokio::spawn(admin::serve(admin_sock, state.clone()));
        state.set_ready(true);
        tracing::info!(target: "sealgate", admin = %admin_addr, "admin endpoint listening (/metrics /healthz /readyz)");
        Ok(Gateway {
            listeners,
            admin_addr,
            echo_addr,
            shutdown,
            drained,
            drain_guard: Some(drain_tx),
            admin,
            echo,
            state,
            grace: rt.grace_period,
        })
    }

    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// Stops accepting, lets in-flight requests finish within the grace period,
    /// then returns. True when every connection closed in time.
    pub async fn shutdown(mut self) -> bool {
        self.state.set_ready(false);
        let _ = self.shutdown.send(true);
        self.drain_guard.take();
        let clean = tokio::time::timeout(self.grace, self.drained.recv())
            .await
            .is_ok();
        if clean {
            tracing::info!(target: "sealgate", "drained; all connections closed");
        } else {
            tracing::warn!(target: "sealgate", grace_secs = self.grace.as_secs_f64(), "grace period over; closing remaining connections");
        }
        self.admin.abort();
        if let Some(e) = self.echo.take() {
            e.abort();
        }
        clean
    }
}

async fn accept_loop(
    rt: Arc<Runtime>,
    l: Arc<Listener>,
    sock: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    drain: mpsc::Sender<()>,
) {
    let builder = Arc::new(http_builder(&rt));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = sock.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    l.accepted.inc();
                    tokio::spawn(connection(
                        rt.clone(), l.clone(), builder.clone(), tcp, peer,
                        shutdown.clone(), drain.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "sealgate", listener = %l.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn http_builder(rt: &Runtime) -> auto::Builder<TokioExecutor> {
    let lim = &rt.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(lim.header_read_timeout.0)
        .max_headers(lim.max_headers)
        .max_buf_size((lim.max_header_bytes.0 as usize).max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(lim.max_header_bytes.0).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// The checks made at accept, before any TLS work: the PROXY header from a
/// trusted load balancer, blocks, the listener's allowlist and the handshake
/// rate. Returns the client's address (from the PROXY header when there is one).
async fn admit(
    rt: &Runtime,
    l: &Listener,
    tcp: &mut TcpStream,
    tcp_peer: SocketAddr,
) -> Result<SocketAddr, (&'static str, SocketAddr)> {
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
        .is_some_and(|b| b.ip_blocked(client.ip()))
    {
        return Err(("blocked", client));
    }
    if !l.allow_ips.admits(client.ip()) {
        return Err(("ip_not_allowed", client));
    }
    if let Some(h) = &l.handshake_rate {
        if h.check(&Key::ip(client.ip())).is_err() {
            return Err(("handshake_rate", client));
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

fn refuse_connection(
    rt: &Runtime,
    l: &Listener,
    tcp_peer: SocketAddr,
    client: SocketAddr,
    reason: &'static str,
) {
    rt.metrics
        .connections
        .with_label_values(&[l.name.as_str(), "refused", reason])
        .inc();
    if let Some(suppressed) = rt.logs.connections.admit() {
        tracing::warn!(
            target: "sealgate::admission",
            listener = %l.name,
            peer = %client,
            via = %tcp_peer,
            reason,
            suppressed,
            "connection refused"
        );
    }
}

/// Handshake reasons that mean a client failed to authenticate (not a
/// version mismatch or a dropped connection); they count towards a block.
fn is_auth_failure(reason: &str) -> bool {
    matches!(
        reason,
        "no_client_cert"
            | "unknown_issuer"
            | "bad_signature"
            | "expired"
            | "not_yet_valid"
            | "revoked"
            | "bad_eku"
            | "revocation_unknown"
            | "bad_certificate"
    )
}

/// Counts an authentication failure towards blocking the client's address (and
/// its verified identity, when there is one); logs a block once, with the evidence.
pub fn auth_failure(
    rt: &Runtime,
    ip: std::net::IpAddr,
    identity: Option<&PeerIdentity>,
    reason: &'static str,
) {
    let Some(blocker) = &rt.blocker else { return };
    let mut whos = vec![Who::Ip(ip)];
    if let Some(id) = identity {
        whos.push(Who::Identity(id.fingerprint_sha256.clone()));
    }
    for who in whos {
        if let Some(block) = blocker.record(who.clone(), reason) {
            let kind = if matches!(who, Who::Ip(_)) {
                "ip"
            } else {
                "identity"
            };
            rt.metrics.blocks.with_label_values(&[kind]).inc();
            rt.metrics
                .blocked_clients
                .set(blocker.active().len() as i64);
            tracing::warn!(
                target: "sealgate::admission",
                client = %who,
                failures = block.failures,
                evidence = ?block.reasons,
                blocked_until_unix = block.until_unix,
                "client blocked after repeated authentication failures"
            );
        }
    }
}

async fn connection(
    rt: Arc<Runtime>,
    l: Arc<Listener>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut tcp: TcpStream,
    tcp_peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    _drain: mpsc::Sender<()>,
) {
    let metrics = rt.metrics.clone();
    metrics.open_connections.inc();
    let _open = scopeguard(move || metrics.open_connections.dec());
    let peer = match admit(&rt, &l, &mut tcp, tcp_peer).await {
        Ok(client) => client,
        Err((reason, client)) => {
            refuse_connection(&rt, &l, tcp_peer, client, reason);
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(l.tls.clone());
    let (result, presented) = tls_server::capture_presented(tokio::time::timeout(
        rt.limits.handshake_timeout.0,
        acceptor.accept(tcp),
    ))
    .await;
    let tls = match result {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            refuse_handshake(
                &rt,
                &l,
                peer,
                tls_server::handshake_reason(&e),
                &e.to_string(),
                presented,
            );
            return;
        }
        Err(_) => {
            refuse_handshake(
                &rt,
                &l,
                peer,
                "timeout",
                "handshake not finished in time",
                presented,
            );
            return;
        }
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(der) => match PeerIdentity::from_der(der) {
            Ok(id) => Some(Arc::new(id)),
            Err(e) => {
                refuse_handshake(&rt, &l, peer, "bad_certificate", &e, presented);
                return;
            }
        },
    };
    // A resumed TLS session skips certificate verification: judge validity again.
    if let Some(id) = &identity {
        let now = crate::tls::certs::now_unix();
        let reason = if now > id.not_after {
            Some("expired")
        } else if now < id.not_before {
            Some("not_yet_valid")
        } else {
            None
        };
        if let Some(reason) = reason {
            refuse_handshake(
                &rt,
                &l,
                peer,
                reason,
                "certificate outside its validity (resumed session)",
                presented,
            );
            return;
        }
    }
    let block_identity = identity
        .as_deref()
        .map(|id| Who::Identity(id.fingerprint_sha256.clone()));
    if let (Some(b), Some(who)) = (&rt.blocker, &block_identity) {
        if b.is_blocked(who) {
            refuse_connection(&rt, &l, tcp_peer, peer, "blocked");
            return;
        }
    }
    l.handshake_ok.inc();
    let identity_value = identity
        .as_deref()
        .and_then(|id| HeaderValue::from_str(&forwarded_client_cert(id)).ok());
    let activity = Arc::new(Activity::new());
    let client_key = identity
        .as_deref()
        .map(|id| Key::Client(fingerprint_key(&id.fingerprint_sha256)))
        .unwrap_or_else(|| Key::ip(peer.ip()));
    let ctx = Arc::new(ConnCtx {
        rt: rt.clone(),
        listener: l.clone(),
        peer,
        identity,
        identity_value,
        client_key,
        block_identity,
        activity: activity.clone(),
    });
    let io = TokioIo::new(tls);
    let svc = service_fn(move |req| pipeline::handle(ctx.clone(), req));
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let idle_timeout = rt.limits.idle_timeout.0;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let next_check = match activity.idle_for() {
            Some(idle) => idle_timeout.saturating_sub(idle),
            None => idle_timeout,
        };
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
            _ = tokio::time::sleep(next_check.max(Duration::from_millis(10))), if !closing => {
                if activity.idle_for().is_some_and(|d| d >= idle_timeout) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

fn refuse_handshake(
    rt: &Runtime,
    l: &Listener,
    peer: SocketAddr,
    reason: &'static str,
    detail: &str,
    presented: Option<rustls::pki_types::CertificateDer<'static>>,
) {
    rt.metrics
        .tls_handshakes
        .with_label_values(&[l.name.as_str(), "refused", reason])
        .inc();
    if is_auth_failure(reason) {
        auth_failure(rt, peer.ip(), None, reason);
    }
    // Peers that connect and leave (port scans, health checks) are only debug noise.
    let quiet = matches!(reason, "peer_closed");
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
        .map(tls_server::describe)
        .unwrap_or_default();
    let fault = tls_server::fault_of(reason);
    macro_rules! line {
        ($lvl:ident) => {
            tracing::$lvl!(
                target: "sealgate::tls",
                listener = %l.name,
                peer = %peer,
                reason,
                fault,
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

/// The first 8 bytes of a `AB:CD:..` fingerprint: unique enough for a bucket key.
fn fingerprint_key(fp: &str) -> u64 {
    fp.split(':')
        .take(8)
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .fold(0u64, |acc, b| (acc << 8) | u64::from(b))
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
