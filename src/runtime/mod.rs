//! The `Runtime`: everything a request needs, compiled once from the config and
//! never changed afterwards. A new config means a new `Runtime`.
//!
//! `material` loads every file the config names, `listener`, `route`,
//! `authz`, `upstream` and `wssec_stage` compile their parts, `route_table`
//! indexes a listener's routes; nothing on the request path parses, formats
//! or loads.

pub mod authz;
pub mod listener;
pub mod material;
pub mod route;
pub mod route_table;
pub mod spool;
pub mod state;
pub mod upstream;
pub mod worker;
pub mod wssec_stage;

use crate::admission::block::{BlockMetrics, BlockSettings};
use crate::admission::ip::IpSet;
use crate::config::{Config, LimitsConfig, Problem};
use crate::telemetry::logging::LogGate;
use crate::telemetry::metrics::Metrics;
use crate::tls::certs::CertSummary;
use http::HeaderName;
use listener::Listener;
use material::Loader;
use route::RouteCounters;
use state::{State, Taken};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use upstream::Upstream;

pub use listener::ProxyProtocol;

pub struct LogGates {
    pub connections: LogGate,
    pub handshakes: LogGate,
    pub requests: LogGate,
}

/// Header names the gateway writes or guards, resolved once.
pub struct Headers {
    /// Carries the verified client identity upstream; a client's copy is removed.
    pub identity: HeaderName,
    pub request_id: HeaderName,
}

pub struct Runtime {
    pub listeners: Vec<Arc<Listener>>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub headers: Headers,
    pub limits: LimitsConfig,
    pub grace_period: Duration,
    /// Audit thresholds before notAfter / nextUpdate, longest first.
    pub expiry_warnings: Vec<Duration>,
    pub drain_delay: Duration,
    pub admin_listen: SocketAddr,
    pub echo_listen: Option<SocketAddr>,
    pub certs: Vec<CertSummary>,
    pub crls: Vec<crate::tls::crl::CrlSummary>,
    /// CRL distribution points to fetch in the background.
    pub crl_urls: Vec<material::CrlUrlUse>,
    /// The downloaded CRL copies this snapshot uses, by URL (for its hash).
    pub downloaded: Vec<(String, Vec<u8>)>,
    /// Private key files others can read: TOML key, path, mode.
    pub readable_keys: Vec<(String, PathBuf, u32)>,
    /// SHA-256 of the config file and every file it names (set by whoever
    /// read the config file; empty for a snapshot compiled from memory).
    pub hash: String,
    /// Config findings that do not stop the gateway (printed by `check`,
    /// logged by `run`).
    pub warnings: Vec<Problem>,
    pub metrics: Arc<Metrics>,
    pub blocker: Option<crate::store::Blocks>,
    /// The brokered token cache (it outlives snapshots).
    pub broker: Arc<crate::credentials::Broker>,
    /// Where streamed messages wait (shared with the snapshots before).
    pub spool: Arc<spool::SpoolDir>,
    /// Caps on refusal log lines so a flood cannot flood the logs; one per kind,
    /// so a flood of one kind never hides the others.
    pub logs: LogGates,
    /// Metric handles for requests that matched no route (`route="none"`).
    pub unrouted: RouteCounters,
    /// Every file the snapshot was built from, besides the config file,
    /// with the SHA-256 of its bytes.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// What this snapshot took from the state that outlives it.
    taken: Taken,
    replay_entries: usize,
    blocking: Option<BlockSettings>,
    /// The shared state store (`[state] backend = "redis"`).
    store: Option<Arc<crate::store::RedisStore>>,
}

impl Runtime {
    /// The shared state store, when `[state]` names one.
    pub fn store(&self) -> Option<&Arc<crate::store::RedisStore>> {
        self.store.as_ref()
    }

    pub fn listener(&self, name: &str) -> Option<&Arc<Listener>> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// Makes this snapshot the live one: the state it shares takes its
    /// settings and drops what it no longer uses, and the gauges that
    /// describe what is held (certificates) describe this snapshot.
    pub fn activate(&self, state: &State) {
        state.activate(
            &self.taken,
            self.replay_entries,
            self.blocking.as_ref(),
            self.store.as_ref(),
            &self.metrics,
        );
        for (url, der) in &self.downloaded {
            state.crl_used(url, der);
        }
        let sources: std::collections::HashSet<&str> = self
            .upstreams
            .values()
            .filter_map(|u| u.auth.as_deref().map(|a| a.id.as_str()))
            .collect();
        self.broker.retain(&sources);
        self.metrics.cert_expiry.reset();
        for c in &self.certs {
            self.metrics
                .cert_expiry
                .with_label_values(&[c.held.as_str(), c.name.as_str(), c.subject.as_str()])
                .set(c.not_after_unix);
        }
        self.metrics.crl_next_update.reset();
        for c in &self.crls {
            if let Some(t) = c.next_update_unix {
                self.metrics
                    .crl_next_update
                    .with_label_values(&[c.held.as_str(), c.name.as_str(), c.issuer.as_str()])
                    .set(t);
            }
        }
    }

    /// Loads every certificate and key, builds TLS configs, clients and routes.
    /// Collects every problem rather than stopping at the first, each once.
    pub fn compile(config: &Config, metrics: Arc<Metrics>) -> Result<Runtime, Vec<Problem>> {
        Runtime::compile_with(config, metrics, &State::new())
    }

    /// As `compile`, taking rate buckets, the replay cache, blocks and TLS
    /// sessions from `state`, so they carry over from the snapshot before.
    pub fn compile_with(
        config: &Config,
        metrics: Arc<Metrics>,
        state: &State,
    ) -> Result<Runtime, Vec<Problem>> {
        crate::tls::install_crypto_provider();
        let mut ld = Loader::new(config, state, &metrics);
        ld.problems.extend(config.validate());
        let mut upstreams = BTreeMap::new();
        for (name, u) in &config.upstreams {
            if let Some(up) = Upstream::build(&mut ld, name, u, &metrics) {
                upstreams.insert(name.clone(), Arc::new(up));
            }
        }
        // One replay cache for the gateway: a message seen on one route is a replay on any.
        let replay_entries = config
            .wssec_stages()
            .filter(|s| s.mode == crate::config::WssecMode::Verify)
            .map(|v| {
                v.replay_cache_entries
                    .unwrap_or(state::DEFAULT_REPLAY_ENTRIES)
            })
            .max()
            .unwrap_or(1)
            .max(1);
        let replay = state.replay();
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            if let Some(listener) = Listener::compile(&mut ld, l, i, &upstreams, &replay, &metrics)
            {
                listeners.push(Arc::new(listener));
            }
        }
        let blocking = block_settings(&mut ld, config);
        let max_line = config.log.max_line.0;
        if !(1024..=1 << 20).contains(&max_line) {
            ld.problem("log.max_line", "between 1KiB and 1MiB");
        }
        let store = crate::store::compile(&mut ld, &config.state).and_then(|s| {
            match state.store(&s, &metrics) {
                Ok(store) => Some(store),
                Err(e) => {
                    ld.problem("state.url", e);
                    None
                }
            }
        });
        if let Err(e) = config.log.redactor() {
            ld.problem("log.redact", e.to_string());
        }
        if let Some(dir) = config
            .log
            .audit_file
            .as_deref()
            .map(|p| config.resolve(p))
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                ld.problem(
                    "log.audit_file",
                    format!("{} is not a directory", dir.display()),
                );
            }
        }
        // Deadlines are computed from these: bounded, so none overflows.
        const WEEK: Duration = Duration::from_secs(7 * 86_400);
        for (key, d) in [
            ("server.grace_period", config.server.grace_period.0),
            ("server.drain_delay", config.server.drain_delay.0),
        ] {
            if d > WEEK {
                ld.problem(key, "at most 7 days");
            }
        }
        let blocker = blocking.as_ref().map(|s| {
            let local = state.blocker(
                s,
                BlockMetrics {
                    ip_blocks: metrics.blocks.with_label_values(&["ip"]),
                    identity_blocks: metrics.blocks.with_label_values(&["identity"]),
                    active: metrics.blocked_clients.clone(),
                },
            );
            crate::store::Blocks::new(local, store.clone())
        });
        let header = |h: &str| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok();
        let headers = match (
            header(&config.server.identity_header),
            header(&config.server.request_id_header),
        ) {
            (Some(identity), Some(request_id)) => Some(Headers {
                identity,
                request_id,
            }),
            // `validate` reports invalid names.
            _ => None,
        };
        let certs = std::mem::take(&mut ld.certs);
        let crls = std::mem::take(&mut ld.crls_held);
        let crl_urls = std::mem::take(&mut ld.crl_urls);
        let downloaded = std::mem::take(&mut ld.downloaded);
        let readable_keys = std::mem::take(&mut ld.readable_keys);
        let warnings = std::mem::take(&mut ld.warnings);
        let taken = std::mem::take(&mut ld.taken);
        let files = ld.files();
        let problems = ld.into_problems();
        let (true, Some(headers)) = (problems.is_empty(), headers) else {
            return Err(problems);
        };
        Ok(Runtime {
            crls,
            crl_urls,
            downloaded,
            readable_keys,
            hash: String::new(),
            files,
            taken,
            replay_entries,
            blocking,
            store,
            unrouted: RouteCounters::new(&metrics, "none", crate::refusal::Kind::COUNT),
            listeners,
            upstreams,
            headers,
            limits: config.server.limits.clone(),
            grace_period: config.server.grace_period.0,
            expiry_warnings: {
                let mut w: Vec<Duration> =
                    config.server.expiry_warnings.iter().map(|d| d.0).collect();
                w.sort_by(|a, b| b.cmp(a));
                w.dedup();
                w
            },
            drain_delay: config.server.drain_delay.0,
            admin_listen: config.admin.listen,
            echo_listen: config.echo.as_ref().map(|e| e.listen),
            certs,
            warnings,
            broker: state.broker(&metrics),
            spool: state.spool(
                &config.spool.dir_in(&config.base_dir),
                config.spool.max_total.0,
            ),
            metrics,
            blocker,
            logs: LogGates {
                connections: LogGate::new(50, 100),
                handshakes: LogGate::new(50, 100),
                requests: LogGate::new(50, 100),
            },
        })
    }
}

/// Most failures a block may wait for.
const MAX_FAILURES: u32 = 10_000;

/// `[server.blocking]` compiled; `None` when blocking is off or wrong (the
/// loader has the problem).
fn block_settings(ld: &mut Loader<'_>, config: &Config) -> Option<BlockSettings> {
    let b = config.server.blocking.as_ref()?;
    let mut ok = true;
    for (key, zero) in [
        ("max_failures", b.max_failures == 0),
        ("window", b.window.0.is_zero()),
        ("duration", b.duration.0.is_zero()),
    ] {
        if zero {
            ok = false;
            ld.problem(
                format!("server.blocking.{key}"),
                "must be above zero; remove [server.blocking] to turn blocking off",
            );
        }
    }
    for (key, d) in [("window", b.window.0), ("duration", b.duration.0)] {
        if d > crate::admission::block::MAX_DURATION {
            ok = false;
            ld.problem(format!("server.blocking.{key}"), "at most 366 days");
        }
    }
    if b.max_failures > MAX_FAILURES {
        ok = false;
        ld.problem(
            "server.blocking.max_failures",
            format!("at most {MAX_FAILURES}: each client's recent failures are kept"),
        );
    }
    let never = ld.nets("server.blocking.never_block", &b.never_block)?;
    ok.then(|| BlockSettings {
        max_failures: b.max_failures,
        window: b.window.0,
        duration: b.duration.0,
        never: IpSet::from_nets(&never),
    })
}
