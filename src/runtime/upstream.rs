//! An upstream: its pooled HTTP client (with its own TLS identity), its timeouts
//! and its concurrency ceiling.

use crate::admission::concurrency::Gate;
use crate::config::{Config, Problem, UpstreamConfig};
use crate::tls::certs::CertSummary;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::Histogram;
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type that flows through the gateway in both directions.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// One upstream. Every upstream owns its client and so its connection pool: a
/// pooled connection carries the TLS identity it was opened with and is never
/// shared with another upstream (or another gateway identity).
pub struct Upstream {
    pub name: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// URL path without a trailing slash, prepended to every request path.
    pub base_path: String,
    pub client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub preserve_host: bool,
    /// The upstream's concurrency ceiling (Salesforce: 25 long-running calls per org).
    pub gate: Gate,
    pub duration: Histogram,
}

impl Upstream {
    pub fn build(
        config: &Config,
        name: &str,
        u: &UpstreamConfig,
        summaries: &mut Vec<CertSummary>,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Result<Upstream, Problem> {
        let path = format!("upstream.{name}");
        let uri: http::Uri = u
            .url
            .parse()
            .map_err(|e| Problem::new(format!("{path}.url"), format!("{e}")))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(Problem::new(
                format!("{path}.url"),
                "needs a scheme and host, e.g. \"https://acme.my.salesforce.com\"",
            ));
        };
        let tls = super::super::tls::upstream::client_config(config, u, &path, summaries)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(u.connect_timeout.0));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(u.pool_idle_timeout.0)
            .pool_max_idle_per_host(u.pool_max_idle_per_host)
            .build(connector);
        Ok(Upstream {
            name: name.to_string(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            client,
            connect_timeout: u.connect_timeout.0,
            request_timeout: u.request_timeout.0,
            preserve_host: u.preserve_host,
            gate: Gate::new(
                u.max_concurrent,
                u.queue_timeout.0,
                metrics.upstream_in_flight.with_label_values(&[name]),
            ),
            duration: metrics.upstream_histogram(name),
        })
    }

    /// Builds the upstream URI for a client request's path and query.
    pub fn uri_for(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()
    }
}
