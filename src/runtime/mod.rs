//! The `Runtime`: everything a request needs, compiled once from the config and
//! never changed afterwards. A new config means a new `Runtime`.
//!
//! `material` loads every file the config names, `listener`, `route`,
//! `authz`, `upstream` and `wssec_stage` compile their parts; nothing on the
//! request path parses, formats or loads.

pub mod authz;
pub mod listener;
pub mod material;
pub mod route;
pub mod upstream;
pub mod wssec_stage;

use crate::admission::block::{BlockMetrics, Blocker};
use crate::admission::ip::IpSet;
use crate::config::{Config, LimitsConfig, Problem};
use crate::telemetry::logging::LogGate;
use crate::telemetry::metrics::Metrics;
use crate::tls::certs::CertSummary;
use http::HeaderName;
use listener::Listener;
use material::Loader;
use route::{Globals, RouteCounters};
use std::collections::BTreeMap;
use std::net::SocketAddr;
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
    pub drain_delay: Duration,
    pub admin_listen: SocketAddr,
    pub echo_listen: Option<SocketAddr>,
    pub certs: Vec<CertSummary>,
    /// Config findings that do not stop the gateway (printed by `check`,
    /// logged by `run`).
    pub warnings: Vec<Problem>,
    pub metrics: Arc<Metrics>,
    pub blocker: Option<Arc<Blocker>>,
    /// Caps on refusal log lines so a flood cannot flood the logs; one per kind,
    /// so a flood of one kind never hides the others.
    pub logs: LogGates,
    /// Metric handles for requests that matched no route (`route="none"`).
    pub unrouted: RouteCounters,
}

impl Runtime {
    /// Loads every certificate and key, builds TLS configs, clients and routes.
    /// Collects every problem rather than stopping at the first, each once.
    pub fn compile(config: &Config, metrics: Arc<Metrics>) -> Result<Runtime, Vec<Problem>> {
        crate::tls::install_crypto_provider();
        let mut ld = Loader::new(config);
        ld.problems.extend(config.validate());
        let mut upstreams = BTreeMap::new();
        for (name, u) in &config.upstreams {
            if let Some(up) = Upstream::build(&mut ld, name, u, &metrics) {
                upstreams.insert(name.clone(), Arc::new(up));
            }
        }
        // One replay cache for the gateway: a message seen on one route is a replay on any.
        let replay_entries = config
            .routes
            .iter()
            .filter_map(|r| r.wssec.as_ref())
            .flat_map(|w| [w.request.as_ref(), w.response.as_ref()])
            .flatten()
            .filter(|s| s.mode == crate::config::WssecMode::Verify)
            .map(|v| v.replay_cache_entries.unwrap_or(100_000))
            .max()
            .unwrap_or(1)
            .max(1);
        let replay = Arc::new(crate::wssec::replay::MemoryReplayCache::new(replay_entries));
        let mut globals = Globals::default();
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            if let Some(listener) =
                Listener::compile(&mut ld, l, i, &upstreams, &mut globals, &replay, &metrics)
            {
                listeners.push(Arc::new(listener));
            }
        }
        let blocker = blocker(&mut ld, config, &metrics);
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
        let warnings = std::mem::take(&mut ld.warnings);
        let problems = ld.into_problems();
        let (true, Some(headers)) = (problems.is_empty(), headers) else {
            return Err(problems);
        };
        for c in &certs {
            metrics
                .cert_expiry
                .with_label_values(&[c.role.as_str(), c.subject.as_str()])
                .set(c.not_after_unix);
        }
        Ok(Runtime {
            unrouted: RouteCounters::new(&metrics, "none", crate::refusal::Kind::COUNT),
            listeners,
            upstreams,
            headers,
            limits: config.server.limits.clone(),
            grace_period: config.server.grace_period.0,
            drain_delay: config.server.drain_delay.0,
            admin_listen: config.admin.listen,
            echo_listen: config.echo.as_ref().map(|e| e.listen),
            certs,
            warnings,
            metrics,
            blocker: blocker.map(Arc::new),
            logs: LogGates {
                connections: LogGate::new(50, 100),
                handshakes: LogGate::new(50, 100),
                requests: LogGate::new(50, 100),
            },
        })
    }
}

fn blocker(ld: &mut Loader<'_>, config: &Config, metrics: &Metrics) -> Option<Blocker> {
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
    let never = ld.nets("server.blocking.never_block", &b.never_block)?;
    ok.then(|| {
        Blocker::new(
            b.max_failures,
            b.window.0,
            b.duration.0,
            IpSet::from_nets(&never),
            Some(BlockMetrics {
                ip_blocks: metrics.blocks.with_label_values(&["ip"]),
                identity_blocks: metrics.blocks.with_label_values(&["identity"]),
                active: metrics.blocked_clients.clone(),
            }),
        )
    })
}
