//! Listening sockets, the accept loops and the graceful drain.

use super::conn;
use crate::admin::{self, AdminState};
use crate::admission::Refused;
use crate::runtime::listener::Listener;
use crate::runtime::Runtime;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection closed within the grace period.
    Clean,
    /// The grace period ran out with requests still in flight; they were cut.
    GraceExpired,
}

/// A running gateway: its bound addresses and the handle to stop it.
pub struct Gateway {
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin_addr: SocketAddr,
    pub echo_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    drained: mpsc::Receiver<()>,
    drain_guard: Option<mpsc::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    state: Arc<AdminState>,
    grace: Duration,
    drain_delay: Duration,
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
        let mut tasks = Vec::new();
        let echo_addr = match rt.echo_listen {
            Some(a) => {
                let s = bind("the echo server", a).await?;
                let addr = s.local_addr().unwrap_or(a);
                tasks.push(tokio::spawn(crate::echo::serve(s, shutdown_rx.clone())));
                Some(addr)
            }
            None => None,
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
        if let Some(b) = rt.blocker.clone() {
            // Expired blocks leave the table on a timer, never on the request path.
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    b.prune();
                }
            }));
        }
        let state = Arc::new(AdminState::new(rt.clone()));
        tasks.push(tokio::spawn(admin::serve(admin_sock, state.clone())));
        state.set_ready(true);
        tracing::info!(target: "sealgate", admin = %admin_addr, "admin endpoint listening (/metrics /healthz /readyz)");
        Ok(Gateway {
            listeners,
            admin_addr,
            echo_addr,
            shutdown,
            drained,
            drain_guard: Some(drain_tx),
            tasks,
            state,
            grace: rt.grace_period,
            drain_delay: rt.drain_delay,
        })
    }

    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// Turns `/readyz` to 503, keeps serving for the drain delay (so a load
    /// balancer stops sending first), then stops accepting and lets in-flight
    /// requests finish within the grace period.
    pub async fn shutdown(mut self) -> Drained {
        self.state.set_ready(false);
        if !self.drain_delay.is_zero() {
            tracing::info!(target: "sealgate", drain_delay_secs = self.drain_delay.as_secs_f64(), "not ready; still serving for the drain delay");
            tokio::time::sleep(self.drain_delay).await;
        }
        let _ = self.shutdown.send(true);
        self.drain_guard.take();
        let clean = tokio::time::timeout(self.grace, self.drained.recv())
            .await
            .is_ok();
        if clean {
            tracing::info!(target: "sealgate", "drained; all connections closed");
        } else {
            tracing::warn!(target: "sealgate", grace_secs = self.grace.as_secs_f64(), "grace period over with requests still in flight; closing the remaining connections");
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if clean {
            Drained::Clean
        } else {
            Drained::GraceExpired
        }
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
    // Connections open on this socket, for `max_connections`.
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = sock.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    l.counters.accepted.inc();
                    let n = open.fetch_add(1, Ordering::AcqRel) + 1;
                    let counted = Counted(open.clone());
                    if l.max_connections.is_some_and(|max| n > max) {
                        drop(counted);
                        conn::refuse_connection(&rt, &l, peer, peer, Refused::TooManyConnections);
                        continue;
                    }
                    let (rt, l, b, s, d) = (rt.clone(), l.clone(), builder.clone(), shutdown.clone(), drain.clone());
                    tokio::spawn(async move {
                        let _counted = counted;
                        conn::serve(rt, l, b, tcp, peer, s, d).await;
                    });
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

/// One open connection, counted until it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
