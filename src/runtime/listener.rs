//! A compiled listener: its TLS, its admission rules at accept, its routes
//! (most specific first) and its metric handles.

use super::material::{Held, Loader};
use super::route::Route;
use super::route_table::RouteTable;
use super::upstream::Upstream;
use crate::admission::ip::{Allowlist, IpSet};
use crate::admission::rate::{Rate, RateLimit};
use crate::admission::Refused;
use crate::config::{ClientAuth, Config, ListenerConfig, Problem, TlsVersion};
use crate::fingerprint::Fingerprint;
use crate::telemetry::metrics::{Metrics, ReasonCounters};
use crate::tls::certs::Role;
use crate::tls::reason::Handshake;
use crate::tls::server::{ClientCerts, CrlCheck, ServerSettings};
use prometheus::{IntCounter, IntGauge};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// PROXY protocol settings of a listener, compiled.
pub struct ProxyProtocol {
    pub trusted: IpSet,
    pub optional: bool,
    pub timeout: Duration,
}

/// Metric handles of one listener.
pub struct ListenerCounters {
    pub accepted: IntCounter,
    pub handshake_ok: IntCounter,
    /// `sealgate_tls_handshakes_total{listener,result="refused",reason}`.
    pub handshake_refused: ReasonCounters,
    /// `sealgate_connections_total{listener,result="refused",reason}`.
    pub refused: ReasonCounters,
    pub open: IntGauge,
}

impl ListenerCounters {
    fn new(m: &Metrics, name: &str) -> ListenerCounters {
        ListenerCounters {
            accepted: m.connections.with_label_values(&[name, "accepted", "ok"]),
            handshake_ok: m.tls_handshakes.with_label_values(&[name, "ok", "ok"]),
            handshake_refused: ReasonCounters::new(
                &m.tls_handshakes,
                &[name, "refused"],
                Handshake::COUNT,
            ),
            refused: ReasonCounters::new(&m.connections, &[name, "refused"], Refused::COUNT),
            open: m.open_connections.with_label_values(&[name]),
        }
    }

    pub fn handshake_refused(&self, r: Handshake) {
        self.handshake_refused.inc(r.index(), &[r.as_str()]);
    }

    pub fn refused(&self, r: Refused) {
        self.refused.inc(r.index(), &[r.as_str()]);
    }
}

pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    /// Checks a resumed session's client certificate again, against this
    /// snapshot's CAs and CRLs (rustls skips the check on resumption).
    pub client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    pub client_certs: ClientCerts,
    /// Routes of this listener, most specific first.
    pub routes: RouteTable,
    /// Client addresses admitted at accept, before any TLS work.
    pub allow_ips: Allowlist,
    pub proxy_protocol: Option<ProxyProtocol>,
    /// New handshakes per client IP.
    pub handshake_rate: Option<Arc<RateLimit>>,
    /// Connections open at once; more are refused at accept.
    pub max_connections: Option<usize>,
    pub counters: ListenerCounters,
}

impl Listener {
    /// Compiles listener `i`; every problem it has goes to the loader, not
    /// only the first.
    pub fn compile(
        ld: &mut Loader<'_>,
        l: &ListenerConfig,
        i: usize,
        upstreams: &BTreeMap<String, Arc<Upstream>>,
        replay: &Arc<crate::store::Replay>,
        metrics: &Metrics,
    ) -> Option<Listener> {
        let lp = format!("listener[{i}]");
        let before = ld.problems.len();
        let allow_ips = ld.allowlist(&lp, &l.allow_ips, &l.allow_ips_files);
        let proxy_protocol = match &l.proxy_protocol {
            None => Some(None),
            Some(p) => {
                let at = format!("{lp}.proxy_protocol.trusted");
                match ld.nets(&at, &p.trusted) {
                    Some(nets) if nets.is_empty() => {
                        ld.problem(at, "list the load balancers' addresses; with none, every PROXY header would be refused");
                        None
                    }
                    Some(nets) => Some(Some(ProxyProtocol {
                        trusted: IpSet::from_nets(&nets),
                        optional: p.optional,
                        timeout: p.timeout.0,
                    })),
                    None => None,
                }
            }
        };
        let handshake_rate = match &l.handshake_rate {
            None => Some(None),
            Some(r) => {
                let rate = Rate {
                    per_second: r.per_second,
                    per_minute: r.per_minute,
                    burst: r.burst,
                };
                let id = format!("listener {:?} handshake_rate", l.name);
                match ld.state.keyed_limit(&mut ld.taken, id, &rate, r.max_keys) {
                    Ok(limit) => Some(Some(limit)),
                    Err(e) => {
                        ld.problem(format!("{lp}.handshake_rate"), e.to_string());
                        None
                    }
                }
            }
        };
        if l.max_connections == Some(0) {
            ld.problem(
                format!("{lp}.max_connections"),
                "0 would refuse every connection; remove the key for no ceiling, or set 1 or more",
            );
        }
        let tls = server_tls(ld, l, &format!("{lp}.tls"));
        let mut routes = Vec::new();
        let config = ld.config;
        for (j, r) in config.routes.iter().enumerate() {
            if r.listener != l.name {
                continue;
            }
            // An unknown upstream is reported by `validate`.
            let Some(up) = upstreams.get(&r.upstream) else {
                continue;
            };
            let at = format!("route[{j}]");
            if let Some(route) = Route::compile(ld, r, &at, up.clone(), replay, metrics) {
                routes.push(Arc::new(route));
            }
        }
        // Stable sort keeps config order among equally specific routes.
        routes.sort_by_key(|r| std::cmp::Reverse(r.matcher.specificity()));
        ld.problems.extend(unverified_shadows(&routes, config));
        let (Some(allow_ips), Some(proxy_protocol), Some(handshake_rate), Some(tls)) =
            (allow_ips, proxy_protocol, handshake_rate, tls)
        else {
            return None;
        };
        if ld.problems.len() > before {
            return None;
        }
        Some(Listener {
            counters: ListenerCounters::new(metrics, &l.name),
            name: l.name.clone(),
            addr: l.listen,
            tls: tls.config,
            client_verifier: tls.client_verifier,
            client_certs: client_certs(l.tls.client_auth),
            routes: RouteTable::new(routes),
            allow_ips,
            proxy_protocol,
            handshake_rate,
            max_connections: l.max_connections,
        })
    }
}

fn client_certs(a: ClientAuth) -> ClientCerts {
    match a {
        ClientAuth::Required => ClientCerts::Required,
        ClientAuth::Optional => ClientCerts::Optional,
        ClientAuth::Off => ClientCerts::Off,
    }
}

/// The listener's rustls config; every file's problem is recorded.
fn server_tls(
    ld: &mut Loader<'_>,
    l: &ListenerConfig,
    at: &str,
) -> Option<crate::tls::server::ServerTls> {
    let tls = &l.tls;
    let identity = ld.identity(
        Held(Role::Listener, &l.name),
        at,
        ("cert", &tls.cert),
        ("key", &tls.key),
    );
    let mode = client_certs(tls.client_auth);
    let (anchors, roots) = match (mode, &tls.client_ca) {
        (ClientCerts::Off, _) | (_, None) => (Vec::new(), Some(rustls::RootCertStore::empty())),
        (_, Some(ca)) => {
            let key = format!("{at}.client_ca");
            match ld.certificates(Held(Role::ClientCa, &l.name), &key, ca) {
                Some(a) => (a.clone(), ld.root_store(&key, ca, a)),
                None => (Vec::new(), None),
            }
        }
    };
    let mut issuers = anchors;
    for (i, p) in tls.client_intermediates.iter().enumerate() {
        let key = format!("{at}.client_intermediates[{i}]");
        issuers.extend(
            ld.certificates(Held(Role::ClientCa, &l.name), &key, p)
                .unwrap_or_default(),
        );
    }
    let crls = if roots.is_some() {
        ld.crls(
            Held(Role::ClientCa, &l.name),
            &format!("{at}.crls"),
            &tls.crls,
            &issuers,
            tls.crl_stale_grace.0,
        )
    } else {
        None
    };
    let (pinned_clients, pinned_subjects) = pinned_clients(ld, tls, &l.name, at);
    if mode != ClientCerts::Off && tls.client_ca.is_none() && !tls.crls.is_empty() {
        ld.problem(
            format!("{at}.crls"),
            "CRLs are checked for certificates issued by client_ca, and there is none; pinned clients are revoked by removing their pin",
        );
    }
    let (identity, client_roots, crls) = (identity?, roots?, crls?);
    let sessions = tls.session_resumption.then(|| {
        let mode = format!("{mode:?} ca={:?}", tls.client_ca);
        ld.state.tls_sessions(&mut ld.taken, &l.name, &mode)
    });
    let settings = ServerSettings {
        identity,
        client_certs: mode,
        client_roots,
        pinned_clients,
        pinned_subjects,
        crls: crls.ders,
        freshness: crls.freshness,
        crl_check: match tls.crl_check {
            crate::config::CrlCheck::Chain => CrlCheck::Chain,
            crate::config::CrlCheck::Leaf => CrlCheck::Leaf,
        },
        tls13_only: tls.min_version == TlsVersion::V1_3,
        sessions,
    };
    match crate::tls::server::server_config(settings) {
        Ok(sc) => Some(sc),
        Err(e) => {
            ld.problem(format!("{at}.crls"), e.to_string());
            None
        }
    }
}

/// The listener's pinned client certificates: fingerprints, and the subjects
/// of those given as files (hints for the client's choice of certificate).
fn pinned_clients(
    ld: &mut Loader<'_>,
    tls: &crate::config::ListenerTls,
    name: &str,
    at: &str,
) -> (Vec<Fingerprint>, Vec<rustls::DistinguishedName>) {
    let mut pins = Vec::new();
    let mut subjects = Vec::new();
    for (i, p) in tls.pinned_clients.iter().enumerate() {
        let key = format!("{at}.pinned_clients[{i}]");
        match (&p.cert, &p.fingerprint_sha256) {
            (Some(file), None) => {
                for der in ld.certificates(Held(Role::Pinned, name), &format!("{key}.cert"), file).unwrap_or_default() {
                    pins.push(Fingerprint::of(&der));
                    if let Ok((_, c)) = x509_parser::parse_x509_certificate(&der) {
                        subjects.push(rustls::DistinguishedName::from(
                            c.subject().as_raw().to_vec(),
                        ));
                    }
                }
            }
            (None, Some(fp)) => match Fingerprint::parse(fp) {
                Ok(f) => pins.push(f),
                Err(e) => ld.problem(format!("{key}.fingerprint_sha256"), e.to_string()),
            },
            _ => ld.problem(
                key,
                "a pinned client is { cert = \"org.crt\" } or { fingerprint_sha256 = \"AB:CD:...\" }, one of the two",
            ),
        }
    }
    (pins, subjects)
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
        if !verifying.verifies_requests() {
            continue;
        }
        let vp = verifying.matcher.path_prefix();
        for (j, other) in routes.iter().enumerate() {
            let same_upstream = Arc::ptr_eq(&other.upstream, &verifying.upstream);
            if other.verifies_requests() || !same_upstream {
                continue;
            }
            let covers = vp.starts_with(other.matcher.path_prefix());
            let other_first = j < i;
            if covers && (other_first || verifying.matcher.constrained()) {
                out.push(Problem::new(
                    format!("route[{}]", index(&other.name)),
                    format!(
                        "route {:?} does not verify WS-Security but can receive requests for {vp:?}, which route {:?} verifies (same upstream); give it a path prefix that does not cover {vp:?}, verify on it too, or send it to another upstream",
                        other.name, verifying.name,
                    ),
                ));
            }
        }
    }
    out
}
