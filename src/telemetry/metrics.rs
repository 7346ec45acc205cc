//! The Prometheus registry and every metric sealgate exports.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metric families. Label values that are known when a `Runtime` is built are
/// resolved then; the request path only increments handles.
pub struct Metrics {
    pub registry: Registry,
    pub connections: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub request_body: HistogramVec,
    pub response_body: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub rejections: IntCounterVec,
    pub upstream_in_flight: IntGaugeVec,
    pub route_in_flight: IntGaugeVec,
    pub blocked_clients: IntGauge,
    pub blocks: IntCounterVec,
    pub wssec_verifications: IntCounterVec,
    pub wssec_signatures: IntCounterVec,
    pub cert_expiry: IntGaugeVec,
    pub crl_next_update: IntGaugeVec,
    pub open_connections: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: IntGauge,
    pub config_last_reload_successful: IntGauge,
    pub config_hash: IntGaugeVec,
    /// Handshakes accepted on a CRL past its nextUpdate, within the configured grace.
    pub crl_stale_tolerated: IntCounterVec,
    pub crl_fetches: IntCounterVec,
    pub state_backend_up: IntGauge,
    pub state_operations: IntCounterVec,
    pub token_fetches: IntCounterVec,
    pub token_cache_entries: IntGauge,
    pub token_age: IntGaugeVec,
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}")); // ok: constant names
    let _ = r.register(Box::new(g.clone()));
    g
}

fn single_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")); // ok: constant names
    let _ = r.register(Box::new(g.clone()));
    g
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
        // ok: names and labels are constants; failure here is a programming error caught by tests
        panic!("metric {name}: {e}")
    });
    let _ = r.register(Box::new(c.clone()));
    c
}

/// Seconds: from 50 µs, so the gateway's own sub-millisecond overhead
/// resolves, to two minutes for bulk transfers.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Bytes: from 256 B to 1 GiB by fours (the "unexpected message size" alert).
const BYTES: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
];

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    histogram_in(r, name, help, labels, SECONDS)
}

fn histogram_in(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name}: {e}")); // ok: constant names
    let _ = r.register(Box::new(h.clone()));
    h
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        // CPU, memory, open files and start time of this process, as
        // `process_*` (Linux; elsewhere the collector is absent).
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let build = gauge(
            &r,
            "sealgate_build_info",
            "1, labelled with the version of the sealgate binary serving",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let upstream_in_flight = IntGaugeVec::new(
            Opts::new(
                "sealgate_upstream_in_flight",
                "Requests currently holding a concurrency slot of an upstream",
            ),
            &["upstream"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}")); // ok: constant names
        let _ = r.register(Box::new(upstream_in_flight.clone()));
        let cert_expiry = gauge(
            &r,
            "sealgate_certificate_not_after_timestamp_seconds",
            "notAfter of every certificate the gateway serves, presents, signs with, pins or trusts, as Unix time, by role, the listener, route or upstream holding it, and subject",
            &["role", "name", "subject"],
        );
        let crl_next_update = gauge(
            &r,
            "sealgate_crl_next_update_timestamp_seconds",
            "nextUpdate of every CRL the gateway holds, as Unix time, by role (client_ca, signer_trust), the listener or route holding it, and issuer",
            &["role", "name", "issuer"],
        );
        let route_in_flight = IntGaugeVec::new(
            Opts::new(
                "sealgate_route_in_flight",
                "Requests currently holding a concurrency slot of a route",
            ),
            &["route"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}")); // ok: constant names
        let _ = r.register(Box::new(route_in_flight.clone()));
        let blocked_clients = IntGauge::new(
            "sealgate_blocked_clients",
            "Client addresses and identities blocked right now for repeated authentication failures",
        )
        .unwrap_or_else(|e| panic!("metric: {e}")); // ok: constant names
        let _ = r.register(Box::new(blocked_clients.clone()));
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "sealgate_open_connections",
                "Client connections currently open, by listener",
            ),
            &["listener"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}")); // ok: constant names
        let _ = r.register(Box::new(open_connections.clone()));
        let m = Metrics {
            connections: counter(
                &r,
                "sealgate_connections_total",
                "TCP connections by listener, result and reason",
                &["listener", "result", "reason"],
            ),
            tls_handshakes: counter(
                &r,
                "sealgate_tls_handshakes_total",
                "TLS handshakes by listener, result and reason",
                &["listener", "result", "reason"],
            ),
            requests: counter(
                &r,
                "sealgate_requests_total",
                "Requests by route, status class and outcome",
                &["route", "status_class", "outcome"],
            ),
            request_duration: histogram(
                &r,
                "sealgate_request_duration_seconds",
                "Time from request headers to the end of the response body",
                &["route"],
            ),
            request_body: histogram_in(
                &r,
                "sealgate_request_body_bytes",
                "Request body bytes received from the client, by route",
                &["route"],
                BYTES,
            ),
            response_body: histogram_in(
                &r,
                "sealgate_response_body_bytes",
                "Response body bytes sent to the client, by route",
                &["route"],
                BYTES,
            ),
            upstream_duration: histogram(
                &r,
                "sealgate_upstream_duration_seconds",
                "Time from sending a request upstream to its response headers",
                &["upstream"],
            ),
            rejections: counter(
                &r,
                "sealgate_rejections_total",
                "Requests refused by the gateway, by route, stage and reason",
                &["route", "stage", "reason"],
            ),
            upstream_in_flight,
            route_in_flight,
            blocked_clients,
            blocks: counter(
                &r,
                "sealgate_blocks_total",
                "Blocks imposed for repeated authentication failures, by kind (ip, identity)",
                &["kind"],
            ),
            wssec_verifications: counter(
                &r,
                "sealgate_wssec_verifications_total",
                "WS-Security verifications by route, direction (request, response), result (ok, failed) and reason",
                &["route", "direction", "result", "reason"],
            ),
            wssec_signatures: counter(
                &r,
                "sealgate_wssec_signatures_total",
                "WS-Security headers the gateway added, by route, direction (request, response), result (ok, failed) and reason",
                &["route", "direction", "result", "reason"],
            ),
            cert_expiry,
            crl_next_update,
            open_connections,
            config_reloads: counter(
                &r,
                "sealgate_config_reloads_total",
                "Configuration reloads by result (ok, error)",
                &["result"],
            ),
            config_last_reload_success: single_gauge(
                &r,
                "sealgate_config_last_reload_success_timestamp_seconds",
                "When the configuration now serving was loaded, as Unix time",
            ),
            config_last_reload_successful: single_gauge(
                &r,
                "sealgate_config_last_reload_successful",
                "1 when the last reload attempt succeeded, 0 when it failed (the previous configuration still serves)",
            ),
            config_hash: gauge(
                &r,
                "sealgate_config_hash_info",
                "SHA-256 of the configuration now serving and every file it names (1 for the live one)",
                &["sha256"],
            ),
            crl_stale_tolerated: counter(
                &r,
                "sealgate_crl_stale_tolerated_total",
                "Certificates accepted on a CRL past its nextUpdate, within the configured grace, by role and name",
                &["role", "name"],
            ),
            crl_fetches: counter(
                &r,
                "sealgate_crl_fetches_total",
                "CRL downloads from a URL by result (ok, unchanged, error)",
                &["result"],
            ),
            state_backend_up: single_gauge(
                &r,
                "sealgate_state_backend_up",
                "1 while the state backend answers (always, in memory), 0 while a shared store does not",
            ),
            state_operations: counter(
                &r,
                "sealgate_state_operations_total",
                "Operations on the shared state store by kind (replay, rate, block, ping) and result (ok, timeout, error; fallback, fail_open and fail_closed for decisions made without it)",
                &["kind", "result"],
            ),
            token_fetches: counter(
                &r,
                "sealgate_token_fetches_total",
                "Brokered token requests by upstream and result (ok, invalid_grant, invalid_client, refused, unavailable, timeout, bad_answer)",
                &["upstream", "result"],
            ),
            token_cache_entries: single_gauge(
                &r,
                "sealgate_token_cache_entries",
                "Entries in the brokered token cache, one per upstream and principal",
            ),
            token_age: gauge(
                &r,
                "sealgate_token_age_seconds",
                "Age of the oldest cached token of each upstream",
                &["upstream"],
            ),
            registry: r,
        };
        // Series that exist before their first event, so rate() and alerts
        // over them work from the start.
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for result in ["ok", "unchanged", "error"] {
            m.crl_fetches.with_label_values(&[result]);
        }
        for kind in ["ip", "identity"] {
            m.blocks.with_label_values(&[kind]);
        }
        m.state_backend_up.set(1);
        m
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    pub fn upstream_histogram(&self, upstream: &str) -> Histogram {
        self.upstream_duration.with_label_values(&[upstream])
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One counter per reason of a family, under fixed leading labels (a route,
/// a listener), each resolved on first use and then kept for the snapshot's
/// life: the request path increments a handle, it never formats a label.
pub struct ReasonCounters {
    vec: IntCounterVec,
    leading: Vec<String>,
    slots: Box<[std::sync::OnceLock<prometheus::IntCounter>]>,
}

impl ReasonCounters {
    pub fn new(vec: &IntCounterVec, leading: &[&str], count: usize) -> ReasonCounters {
        ReasonCounters {
            vec: vec.clone(),
            leading: leading.iter().map(|s| (*s).to_owned()).collect(),
            slots: (0..count).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    /// The counter for the reason at `index`, whose remaining label values are `tail`.
    pub fn get(&self, index: usize, tail: &[&str]) -> prometheus::IntCounter {
        let make = || {
            let mut values: Vec<&str> = self.leading.iter().map(String::as_str).collect();
            values.extend_from_slice(tail);
            self.vec.with_label_values(&values)
        };
        match self.slots.get(index) {
            Some(slot) => slot.get_or_init(make).clone(),
            None => make(),
        }
    }

    pub fn inc(&self, index: usize, tail: &[&str]) {
        match self.slots.get(index).and_then(|s| s.get()) {
            Some(c) => c.inc(),
            None => self.get(index, tail).inc(),
        }
    }
}
