//! Compiled routes: what a request must look like to take a route, who may
//! use it, its limits, and its metric handles.

use super::authz::{AllowRule, Authz};
use super::material::Loader;
use super::upstream::Upstream;
use super::wssec_stage::{Direction, Stage};
use crate::admission::concurrency::Gate;
use crate::admission::ip::Allowlist;
use crate::admission::rate::{Rate, RateLimit, SingleLimit};
use crate::config::{RateKey, RouteConfig};
use crate::telemetry::metrics::{Metrics, ReasonCounters};
use crate::tls::identity::PeerIdentity;
use http::{HeaderMap, Method};
use prometheus::{Histogram, IntCounter};
use std::sync::Arc;
use std::time::Duration;

/// One rate limit of a route, by what it is keyed on.
pub enum Limit {
    /// Per client certificate (anonymous callers per address).
    Client(Arc<RateLimit>),
    /// Per client address (IPv6 per /64).
    Ip(Arc<RateLimit>),
    /// One bucket: the route's, or one shared by every route naming the same global rate.
    One(Arc<SingleLimit>),
}

/// What a request must look like to take a route.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Lower case, no port.
    host: Option<String>,
    /// Normalised like request paths.
    path_prefix: String,
    methods: Vec<Method>,
    soap_action: Option<String>,
}

impl Matcher {
    /// `host` lower case without a port, `path_prefix` normalised like
    /// request paths; no methods means any.
    pub fn new(
        host: Option<String>,
        path_prefix: String,
        methods: Vec<Method>,
        soap_action: Option<String>,
    ) -> Matcher {
        Matcher {
            host,
            path_prefix,
            methods,
            soap_action,
        }
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

    /// `host` is lower case without a port; `action` the request's SOAP action.
    pub fn matches(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
        action: Option<&str>,
    ) -> bool {
        path.starts_with(&self.path_prefix)
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.host.as_deref().is_none_or(|want| host == Some(want))
            && self
                .soap_action
                .as_deref()
                .is_none_or(|want| action == Some(want))
    }
}

/// Pre-resolved metric handles of a route (or of requests that matched none).
pub struct RouteCounters {
    /// `sealgate_requests_total` by status class (1xx..5xx) and outcome.
    by_class: [[IntCounter; Outcome::ALL.len()]; 5],
    pub duration: Histogram,
    /// `sealgate_request_body_bytes`, `sealgate_response_body_bytes`.
    pub request_body: Histogram,
    pub response_body: Histogram,
    /// `sealgate_rejections_total{route,stage,reason}` by refusal index.
    pub rejections: ReasonCounters,
    /// WS-Security outcomes by direction (`Direction as usize`).
    pub wssec: [WssecCounters; 2],
}

/// `sealgate_wssec_verifications_total` and `sealgate_wssec_signatures_total`
/// of one route and direction: `result="ok"`, or `"failed"` by reason.
pub struct WssecCounters {
    pub verified: IntCounter,
    pub verify_failed: ReasonCounters,
    pub signed: IntCounter,
    pub sign_failed: ReasonCounters,
}

impl WssecCounters {
    fn new(metrics: &Metrics, route: &str, d: Direction) -> WssecCounters {
        let n = crate::wssec::reason::Reason::COUNT;
        let dir = d.as_str();
        WssecCounters {
            verified: metrics
                .wssec_verifications
                .with_label_values(&[route, dir, "ok", "ok"]),
            verify_failed: ReasonCounters::new(
                &metrics.wssec_verifications,
                &[route, dir, "failed"],
                n,
            ),
            signed: metrics
                .wssec_signatures
                .with_label_values(&[route, dir, "ok", "ok"]),
            sign_failed: ReasonCounters::new(&metrics.wssec_signatures, &[route, dir, "failed"], n),
        }
    }
}

impl RouteCounters {
    pub fn new(metrics: &Metrics, route: &str, refusal_count: usize) -> RouteCounters {
        RouteCounters {
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|cls| {
                Outcome::ALL.map(|o| metrics.requests.with_label_values(&[route, cls, o.label()]))
            }),
            duration: metrics.request_duration.with_label_values(&[route]),
            request_body: metrics.request_body.with_label_values(&[route]),
            response_body: metrics.response_body.with_label_values(&[route]),
            rejections: ReasonCounters::new(&metrics.rejections, &[route], refusal_count),
            wssec: Direction::ALL.map(|d| WssecCounters::new(metrics, route, d)),
        }
    }

    pub fn count(&self, status: u16, outcome: Outcome) {
        let i = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[i][outcome as usize].inc();
    }
}

pub struct Route {
    pub name: String,
    /// Errors are SOAP faults (1.1 or 1.2, following the request).
    pub soap: bool,
    pub matcher: Matcher,
    pub authz: Authz,
    pub upstream: Arc<Upstream>,
    pub max_body: u64,
    /// A verified request above `max_body` streams through the spool up to
    /// this (0: refused with 413).
    pub max_streamed: u64,
    /// Client addresses admitted on this route.
    pub allow_ips: Allowlist,
    /// Every limit must admit the request.
    pub limits: Vec<Limit>,
    /// The limits live in a shared store that may refuse when it cannot answer.
    pub shared_rates: bool,
    /// Requests in flight on this route.
    pub gate: Gate,
    /// WS-Security on requests (verify or sign), when the route asks for it.
    pub wssec_request: Option<Arc<Stage>>,
    /// WS-Security on the upstream's responses.
    pub wssec_response: Option<Arc<Stage>>,
    /// No progress in either direction for this long ends the exchange.
    pub body_idle_timeout: Duration,
    /// The whole exchange, request to the end of the response, within this.
    pub max_duration: Option<Duration>,
    /// The upstream's credential, presented on the callers' behalf.
    pub credentials: Option<RouteCredentials>,
    pub counters: RouteCounters,
}

/// How a route presents its upstream's brokered credential.
pub struct RouteCredentials {
    pub source: Arc<crate::credentials::Source>,
    /// The first rule matching the caller names its principal.
    pub principals: Vec<(AllowRule, String)>,
    /// The principal when no rule is configured.
    pub default_principal: Option<String>,
    /// The client's own Authorization and cookies reach the upstream.
    pub pass_client_credentials: bool,
    /// A route to Salesforce: on SOAP calls the session goes in the
    /// envelope's `SessionHeader`, not in `Authorization`.
    pub session: Option<SessionSplice>,
    /// The token is a Salesforce session (gRPC calls carry it as Pub/Sub's
    /// `accesstoken`, `instanceurl` and `tenantid` metadata).
    pub salesforce: bool,
    /// A `static` source's header, as `proxy::headers::strip_where` compares
    /// names (`-` for `_`): the client's is removed, trailers included.
    pub own_header: Option<Arc<str>>,
}

/// How a SOAP message is read to write its SessionHeader.
pub struct SessionSplice {
    /// Every request of the route is a SOAP call (else: those to a SOAP
    /// endpoint's path, `/services/Soap/`).
    pub soap_route: bool,
    pub limits: crate::wssec::xml::Limits,
    /// The message is buffered up to this size (413 above it).
    pub max_body: u64,
    /// Bounds the memory buffered messages take.
    pub slots: Arc<tokio::sync::Semaphore>,
}

impl RouteCredentials {
    /// The principal the caller's token is for; `None`: no rule maps it.
    pub fn principal(&self, id: Option<&PeerIdentity>) -> Option<&str> {
        if self.principals.is_empty() {
            return Some(
                self.default_principal
                    .as_deref()
                    .unwrap_or(crate::credentials::source::APPLICATION),
            );
        }
        let id = id?;
        self.principals
            .iter()
            .find(|(rule, _)| rule.matches(id))
            .map(|(_, p)| p.as_str())
    }

    pub fn is_static(&self) -> bool {
        matches!(
            self.source.kind,
            crate::credentials::source::Kind::Static { .. }
        )
    }
}

impl Matcher {
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
    /// Methods the route takes; empty: any.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }
    pub fn soap_action(&self) -> Option<&str> {
        self.soap_action.as_deref()
    }
}

impl Route {
    /// Every refusal this route can produce, given what it is configured
    /// with: its `sealgate_rejections_total` series exist from the start,
    /// at 0, so `rate()` and alerts work before the first refusal.
    pub fn possible_refusals(&self) -> Vec<crate::refusal::Kind> {
        use crate::refusal::{Kind, Reason as R, Stage};
        let wssec = self.wssec_request.is_some() || self.wssec_response.is_some();
        let session = self
            .credentials
            .as_ref()
            .is_some_and(|c| c.session.is_some());
        let response = self.wssec_response.as_deref();
        let mut out: Vec<Kind> = R::ALL
            .iter()
            .copied()
            .filter(|r| match r {
                R::NoRoute | R::Blocked => false,
                R::IpNotAllowed => !self.allow_ips.is_open(),
                R::IdentityNotAllowed => !self.authz.rules.is_empty(),
                R::RateLimited => !self.limits.is_empty(),
                R::RateStoreUnavailable => !self.limits.is_empty() && self.shared_rates,
                R::NoPrincipal => self
                    .credentials
                    .as_ref()
                    .is_some_and(|c| !c.principals.is_empty()),
                R::TokenUnavailable => self.credentials.as_ref().is_some_and(|c| !c.is_static()),
                R::NotASoapEnvelope => session,
                R::SpoolFull => self.max_streamed > 0,
                R::UnsupportedEncoding => wssec || session,
                R::RouteBusy => self.gate.max.is_some() || session,
                R::UpstreamBusy => self.upstream.gate.max.is_some(),
                R::WssecResponseRefused => response.is_some_and(|s| s.verifies()),
                R::WssecResponseUnsigned => response.is_some_and(|s| !s.verifies()),
                r if r.stage() == Stage::Wssec => wssec,
                _ => true,
            })
            .map(Kind::Proxy)
            .collect();
        if wssec {
            out.extend(
                crate::wssec::reason::Reason::ALL
                    .iter()
                    .copied()
                    .map(Kind::Wssec),
            );
        }
        out
    }

    /// Whether requests on this route must carry a valid signature.
    pub fn verifies_requests(&self) -> bool {
        self.wssec_request.as_ref().is_some_and(|s| s.verifies())
    }

    /// Compiles one route; problems go to the loader. `None` when any was found.
    pub fn compile(
        ld: &mut Loader<'_>,
        c: &RouteConfig,
        at: &str,
        upstream: Arc<Upstream>,
        replay: &Arc<crate::store::Replay>,
        metrics: &Metrics,
    ) -> Option<Route> {
        let before = ld.problems.len();
        let config = ld.config;
        let mut stage = |conf: Option<&crate::config::WssecStageConfig>, d: Direction| match conf {
            Some(v) => Stage::compile(
                ld,
                v,
                &c.name,
                &format!("{at}.wssec.{}", d.as_str()),
                d,
                replay,
            )
            .map(|s| s.map(Arc::new)),
            None => Some(None),
        };
        let wssec_request = stage(
            c.wssec.as_ref().and_then(|w| w.request.as_ref()),
            Direction::Request,
        );
        let wssec_response = stage(
            c.wssec.as_ref().and_then(|w| w.response.as_ref()),
            Direction::Response,
        );
        let allow_ips = ld.allowlist(at, &c.allow_ips, &c.allow_ips_files);
        let mut limits = Vec::new();
        for (i, l) in c.rate_limit.as_slice().iter().enumerate() {
            let lp = if matches!(c.rate_limit, crate::config::OneOrMany::One(_)) {
                format!("{at}.rate_limit")
            } else {
                format!("{at}.rate_limit[{i}]")
            };
            let rate = Rate {
                per_second: l.per_second,
                per_minute: l.per_minute,
                burst: l.burst,
            };
            // Kept across reloads by where the limit is and what it is; every
            // route naming the same global rate shares one bucket.
            let (state, taken) = (ld.state, &mut ld.taken);
            let id = || format!("route {:?} rate[{i}] {:?}", c.name, l.key);
            let limit = match l.key {
                RateKey::Client => state
                    .keyed_limit(taken, id(), &rate, l.max_keys)
                    .map(Limit::Client),
                RateKey::Ip => state
                    .keyed_limit(taken, id(), &rate, l.max_keys)
                    .map(Limit::Ip),
                RateKey::Route => state.single_limit(taken, id(), &rate).map(Limit::One),
                RateKey::Global => state
                    .single_limit(taken, "global".into(), &rate)
                    .map(Limit::One),
            };
            match limit {
                Ok(l) => limits.push(l),
                Err(e) => ld.problem(lp, e.to_string()),
            }
        }
        if c.max_concurrent == Some(0) {
            ld.problem(
                format!("{at}.max_concurrent"),
                "0 would refuse every request; remove the key for no ceiling, or set 1 or more",
            );
        }
        let mut rules = Vec::with_capacity(c.allow.len());
        for (j, r) in c.allow.iter().enumerate() {
            match AllowRule::compile(r) {
                Ok(rule) => rules.push(rule),
                Err(e) => ld.problem(format!("{at}.allow[{j}]"), e.to_string()),
            }
        }
        let methods: Vec<Method> = c
            .matcher
            .methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .collect();
        let path_prefix = match &c.matcher.path_prefix {
            None => "/".to_owned(),
            // `validate` reports a prefix without its leading slash.
            Some(p) if !p.starts_with('/') => p.clone(),
            Some(p) if p.contains(';') => {
                ld.problem(
                    format!("{at}.match.path_prefix"),
                    format!("{p:?} has a \";\" parameter; routes match paths with parameters removed, so write the prefix without it"),
                );
                p.clone()
            }
            Some(p) => match crate::path::normalize(p) {
                Ok(n) => n,
                Err(e) => {
                    ld.problem(
                        format!("{at}.match.path_prefix"),
                        format!("{p:?} is not a normalised path ({e}); requests are normalised before routing, so it could never match as written"),
                    );
                    p.clone()
                }
            },
        };
        let body_idle_timeout = c
            .body_idle_timeout
            .map(|d| d.0)
            .unwrap_or(config.server.limits.body_idle_timeout.0);
        for (key, zero) in [
            ("body_idle_timeout", body_idle_timeout.is_zero()),
            (
                "max_duration",
                c.max_duration.is_some_and(|d| d.0.is_zero()),
            ),
        ] {
            if zero {
                ld.problem(
                    format!("{at}.{key}"),
                    "must be longer than zero; remove the key for the default",
                );
            }
        }
        let (Some(wssec_request), Some(wssec_response), Some(allow_ips)) =
            (wssec_request, wssec_response, allow_ips)
        else {
            return None;
        };
        let credentials = route_credentials(ld, at, c, &upstream);
        if ld.problems.len() > before {
            return None;
        }
        let default_max_body = config.server.limits.max_body.0;
        let route = Route {
            counters: RouteCounters::new(metrics, &c.name, crate::refusal::Kind::COUNT),
            name: c.name.clone(),
            // A route with WS-Security speaks SOAP, faults included.
            soap: c.soap || wssec_request.is_some() || wssec_response.is_some(),
            matcher: Matcher::new(
                c.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
                path_prefix,
                methods,
                c.matcher.soap_action.clone(),
            ),
            authz: Authz {
                rules,
                allow_anonymous: c.allow_anonymous,
            },
            upstream,
            // WS-Security (or the SessionHeader) buffers the body, so its
            // own, smaller ceiling applies.
            max_body: match (&wssec_request, c.max_body) {
                (Some(w), Some(m)) => w.max_body.min(m.0),
                (Some(w), None) => w.max_body,
                (None, m) => credentials
                    .as_ref()
                    .and_then(|c| c.session.as_ref())
                    .filter(|s| s.soap_route)
                    .map(|s| s.max_body)
                    .or(m.map(|s| s.0))
                    .unwrap_or(default_max_body),
            },
            // Spliced with a session, a message must be held whole.
            max_streamed: match (&wssec_request, &credentials) {
                (Some(w), c) if c.as_ref().is_none_or(|c| c.session.is_none()) => w.max_streamed,
                _ => 0,
            },
            gate: Gate::new(
                c.max_concurrent,
                c.queue_timeout.0,
                metrics
                    .route_in_flight
                    .with_label_values(&[c.name.as_str()]),
            ),
            wssec_request,
            wssec_response,
            allow_ips,
            limits,
            shared_rates: ld.config.state.backend == crate::config::StateBackend::Redis
                && ld.config.state.on_failure.rate == crate::config::RateFailure::FailClosed,
            body_idle_timeout,
            max_duration: c.max_duration.map(|d| d.0),
            credentials,
        };
        for k in route.possible_refusals() {
            route
                .counters
                .rejections
                .get(k.index(), &[k.stage().as_str(), k.as_str()]);
        }
        Some(route)
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
    /// The gateway could not complete it (5xx it wrote itself: timeouts, 502s;
    /// or an exchange it ended because the upstream stalled).
    Failed = 3,
    /// The client went away (or stopped reading) before the response ended.
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
pub fn soap_action(headers: &HeaderMap) -> Option<&str> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_soap12(ct) {
        return content_type_param(ct, "action");
    }
    headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"'))
}

/// A Content-Type parameter (`charset`, `action`) as RFC 9110 §5.6.6 writes
/// it: the name in any case, whitespace around `=` and the value, the value
/// maybe quoted; the first occurrence.
pub fn content_type_param<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// `application/soap+xml`, whatever its case and parameters.
pub fn is_soap12(content_type: &str) -> bool {
    let t = content_type.trim_start().as_bytes();
    let want = b"application/soap+xml";
    t.len() >= want.len() && t[..want.len()].eq_ignore_ascii_case(want)
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

/// `[route.credentials]` with its upstream's `[upstream.NAME.auth]`.
fn route_credentials(
    ld: &mut Loader<'_>,
    at: &str,
    c: &RouteConfig,
    upstream: &Upstream,
) -> Option<RouteCredentials> {
    let Some(source) = upstream.auth.clone() else {
        if c.credentials.is_some() {
            ld.problem(
                format!("{at}.credentials"),
                format!(
                    "upstream {:?} has no [upstream.{}.auth]",
                    upstream.name, upstream.name
                ),
            );
        }
        return None;
    };
    let rc = c.credentials.as_ref();
    let mut principals = Vec::new();
    for (j, p) in rc
        .map(|r| r.principals.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let key = format!("{at}.credentials.principals[{j}]");
        if !source.is_salesforce() {
            ld.problem(
                &key,
                format!("a {} source issues one token for the application: principals apply to salesforce_jwt_bearer", source.kind_name()),
            );
            continue;
        }
        if p.principal.trim().is_empty() || p.principal.chars().any(char::is_control) {
            ld.problem(
                format!("{key}.principal"),
                "a user name, such as etl-prod@acme.com",
            );
        }
        match AllowRule::compile(&p.when) {
            Ok(rule) => principals.push((rule, p.principal.trim().to_owned())),
            Err(e) => ld.problem(format!("{key}.when"), e.to_string()),
        }
    }
    let default_principal = match &source.kind {
        crate::credentials::source::Kind::Fetched(f) => f.default_principal.clone(),
        crate::credentials::source::Kind::Static { .. } => None,
    };
    if source.is_salesforce() && principals.is_empty() && default_principal.is_none() {
        ld.problem(
            format!("{at}.credentials.principals"),
            format!(
                "map client identities to Salesforce users here, or set username in [upstream.{}.auth]",
                upstream.name
            ),
        );
    }
    let salesforce = source.is_salesforce();
    let soap = c.soap || c.wssec.is_some();
    let signs = c
        .wssec
        .as_ref()
        .and_then(|w| w.request.as_ref())
        .filter(|r| r.mode == crate::config::WssecMode::Sign);
    if let Some(sign) = signs.filter(|_| salesforce) {
        if sign
            .sign_headers
            .iter()
            .any(|h| h.ends_with("}SessionHeader"))
        {
            ld.problem(
                format!("{at}.wssec.request.sign_headers"),
                "the SessionHeader is written after signing, with the brokered session: it cannot be signed",
            );
        }
    }
    // The SOAP API reads its session from the envelope: the message is
    // buffered (as WS-Security does) to write it there — on a SOAP route, and
    // for a SOAP endpoint's path on any other route to Salesforce.
    let session = salesforce.then(|| {
        let max_body = c.max_body.map_or(
            SESSION_MAX_BODY.min(ld.config.server.limits.max_body.0),
            |m| m.0,
        );
        SessionSplice {
            soap_route: soap,
            limits: crate::runtime::wssec_stage::xml_limits(&Default::default(), max_body),
            max_body,
            slots: Arc::new(tokio::sync::Semaphore::new(SESSION_BUFFERED)),
        }
    });
    if c.allow_anonymous {
        ld.problem(
            format!("{at}.allow_anonymous"),
            "a caller without a certificate would be given the upstream's credential",
        );
    } else if c.allow.is_empty() && principals.is_empty() {
        ld.warn(
            at,
            format!(
                "any client certificate the listener's CA issued gets upstream {:?}'s credential here: add allow rules or [route.credentials] principals",
                upstream.name
            ),
        );
    }
    let own_header = match &source.kind {
        crate::credentials::source::Kind::Static { header, .. } => {
            Some(header.as_str().replace('_', "-").into())
        }
        crate::credentials::source::Kind::Fetched(_) => None,
    };
    Some(RouteCredentials {
        source,
        principals,
        default_principal,
        pass_client_credentials: rc.is_some_and(|r| r.pass_client_credentials),
        own_header,
        session,
        salesforce,
    })
}

/// The largest SOAP message buffered to write a SessionHeader into, unless
/// the route sets `max_body` (WS-Security's default ceiling too).
const SESSION_MAX_BODY: u64 = 16 << 20;
/// SOAP messages a route buffers at once for their SessionHeader
/// (WS-Security's default `max_concurrent`).
const SESSION_BUFFERED: usize = 16;
