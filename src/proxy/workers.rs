//! The worker runtimes that serve connections: one single-threaded runtime
//! per core, each on its own thread. The accept loops hand each new
//! connection to the worker serving the fewest (in turn among equals), and
//! it stays there with the
//! upstream connections it uses (one pool per worker), so the wake-ups of a
//! request never cross cores. Against one work-stealing runtime, which moved
//! them between threads, this serves 32-45 % more keep-alive requests per
//! second (BENCHMARKS.md, "One runtime per core").

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub struct Workers {
    handles: Vec<Handle>,
    /// Connections each worker serves now.
    loads: Arc<[AtomicUsize]>,
    next: AtomicUsize,
    /// Dropped with the workers: each thread then stops its runtime, which
    /// ends the connections still on it.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts one worker per core (`runtime::worker::count`, which also
    /// sizes each upstream's pools).
    pub fn start() -> io::Result<Workers> {
        let mut handles = Vec::new();
        let mut stop = Vec::new();
        for i in 0..crate::runtime::worker::count() {
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
                    crate::runtime::worker::mark_event_loop();
                    rt.block_on(async {
                        let _ = rx.await;
                    });
                })?;
            stop.push(tx);
        }
        Ok(Workers {
            loads: handles.iter().map(|_| AtomicUsize::new(0)).collect(),
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// The worker with the fewest open connections, looking from the next
    /// in turn, so equal loads are dealt in turn. Two accept loops picking
    /// at once may both choose the same worker; the next pick evens it out.
    fn pick(&self) -> usize {
        let n = self.loads.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (start..start + n)
            .map(|i| i % n)
            .min_by_key(|&i| self.loads[i].load(Ordering::Relaxed))
            .unwrap_or(start)
    }

    /// Serves `tcp` with `serve` on the least loaded worker. The socket
    /// moves to that worker's event loop, so its readiness wakes that
    /// thread only.
    pub fn serve<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.pick();
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "sealgate", error = %e, "a connection could not be handed to a worker");
                return;
            }
        };
        self.loads[i].fetch_add(1, Ordering::Relaxed);
        let load = Load(self.loads.clone(), i);
        self.handles[i].spawn(async move {
            let _load = load;
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => {
                    tracing::warn!(target: "sealgate", error = %e, "a worker could not take a connection");
                }
            }
        });
    }
}

/// Counts a connection on its worker until it ends (or its runtime stops).
struct Load(Arc<[AtomicUsize]>, usize);

impl Drop for Load {
    fn drop(&mut self) {
        self.0[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A connected pair: the client's end, and the accepted end to serve.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (served, _) = l.accept().await.unwrap();
        (client, served)
    }

    #[tokio::test]
    async fn connections_are_served_on_the_worker_threads_in_turn() {
        let workers = Workers::start().unwrap();
        let n = crate::runtime::worker::count();
        let mut seen = Vec::new();
        for _ in 0..n * 2 {
            let (_client, served) = pair().await;
            let (tx, rx) = oneshot::channel();
            workers.serve(served, move |_tcp| async move {
                let name = std::thread::current().name().map(str::to_string);
                let _ = tx.send((name, crate::runtime::worker::index()));
            });
            seen.push(rx.await.unwrap());
        }
        for (i, (name, index)) in seen.iter().enumerate() {
            // Off this test's runtime, on worker i mod n, which knows its index.
            assert_eq!(
                name.as_deref(),
                Some(&*format!("sealgate-worker-{}", i % n))
            );
            assert_eq!(*index, i % n);
        }
    }

    #[tokio::test]
    async fn a_worker_busy_with_a_connection_is_passed_over_for_one_with_fewer() {
        let workers = Workers::start().unwrap();
        if crate::runtime::worker::count() < 2 {
            return;
        }
        let on = |workers: &Workers, served: TcpStream, hold: bool| {
            let (tx, rx) = oneshot::channel();
            workers.serve(served, move |_tcp| async move {
                let _ = tx.send(crate::runtime::worker::index());
                if hold {
                    std::future::pending::<()>().await;
                }
            });
            rx
        };
        let (_a, served) = pair().await;
        let held = on(&workers, served, true).await.unwrap();
        let (_b, served) = pair().await;
        let quick = on(&workers, served, false).await.unwrap();
        assert_ne!(held, quick);
        // Its load counted back down when it ended.
        while workers.loads[quick].load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // In turn it would be the held one's worker again; it is not.
        let (_c, served) = pair().await;
        let next = on(&workers, served, false).await.unwrap();
        assert_ne!(next, held);
        assert_eq!(workers.loads[held].load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn dropped_workers_stop_their_runtimes_and_the_connections_on_them() {
        let workers = Workers::start().unwrap();
        let (mut client, served) = pair().await;
        let (held, is_held) = oneshot::channel::<()>();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        workers.serve(served, move |tcp| async move {
            // Ends only with its runtime: the guard's drop runs on the way out.
            struct Ended(std::sync::mpsc::Sender<()>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    let _ = self.0.send(());
                }
            }
            let _ended = Ended(ended_tx);
            let _tcp = tcp;
            let _ = held.send(());
            std::future::pending::<()>().await;
        });
        is_held.await.unwrap();
        let mut buf = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), client.read(&mut buf))
                .await
                .is_err(),
            "the connection is held while the workers run"
        );
        drop(workers);
        ended.recv_timeout(Duration::from_secs(5)).unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "the socket closed with its worker");
    }
}
