//! An upstream: its pooled HTTP client (with its own TLS identity), its timeouts
//! and its concurrency ceiling.

use super::material::{Held, Loader};
use crate::admission::concurrency::Gate;
use crate::config::UpstreamConfig;
use crate::tls::certs::Role;
use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::Histogram;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type that flows through the gateway in both directions.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The connector of an upstream's pool: TCP, then TLS, within one deadline.
pub type Connector = WithinDeadline<HttpsConnector<HttpConnector>>;

/// One upstream. Every upstream owns its client and so its connection pool: a
/// pooled connection carries the TLS identity it was opened with and is never
/// shared with another upstream (or another gateway identity).
pub struct Upstream {
    pub name: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The `Host` sent upstream unless the client's is preserved.
    pub host_value: Option<HeaderValue>,
    /// URL path without a trailing slash, prepended to every request path.
    pub base_path: String,
    /// One client, so one pool, per worker runtime (`runtime::worker`): a
    /// pooled connection is driven by the thread of the requests that use it.
    clients: Box<[Client<Connector, ProxyBody>]>,
    /// TCP connect and TLS handshake together.
    pub connect_timeout: Duration,
    /// From the end of the request body to the response headers.
    pub request_timeout: Duration,
    pub preserve_host: bool,
    /// The upstream's concurrency ceiling (Salesforce: 25 long-running calls per org).
    pub gate: Gate,
    pub duration: Histogram,
    /// The credential the gateway holds for this upstream.
    pub auth: Option<std::sync::Arc<crate::credentials::Source>>,
}

/// A host the gateway may reach over plain http (a local service or test
/// peer, never a network hop).
pub fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// TCP (no Nagle, keep-alive) then TLS with `tls`, or plain http: the
/// connector of every outbound client (upstreams, token endpoints).
pub fn https_connector(tls: rustls::ClientConfig) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}

impl Upstream {
    /// The client of the worker the current thread serves.
    pub fn client(&self) -> &Client<Connector, ProxyBody> {
        let i = super::worker::index() % self.clients.len();
        // `build` makes one client per worker, at least one.
        &self.clients[i]
    }

    /// Builds one upstream; problems go to the loader.
    pub fn build(
        ld: &mut Loader<'_>,
        name: &str,
        u: &UpstreamConfig,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Option<Upstream> {
        let at = format!("upstream.{name}");
        // `validate` reports a URL that does not parse.
        let uri: Uri = u.url.parse().ok()?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return None;
        };
        let roots = match u.ca.as_deref() {
            // A plain-http upstream never uses the roots; don't demand system CAs for it.
            None if scheme == http::uri::Scheme::HTTP => Some(rustls::RootCertStore::empty()),
            None | Some("system") => ld.system_roots(&format!("{at}.ca")),
            Some(file) => ld.roots(
                Held(Role::UpstreamCa, name),
                &format!("{at}.ca"),
                std::path::Path::new(file),
            ),
        };
        let identity = match (&u.client_cert, &u.client_key) {
            (Some(c), Some(k)) => ld
                .identity(
                    Held(Role::UpstreamClient, name),
                    &at,
                    ("client_cert", c),
                    ("client_key", k),
                )
                .map(Some),
            _ => Some(None),
        };
        let auth = match &u.auth {
            None => Some(None),
            Some(a) => crate::credentials::source::compile(ld, name, a)
                .map(|s| Some(std::sync::Arc::new(s))),
        };
        let (roots, identity, auth) = (roots?, identity?, auth?);
        if auth.is_some() && scheme == http::uri::Scheme::HTTP && !is_loopback(authority.host()) {
            ld.problem(
                format!("{at}.url"),
                "an upstream the gateway presents a credential to must be https:// (plain http only on loopback)",
            );
            return None;
        }
        if auth
            .as_ref()
            .is_some_and(|a| matches!(a.kind, crate::credentials::source::Kind::Fetched(_)))
        {
            // Series that exist before the first fetch, so alerts on them work.
            for result in crate::credentials::fetch::RESULTS {
                metrics.token_fetches.with_label_values(&[name, result]);
            }
        }
        let tls = match crate::tls::upstream::client_config(roots, identity) {
            Ok(t) => t,
            Err(e) => {
                ld.problem(at, e.to_string());
                return None;
            }
        };
        let https = https_connector(tls);
        let clients = (0..super::worker::count())
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(u.pool_idle_timeout.0)
                    .pool_max_idle_per_host(u.pool_max_idle_per_host)
                    .build(WithinDeadline {
                        inner: https.clone(),
                        deadline: u.connect_timeout.0,
                    })
            })
            .collect();
        Some(Upstream {
            name: name.to_string(),
            host_value: HeaderValue::from_str(authority.as_str()).ok(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            clients,
            connect_timeout: u.connect_timeout.0,
            request_timeout: u.request_timeout.0,
            preserve_host: u.preserve_host,
            gate: Gate::new(
                u.max_concurrent,
                u.queue_timeout.0,
                metrics.upstream_in_flight.with_label_values(&[name]),
            ),
            duration: metrics.upstream_histogram(name),
            auth,
        })
    }

    /// Builds the upstream URI for a client request's path and query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let mut pq = String::with_capacity(self.base_path.len() + path.len() + 1);
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

/// Wraps a connector so the whole connection — TCP connect and the TLS
/// handshake — must be ready within one deadline (hyper's own connect timeout
/// covers TCP only, so a server that accepts and then stalls the handshake
/// would otherwise hold the request until the response timeout).
#[derive(Clone)]
pub struct WithinDeadline<C> {
    inner: C,
    deadline: Duration,
}

impl<C> tower_service::Service<Uri> for WithinDeadline<C>
where
    C: tower_service::Service<Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let deadline = self.deadline;
        Box::pin(async move {
            match tokio::time::timeout(deadline, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to the upstream (TCP and TLS) timed out",
                )) as BoxError),
            }
        })
    }
}
