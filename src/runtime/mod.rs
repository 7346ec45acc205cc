//! The `Runtime`: everything a request needs, compiled once from the config and
//! never changed afterwards. A new config means a new `Runtime`.

pub mod route;
pub mod upstream;
pub mod wssec_stage;

use crate::admission::block::Blocker;
use crate::admission::ip::{self, Allowlist, IpSet};
use crate::admission::rate::RateLimit;
use crate::config::{ClientAuth, Config, LimitsConfig, Problem};
use crate::telemetry::logging::LogGate;
use crate::telemetry::metrics::Metrics;
use crate::tls::certs::CertSummary;
use http::HeaderName;
use prometheus::IntCounter;
use route::Route;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use upstream::Upstream;

pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
    /// Routes of this listener, most specific first.
    pub routes: Vec<Arc<Route>>,
    pub handshake_ok: IntCounter,
    pub accepted: IntCounter,
    /// Client addresses admitted at accept, before any TLS work.
    pub allow_ips: Allowlist,
    pub proxy_protocol: Option<ProxyProtocol>,
    /// New handshakes per client IP.
    pub handshake_rate: Option<RateLimit>,
}

/// A route without WS-Security that can receive requests for the path of a
/// verifying route to the same upstream — because it sorts first, or because
/// the verifying route also matches on host, method or SOAP action, which the
/// client chooses — would let unverified messages through. `routes` is sorted.
fn unverified_shadows(routes: &[Arc<Route>], config: &Config) -> Vec<Problem> {
    let index = |name: &str| {
        config
            .routes
            .iter()
            .position(|r| r.name == name)
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for (i, verifying) in routes.iter().enumerate() {
        if verifying.wssec.is_none() {
            continue;
        }
        for (j, other) in routes.iter().enumerate() {
            let same_upstream = Arc::ptr_eq(&other.upstream, &verifying.upstream);
            if other.wssec.is_some() || !same_upstream {
                continue;
            }
            let covers = verifying.path_prefix().starts_with(other.path_prefix());
            let other_first = j < i;
            if covers && (other_first || verifying.constrained()) {
                out.push(Problem::new(
                    format!("route[{}]", index(&other.name)),
                    format!(
                        "route {:?} does not verify WS-Security but can receive requests for {:?}, which route {:?} verifies (same upstream); give it a path prefix that does not cover {:?}, verify on it too, or send it to another upstream",
                        other.name,
                        verifying.path_prefix(),
                        verifying.name,
                        verifying.path_prefix()
                    ),
                ));
            }
        }
    }
    out
}

pub struct LogGates {
    pub connections: LogGate,
    pub handshakes: LogGate,
    pub requests: LogGate,
}

/// PROXY protocol settings of a listener, compiled.
pub struct ProxyProtocol {
    pub trusted: IpSet,
    pub optional: bool,
    pub timeout: Duration,
}

pub struct Runtime {
    pub listeners: Vec<Arc<Listener>>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub identity_header: HeaderName,
    pub request_id_header: HeaderName,
    pub limits: LimitsConfig,
    pub grace_period: Duration,
    pub admin_listen: SocketAddr,
    pub echo_listen: Option<SocketAddr>,
    pub certs: Vec<CertSummary>,
    pub metrics: Arc<Metrics>,
    pub blocker: Option<Blocker>,
    /// Caps on refusal log lines so a flood cannot flood the logs; one per kind,
    /// so a flood of one kind never hides the others.
    pub logs: LogGates,
}

impl Runtime {
    /// Loads every certificate and key, builds TLS configs, clients and routes.
    /// Collects every problem rather than stopping at the first.
    pub fn compile(config: &Config, metrics: Arc<Metrics>) -> Result<Runtime, Vec<Problem>> {
        crate::tls::install_crypto_provider();
        let mut problems = config.validate();
        let mut certs = Vec::new();
        let mut upstreams = BTreeMap::new();
        for (name, u) in &config.upstreams {
            match Upstream::build(config, name, u, &mut certs, &metrics) {
                Ok(up) => {
                    upstreams.insert(name.clone(), Arc::new(up));
                }
                Err(p) => problems.push(p),
            }
        }
        let mut listeners = Vec::new();
        let mut globals = Vec::new();
        // One replay cache for the gateway: a message seen on one route is a replay on any.
        let replay_entries = config
            .routes
            .iter()
            .filter_map(|r| r.wssec.as_ref()?.request.as_ref())
            .map(|v| v.replay_cache_entries)
            .max()
            .unwrap_or(1)
            .max(1);
        let replay = Arc::new(crate::wssec::replay::MemoryReplayCache::new(replay_entries));
        for (i, l) in config.listeners.iter().enumerate() {
            let lp = format!("listener[{i}]");
            let admission = (|| -> Result<_, Problem> {
                let allow = ip::allowlist(config, &l.allow_ips, &l.allow_ips_files, &lp)?;
                let proxy = match &l.proxy_protocol {
                    None => None,
                    Some(p) => {
                        let nets =
                            ip::parse_list(&p.trusted, &format!("{lp}.proxy_protocol.trusted"))?;
                        if nets.is_empty() {
                            return Err(Problem::new(
                                format!("{lp}.proxy_protocol.trusted"),
                                "list the load balancers' addresses; with none, every PROXY header would be refused",
                            ));
                        }
                        Some(ProxyProtocol {
                            trusted: IpSet::from_nets(&nets),
                            optional: p.optional,
                            timeout: p.timeout.0,
                        })
                    }
                };
                let hs = match &l.handshake_rate {
                    None => None,
                    Some(r) => Some(RateLimit::new(r, &format!("{lp}.handshake_rate"))?),
                };
                Ok((allow, proxy, hs))
            })();
            let (allow_ips, proxy_protocol, handshake_rate) = match admission {
                Ok(x) => x,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let tls = match crate::tls::server::server_config(
                config,
                &l.tls,
                &format!("listener[{i}].tls"),
                &mut certs,
            ) {
                Ok(t) => t,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let mut routes = Vec::new();
            for (j, r) in config.routes.iter().enumerate() {
                if r.listener != l.name {
                    continue;
                }
                let Some(up) = upstreams.get(&r.upstream) else {
                    continue; // already reported by validate()
                };
                match Route::compile(
                    config,
                    r,
                    &format!("route[{j}]"),
                    up.clone(),
                    &mut globals,
                    &mut certs,
                    &replay,
                    &metrics,
                ) {
                    Ok(route) => routes.push(Arc::new(route)),
                    Err(p) => problems.push(p),
                }
            }
            // Stable sort keeps config order among equally specific routes.
            routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
            problems.extend(unverified_shadows(&routes, config));
            listeners.push(Arc::new(Listener {
                name: l.name.clone(),
                addr: l.listen,
                tls,
                client_auth: l.tls.client_auth,
                routes,
                handshake_ok: metrics.tls_handshakes.with_label_values(&[
                    l.name.as_str(),
                    "ok",
                    "ok",
                ]),
                accepted: metrics.connections.with_label_values(&[
                    l.name.as_str(),
                    "accepted",
                    "ok",
                ]),
                allow_ips,
                proxy_protocol,
                handshake_rate,
            }));
        }
        let blocker = match &config.server.blocking {
            None => None,
            Some(b) => {
                let mut ok = true;
                for (key, zero) in [
                    ("max_failures", b.max_failures == 0),
                    ("window", b.window.0.is_zero()),
                    ("duration", b.duration.0.is_zero()),
                ] {
                    if zero {
                        ok = false;
                        problems.push(Problem::new(
                            format!("server.blocking.{key}"),
                            "must be above zero; remove [server.blocking] to turn blocking off",
                        ));
                    }
                }
                match ip::parse_list(&b.never_block, "server.blocking.never_block") {
                    Ok(nets) if ok => Some(Blocker::new(
                        b.max_failures,
                        b.window.0,
                        b.duration.0,
                        IpSet::from_nets(&nets),
                    )),
                    Ok(_) => None,
                    Err(p) => {
                        problems.push(p);
                        None
                    }
                }
            }
        };
        if !problems.is_empty() {
            problems.dedup();
            return Err(problems);
        }
        for c in &certs {
            metrics
                .cert_expiry
                .with_label_values(&[c.role.as_str(), c.subject.as_str()])
                .set(c.not_after_unix);
        }
        let header = |h: &str| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes());
        let (Ok(identity_header), Ok(request_id_header)) = (
            header(&config.server.identity_header),
            header(&config.server.request_id_header),
        ) else {
            return Err(vec![Problem::new("server", "invalid header name")]);
        };
        Ok(Runtime {
            listeners,
            upstreams,
            identity_header,
            request_id_header,
            limits: config.server.limits.clone(),
            grace_period: config.server.grace_period.0,
            admin_listen: config.admin.listen,
            echo_listen: config.echo.as_ref().map(|e| e.listen),
            certs,
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
