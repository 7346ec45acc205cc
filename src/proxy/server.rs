//! Listening sockets, the accept loops, reloads (one at a time: compile,
//! bind what moved, swap) and the graceful drain.

use super::conn;
use super::workers::Workers;
use crate::admin::{self, AdminState};
use crate::admission::Refused;
use crate::reload::{Live, ReloadError, Reloaded, Reloader, Source};
use crate::runtime::Runtime;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
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

/// Could not start the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot start the worker threads that serve connections: {0}")]
    Workers(#[source] io::Error),
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
    pub admin_addr: SocketAddr,
    pub echo_addr: Option<SocketAddr>,
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    drained: mpsc::Receiver<()>,
    tasks: Vec<JoinHandle<()>>,
    state: Arc<AdminState>,
    reloader: Reloader,
}

/// How `run` was asked to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reload when a file the configuration is built from changes.
    pub watch: bool,
    /// How long file changes must settle before the reload.
    pub watch_debounce: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            watch: true,
            watch_debounce: Duration::from_millis(300),
        }
    }
}

/// A listener's socket and its accept loop.
struct Bound {
    /// The address the config gives (it may say port 0).
    configured: SocketAddr,
    actual: SocketAddr,
    task: JoinHandle<()>,
}

/// What the accept loops and the reload task share.
struct Inner {
    live: Arc<Live>,
    source: Source,
    bound: Mutex<BTreeMap<String, Bound>>,
    shutdown: watch::Receiver<bool>,
    /// Held by every accept loop and connection; dropped at shutdown, so
    /// the drain ends when the last of them does.
    drain: Mutex<Option<mpsc::Sender<()>>>,
    workers: Arc<Workers>,
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_string(),
        addr,
        source,
    })
}

impl Gateway {
    /// Binds every listener, the admin endpoint and the optional echo
    /// server, and starts serving `rt` (compiled from `source`); reloads
    /// compile from `source` again.
    pub async fn start(
        source: Source,
        rt: Runtime,
        options: Options,
    ) -> Result<Gateway, StartError> {
        let workers = Arc::new(Workers::start().map_err(StartError::Workers)?);
        let live = Arc::new(Live::new(rt, source.state.clone()));
        let rt = live.current();
        if let Err(e) = rt.spool.sweep() {
            // Not fatal: only a streamed message needs the spool, and it says so.
            tracing::warn!(target: "sealgate", dir = %rt.spool.dir().display(), error = %e, "the spool directory cannot be prepared");
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (drain_tx, drained) = mpsc::channel(1);
        let mut socks = Vec::new();
        for l in &rt.listeners {
            socks.push((
                l.name.clone(),
                l.addr,
                bind(&format!("listener {:?}", l.name), l.addr).await?,
            ));
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
        let inner = Arc::new(Inner {
            live: live.clone(),
            source: source.clone(),
            bound: Mutex::new(BTreeMap::new()),
            shutdown: shutdown_rx,
            drain: Mutex::new(Some(drain_tx)),
            workers,
        });
        for (name, configured, sock) in socks {
            inner.serve(name, configured, sock);
        }
        // Expired blocks leave the table on a timer, never on the request
        // path; a shared store that stopped answering is asked again.
        let pruned = live.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let rt = pruned.current();
                if let Some(b) = &rt.blocker {
                    b.prune();
                }
                rt.broker.observe();
                if let Some(s) = rt.store() {
                    s.probe().await;
                }
            }
        }));
        let (reloader, requests) = Reloader::channel();
        tasks.push(tokio::spawn(reload_loop(inner.clone(), requests)));
        if options.watch {
            tasks.push(crate::reload::watch::spawn(
                live.clone(),
                source.path().to_path_buf(),
                reloader.clone(),
                options.watch_debounce,
            ));
        }
        tasks.push(tokio::spawn(crate::reload::crl_fetch::run(
            live.clone(),
            reloader.clone(),
        )));
        tasks.push(tokio::spawn(crate::reload::lifecycle::run(live.clone())));
        let state = Arc::new(AdminState::new(live, reloader.clone()));
        tasks.push(tokio::spawn(admin::serve(admin_sock, state.clone())));
        state.set_ready(true);
        tracing::info!(target: "sealgate", admin = %admin_addr, "admin endpoint listening (/metrics /healthz /readyz /blocked, POST /reload)");
        Ok(Gateway {
            admin_addr,
            echo_addr,
            inner,
            shutdown,
            drained,
            tasks,
            state,
            reloader,
        })
    }

    /// Where a listener is bound now.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.inner
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(listener)
            .map(|b| b.actual)
    }

    /// Every listener and where it is bound now.
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.inner
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, b)| (n.clone(), b.actual))
            .collect()
    }

    /// Asks for a reload, as SIGHUP and `POST /reload` do.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    pub fn live(&self) -> Arc<Live> {
        self.inner.live.clone()
    }

    /// Turns `/readyz` to 503, keeps serving for the drain delay (so a load
    /// balancer stops sending first), then stops accepting and lets in-flight
    /// requests finish within the grace period.
    pub async fn shutdown(mut self) -> Drained {
        let rt = self.inner.live.current();
        let (grace, drain_delay) = (rt.grace_period, rt.drain_delay);
        self.state.set_ready(false);
        if !drain_delay.is_zero() {
            tracing::info!(target: "sealgate", drain_delay_secs = drain_delay.as_secs_f64(), "not ready; still serving for the drain delay");
            tokio::time::sleep(drain_delay).await;
        }
        let _ = self.shutdown.send(true);
        self.inner
            .drain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let clean = tokio::time::timeout(grace, self.drained.recv())
            .await
            .is_ok();
        if clean {
            tracing::info!(target: "sealgate", "drained; all connections closed");
        } else {
            tracing::warn!(target: "sealgate", grace_secs = grace.as_secs_f64(), "grace period over with requests still in flight; closing the remaining connections");
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for (_, b) in std::mem::take(
            &mut *self
                .inner
                .bound
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            b.task.abort();
        }
        if clean {
            Drained::Clean
        } else {
            Drained::GraceExpired
        }
    }
}

impl Inner {
    /// Starts the accept loop of a bound listener socket (replacing any loop
    /// of that name, whose socket then closes).
    fn serve(&self, name: String, configured: SocketAddr, sock: TcpListener) {
        let Some(drain) = self
            .drain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        let actual = sock.local_addr().unwrap_or(configured);
        let routes = self
            .live
            .current()
            .listener(&name)
            .map_or(0, |l| l.routes.len());
        tracing::info!(target: "sealgate", listener = %name, addr = %actual, routes, "listening");
        let task = tokio::spawn(accept_loop(
            self.live.clone(),
            name.clone(),
            sock,
            self.shutdown.clone(),
            drain,
            self.workers.clone(),
        ));
        let old = self
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name,
                Bound {
                    configured,
                    actual,
                    task,
                },
            );
        if let Some(old) = old {
            old.task.abort();
        }
    }

    /// Compiles the config again and, when it is sound and something
    /// changed, swaps it in; listeners that moved are bound first.
    async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let new = self.source.compile().await?.runtime;
        let cur = self.live.current();
        if new.hash == cur.hash {
            return Ok(Reloaded {
                changed: false,
                sha256: cur.hash.clone(),
                generation: self.live.generation(),
            });
        }
        for (what, from, to) in [
            (
                "admin.listen",
                Some(cur.admin_listen),
                Some(new.admin_listen),
            ),
            ("echo.listen", cur.echo_listen, new.echo_listen),
        ] {
            if from != to {
                let show = |a: Option<SocketAddr>| a.map_or("none".to_owned(), |a| a.to_string());
                return Err(ReloadError::Fixed {
                    what,
                    from: show(from),
                    to: show(to),
                });
            }
        }
        let was: BTreeMap<String, (SocketAddr, SocketAddr)> = self
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, b)| (n.clone(), (b.configured, b.actual)))
            .collect();
        let mut fresh = Vec::new();
        for l in &new.listeners {
            if was.get(&l.name).is_some_and(|(c, _)| *c == l.addr) {
                continue;
            }
            let sock = TcpListener::bind(l.addr)
                .await
                .map_err(|source| ReloadError::Bind {
                    listener: l.name.clone(),
                    addr: l.addr,
                    source,
                })?;
            fresh.push((l.name.clone(), l.addr, sock));
        }
        let gone: Vec<String> = was
            .keys()
            .filter(|n| new.listener(n).is_none())
            .cloned()
            .collect();
        let sha256 = new.hash.clone();
        let generation = self.live.swap(new);
        for (name, configured, sock) in fresh {
            if let Some((_, from)) = was.get(&name) {
                let to = sock.local_addr().unwrap_or(configured);
                crate::telemetry::audit::listener_moved(&name, &from.to_string(), &to.to_string());
            }
            self.serve(name, configured, sock);
        }
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        for name in gone {
            if let Some(b) = bound.remove(&name) {
                tracing::info!(target: "sealgate", listener = %name, addr = %b.actual, "listener removed by reload; its socket is closed");
                b.task.abort();
            }
        }
        Ok(Reloaded {
            changed: true,
            sha256,
            generation,
        })
    }
}

/// Runs reloads one at a time, in the order asked; each is counted and
/// logged as one audit event.
async fn reload_loop(inner: Arc<Inner>, mut requests: mpsc::Receiver<crate::reload::Request>) {
    while let Some(req) = requests.recv().await {
        let out = inner.reload().await;
        match &out {
            Ok(r) => {
                inner
                    .live
                    .metrics
                    .config_reloads
                    .with_label_values(&["ok"])
                    .inc();
                inner.live.metrics.config_last_reload_successful.set(1);
                crate::telemetry::audit::reload_ok(req.trigger, &r.sha256, r.generation, r.changed);
            }
            Err(e) => {
                inner.live.failed();
                crate::telemetry::audit::reload_failed(req.trigger, &e.problems());
            }
        }
        let _ = req.reply.send(out);
    }
}

async fn accept_loop(
    live: Arc<Live>,
    name: String,
    sock: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    drain: mpsc::Sender<()>,
    workers: Arc<Workers>,
) {
    // Connections open on this socket, for `max_connections`.
    let open = Arc::new(AtomicUsize::new(0));
    // The HTTP settings of the snapshot last seen, rebuilt when it changes.
    let mut builder: Option<(u64, Arc<auto::Builder<TokioExecutor>>)> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = sock.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Subscribe, then the generation, then the snapshot: a
                    // swap in between makes the connection retire early,
                    // never serve on without retiring (a receiver counts what
                    // was sent before it subscribed as seen).
                    let mut generations = live.subscribe();
                    let generation = *generations.borrow_and_update();
                    let rt = live.current();
                    let Some(l) = rt.listener(&name).cloned() else {
                        // Removed by a reload; this loop is about to stop.
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    l.counters.accepted.inc();
                    let n = open.fetch_add(1, Ordering::AcqRel) + 1;
                    let counted = Counted(open.clone());
                    if l.max_connections.is_some_and(|max| n > max) {
                        drop(counted);
                        conn::refuse_connection(&rt, &l, peer, peer, Refused::TooManyConnections);
                        continue;
                    }
                    let b = match &builder {
                        Some((g, b)) if *g == generation => b.clone(),
                        _ => {
                            let b = Arc::new(http_builder(&rt));
                            builder = Some((generation, b.clone()));
                            b
                        }
                    };
                    let lifetime = conn::Lifetime {
                        shutdown: shutdown.clone(),
                        generation: generations,
                        started: generation,
                        _drain: drain.clone(),
                    };
                    workers.serve(tcp, move |tcp| async move {
                        let _counted = counted;
                        conn::serve(rt, l, b, tcp, peer, lifetime).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: "sealgate", listener = %name, error = %e, "accept failed");
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
        // Timed by the connection's own head clock (conn.rs): hyper's would
        // also run while a keep-alive connection waits for its next request.
        .header_read_timeout(None)
        .max_headers(lim.max_headers)
        .max_buf_size((lim.max_header_bytes.0 as usize).max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(lim.max_header_bytes.0).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}
