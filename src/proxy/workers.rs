//! The worker runtimes that serve connections: one single-threaded runtime
//! per core, each on its own thread. The accept loops hand each new
//! connection to the next worker in turn, and it stays there with the
//! upstream connections it uses (one pool per worker), so the wake-ups of a
//! request never cross cores. One work-stealing runtime moved them between
//! threads and cost about 40 % of keep-alive requests per second
//! (BENCHMARKS.md, "One runtime per core").

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropped with the workers: each thread then stops its runtime, which
    /// ends the connections still on it.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `n` workers (at least one).
    pub fn start(n: usize) -> io::Result<Workers> {
        let mut handles = Vec::new();
        let mut stop = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Its blocking threads (WS-Security verification) count as
                // the worker's too.
                .on_thread_start(move || crate::runtime::worker::set_index(i))
                .build()?;
            let (tx, rx) = oneshot::channel::<()>();
            handles.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("sealgate-worker-{i}"))
                .spawn(move || {
                    crate::runtime::worker::set_index(i);
                    rt.block_on(async {
                        let _ = rx.await;
                    });
                })?;
            stop.push(tx);
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// Serves `tcp` with `serve` on the next worker. The socket moves to
    /// that worker's event loop, so its readiness wakes that thread only.
    pub fn serve<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "sealgate", error = %e, "a connection could not be handed to a worker");
                return;
            }
        };
        self.handles[i].spawn(async move {
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => {
                    tracing::warn!(target: "sealgate", error = %e, "a worker could not take a connection");
                }
            }
        });
    }
}
