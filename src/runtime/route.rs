//! Compiled routes: matching a request to a route and deciding whether the
//! caller's identity may use it.

use super::upstream::Upstream;
use super::wssec_stage::VerifyStage;
use crate::admission::concurrency::Gate;
use crate::admission::ip::Allowlist;
use crate::admission::rate::{RateLimit, RouteLimit};
use crate::config::{Config, Problem, RateKey, RouteConfig};
use crate::tls::identity::{AllowRule, PeerIdentity};
use http::{HeaderMap, Method};
use prometheus::{Histogram, IntCounter};
use std::sync::Arc;

pub struct Route {
    pub name: String,
    pub soap: bool,
    host: Option<String>,
    path_prefix: String,
    methods: Vec<Method>,
    soap_action: Option<String>,
    allow: Vec<AllowRule>,
    allow_anonymous: bool,
    pub upstream: Arc<Upstream>,
    pub max_body: u64,
    /// Client addresses admitted on this route.
    pub allow_ips: Allowlist,
    /// Every limit must admit the request.
    pub limits: Vec<RouteLimit>,
    /// Requests in flight on this route.
    pub gate: Gate,
    /// WS-Security verification of requests, when the route asks for it.
    pub wssec: Option<Arc<VerifyStage>>,
    pub wssec_ok: IntCounter,
    pub duration: Histogram,
    /// Pre-resolved `sealgate_requests_total` handles by status class (1xx..5xx) and outcome.
    by_class: [[IntCounter; Outcome::ALL.len()]; 5],
}

/// Why a route refused a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No certificate, and the route does not allow anonymous callers.
    Anonymous,
    /// A certificate, but no allow rule matched it.
    NotAllowed,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Anonymous => "no_client_identity",
            Denied::NotAllowed => "identity_not_allowed",
        }
    }
}

impl Route {
    // Each argument is a piece of the snapshot being built; bundling them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn compile(
        config: &Config,
        c: &RouteConfig,
        path: &str,
        upstream: Arc<Upstream>,
        globals: &mut Vec<(String, Arc<RateLimit>)>,
        summaries: &mut Vec<crate::tls::certs::CertSummary>,
        replay: &Arc<crate::wssec::replay::MemoryReplayCache>,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Result<Route, Problem> {
        let wssec = match c.wssec.as_ref().and_then(|w| w.request.as_ref()) {
            Some(v) => VerifyStage::compile(
                config,
                v,
                &format!("{path}.wssec.request"),
                summaries,
                replay,
            )?
            .map(Arc::new),
            None => None,
        };
        let default_max_body = config.server.limits.max_body.0;
        let allow_ips =
            crate::admission::ip::allowlist(config, &c.allow_ips, &c.allow_ips_files, path)?;
        let mut limits = Vec::new();
        for (i, l) in c.rate_limit.as_slice().iter().enumerate() {
            let at = if matches!(c.rate_limit, crate::config::OneOrMany::One(_)) {
                format!("{path}.rate_limit")
            } else {
                format!("{path}.rate_limit[{i}]")
            };
            let limit = if l.key == RateKey::Global {
                // Routes naming the same global rate share one bucket.
                let id = format!("{:?}/{:?}/{:?}", l.per_second, l.per_minute, l.burst);
                match globals.iter().find(|(k, _)| *k == id) {
                    Some((_, g)) => g.clone(),
                    None => {
                        let g = Arc::new(RateLimit::new(&l.rate(), &at)?);
                        globals.push((id, g.clone()));
                        g
                    }
                }
            } else {
                Arc::new(RateLimit::new(&l.rate(), &at)?)
            };
            limits.push(RouteLimit { key: l.key, limit });
        }
        if c.max_concurrent == Some(0) {
            return Err(Problem::new(
                format!("{path}.max_concurrent"),
                "0 would refuse every request; remove the key for no ceiling, or set 1 or more",
            ));
        }
        let gate = Gate::new(
            c.max_concurrent,
            c.queue_timeout.0,
            metrics
                .route_in_flight
                .with_label_values(&[c.name.as_str()]),
        );
        let mut allow = Vec::with_capacity(c.allow.len());
        for (j, r) in c.allow.iter().enumerate() {
            allow.push(
                AllowRule::compile(r).map_err(|m| Problem::new(format!("{path}.allow[{j}]"), m))?,
            );
        }
        let methods = c
            .matcher
            .methods
            .iter()
            .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Problem::new(format!("{path}.match.methods"), e.to_string()))?;
        let name = c.name.clone();
        let by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|cls| {
            Outcome::ALL.map(|o| {
                metrics
                    .requests
                    .with_label_values(&[name.as_str(), cls, o.label()])
            })
        });
        Ok(Route {
            duration: metrics.request_duration.with_label_values(&[name.as_str()]),
            by_class,
            name,
            // A route that verifies WS-Security speaks SOAP, faults included.
            soap: c.soap || wssec.is_some(),
            host: c.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
            path_prefix: c.matcher.path_prefix.clone().unwrap_or_else(|| "/".into()),
            methods,
            soap_action: c.matcher.soap_action.clone(),
            allow,
            allow_anonymous: c.allow_anonymous,
            upstream,
            // Verification buffers the body, so its own, smaller ceiling applies.
            max_body: match (&wssec, c.max_body) {
                (Some(w), Some(m)) => w.max_body.min(m.0),
                (Some(w), None) => w.max_body,
                (None, m) => m.map(|s| s.0).unwrap_or(default_max_body),
            },
            wssec_ok: metrics
                .wssec_verifications
                .with_label_values(&[c.name.as_str(), "ok", "ok"]),
            wssec,
            allow_ips,
            limits,
            gate,
        })
    }

    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// Whether the route also matches on host, method or SOAP action — things
    /// the client chooses, so a request for its path can miss it.
    pub fn constrained(&self) -> bool {
        self.host.is_some() || !self.methods.is_empty() || self.soap_action.is_some()
    }

    /// More specific routes sort first: a host, a longer prefix, methods, an action.
    pub fn specificity(&self) -> (bool, usize, bool, bool) {
        (
            self.host.is_some(),
            self.path_prefix.len(),
            !self.methods.is_empty(),
            self.soap_action.is_some(),
        )
    }

    pub fn matches(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        if !path.starts_with(&self.path_prefix) {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if let Some(want) = &self.host {
            match host {
                Some(h) if h.eq_ignore_ascii_case(want) => {}
                _ => return false,
            }
        }
        if let Some(want) = &self.soap_action {
            if soap_action(headers).as_deref() != Some(want.as_str()) {
                return false;
            }
        }
        true
    }

    /// Identity authorization: any rule admits; no rules admit any verified client.
    pub fn authorize(&self, id: Option<&PeerIdentity>) -> Result<(), Denied> {
        match id {
            None if self.allow_anonymous => Ok(()),
            None => Err(Denied::Anonymous),
            Some(_) if self.allow.is_empty() => Ok(()),
            Some(id) if self.allow.iter().any(|r| r.matches(id)) => Ok(()),
            Some(_) => Err(Denied::NotAllowed),
        }
    }

    pub fn count(&self, status: u16, outcome: Outcome) {
        let i = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[i][outcome as usize].inc();
    }
}

/// How a request ended, for `sealgate_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (below 500).
    Ok = 0,
    /// The upstream answered with a 5xx.
    UpstreamError = 1,
    /// The gateway refused the request (4xx it wrote itself).
    Refused = 2,
    /// The gateway could not complete it (5xx it wrote itself: timeouts, 502s).
    Failed = 3,
    /// The client went away before the response.
    Cancelled = 4,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::UpstreamError,
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Cancelled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The SOAP action of a request, quotes removed: for SOAP 1.2
/// (`application/soap+xml`) the Content-Type's `action` parameter, which is
/// what SOAP 1.2 services dispatch on; otherwise the SOAP 1.1 `SOAPAction` header.
pub fn soap_action(headers: &HeaderMap) -> Option<String> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/soap+xml")
    {
        return ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("action")
                .then(|| v.trim().trim_matches('"').to_string())
        });
    }
    headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// Two `SOAPAction` headers, or a SOAP 1.2 action that disagrees with one:
/// the gateway and the service could pick different operations.
pub fn ambiguous_soap_action(headers: &HeaderMap) -> bool {
    let mut all = headers.get_all("soapaction").iter();
    let first = all.next();
    if all.next().is_some() {
        return true;
    }
    match (first.and_then(|v| v.to_str().ok()), soap_action(headers)) {
        (Some(h), Some(a)) => h.trim().trim_matches('"') != a,
        _ => false,
    }
}
