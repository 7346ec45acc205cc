//! Replacing the configuration while serving. A reload reads the config file
//! and every file it names, compiles a complete new `Runtime` off the request
//! path and only then swaps it in; new connections take the new snapshot at
//! once, open ones finish on theirs (and are retired after the grace period).
//! A reload that fails changes nothing and says why, path by path, as
//! `sealgate check` would.
//!
//! `Source` compiles, `Live` holds the snapshot being served, `Reloader` asks
//! the gateway for a reload (from SIGHUP, `POST /reload`, the file watch or
//! a CRL download); the gateway runs one at a time.

pub mod crl_fetch;
pub mod lifecycle;
pub mod watch;

use crate::config::{Config, ConfigError};
use crate::runtime::state::State;
use crate::runtime::Runtime;
use crate::telemetry::metrics::Metrics;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch as tokio_watch};

/// Where snapshots come from: the config file, and the state and metrics
/// every snapshot shares.
#[derive(Clone)]
pub struct Source {
    path: PathBuf,
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
}

/// A compiled snapshot and the config it came from.
pub struct Compiled {
    pub config: Config,
    pub runtime: Runtime,
}

impl Source {
    pub fn new(path: PathBuf) -> Source {
        Source {
            path,
            state: Arc::new(State::new()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the config and everything it names — CRLs from URLs not yet
    /// fetched included — and compiles a snapshot, or says every problem.
    pub async fn compile(&self) -> Result<Compiled, ConfigError> {
        let config = Config::load(&self.path)?;
        crl_fetch::fetch_missing(&config, &self.state, &self.metrics, false).await;
        let fetches = crl_fetch::names_urls(&config);
        match self.compile_off_thread(config).await {
            Err(ConfigError::Invalid { .. }) if fetches => {
                // The CAs may have changed with their CRLs: fetch those again
                // and try once more before refusing.
                let config = Config::load(&self.path)?;
                crl_fetch::fetch_missing(&config, &self.state, &self.metrics, true).await;
                self.compile_off_thread(config).await
            }
            r => r,
        }
    }

    async fn compile_off_thread(&self, config: Config) -> Result<Compiled, ConfigError> {
        let me = self.clone();
        let compiled = tokio::task::spawn_blocking(move || me.compile_loaded(config)).await;
        match compiled {
            Ok(c) => c,
            Err(e) => Err(ConfigError::Invalid {
                file: self.path.clone(),
                problems: vec![crate::config::Problem::new(
                    "config",
                    format!("compiling the configuration failed: {e}"),
                )],
            }),
        }
    }

    /// As `compile`, for a caller outside an async runtime (`sealgate check`).
    pub fn compile_blocking(&self) -> Result<Compiled, ConfigError> {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(self.compile()),
            Err(e) => Err(ConfigError::Invalid {
                file: self.path.clone(),
                problems: vec![crate::config::Problem::new(
                    "config",
                    format!("cannot start the async runtime: {e}"),
                )],
            }),
        }
    }

    fn compile_loaded(&self, config: Config) -> Result<Compiled, ConfigError> {
        let mut runtime = Runtime::compile_with(&config, self.metrics.clone(), &self.state)
            .map_err(|problems| ConfigError::Invalid {
                file: self.path.clone(),
                problems,
            })?;
        runtime.hash = hash(&config, &runtime.files, &runtime.downloaded);
        Ok(Compiled { config, runtime })
    }
}

/// SHA-256 over the config file and every file and download it names (as
/// digested when they were read), so the gauge shows which material is live
/// and an unchanged reload is seen.
fn hash(config: &Config, files: &[(PathBuf, Vec<u8>)], downloaded: &[(String, Vec<u8>)]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut add = |name: &[u8], bytes: &[u8]| {
        for part in [name, bytes] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    };
    add(b"config", &config.text_sha256);
    for (f, digest) in files {
        add(f.as_os_str().as_encoded_bytes(), digest);
    }
    for (url, der) in downloaded {
        add(url.as_bytes(), der);
    }
    crate::hex::lower(ctx.finish().as_ref())
}

/// The snapshot being served, and its generation (bumped by every swap, so
/// open connections know theirs is no longer the live one).
pub struct Live {
    snapshot: ArcSwap<Runtime>,
    generation: tokio_watch::Sender<u64>,
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
}

impl Live {
    /// The first snapshot goes live.
    pub fn new(rt: Runtime, state: Arc<State>) -> Live {
        let metrics = rt.metrics.clone();
        rt.activate(&state);
        let live = Live {
            snapshot: ArcSwap::from_pointee(rt),
            generation: tokio_watch::channel(0).0,
            state,
            metrics,
        };
        live.loaded();
        live
    }

    pub fn current(&self) -> Arc<Runtime> {
        self.snapshot.load_full()
    }

    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Changes whenever a new snapshot goes live.
    pub fn subscribe(&self) -> tokio_watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Makes `rt` the live snapshot; returns its generation.
    pub fn swap(&self, rt: Runtime) -> u64 {
        rt.activate(&self.state);
        self.snapshot.store(Arc::new(rt));
        let mut generation = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        self.loaded();
        generation
    }

    fn loaded(&self) {
        let rt = self.snapshot.load();
        let m = &self.metrics;
        m.config_last_reload_success
            .set(crate::tls::certs::now_unix());
        m.config_last_reload_successful.set(1);
        m.config_hash.reset();
        if !rt.hash.is_empty() {
            m.config_hash.with_label_values(&[rt.hash.as_str()]).set(1);
        }
        lifecycle::announce_readable_keys(&rt);
    }

    /// Counts a reload that left the live snapshot in place.
    pub fn failed(&self) {
        self.metrics
            .config_reloads
            .with_label_values(&["error"])
            .inc();
        self.metrics.config_last_reload_successful.set(0);
    }
}

/// What asked for a reload, as logged.
pub type Trigger = &'static str;

/// A reload that went through.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// False when nothing the snapshot is built from had changed.
    pub changed: bool,
    pub sha256: String,
    pub generation: u64,
}

/// Why a reload was refused; the old snapshot keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what} changed from {from} to {to}, which a reload cannot apply; restart sealgate to move it")]
    Fixed {
        what: &'static str,
        from: String,
        to: String,
    },
    #[error("listener {listener:?}: cannot listen on {addr}: {source} (is another process using the port?); the listener stays where it was")]
    Bind {
        listener: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the gateway was started without a config file to reload from")]
    NoSource,
    #[error("the gateway is shutting down")]
    Closed,
}

impl ReloadError {
    /// The lines `sealgate check` would print for it.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Config(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

/// One request to the gateway's reload task.
pub struct Request {
    pub trigger: Trigger,
    pub reply: oneshot::Sender<Result<Reloaded, ReloadError>>,
}

/// Asks the gateway for a reload; cheap to clone.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<Request>);

impl Reloader {
    pub fn channel() -> (Reloader, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(16);
        (Reloader(tx), rx)
    }

    /// Reloads and waits for the outcome.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Request { trigger, reply })
            .await
            .map_err(|_| ReloadError::Closed)?;
        answer.await.map_err(|_| ReloadError::Closed)?
    }
}
