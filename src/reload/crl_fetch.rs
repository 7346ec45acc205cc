//! CRLs from distribution points (`crls = [{ url = "http://...", refresh = "1h" }]`):
//! fetched before the first snapshot is compiled, then again every
//! `refresh` in the background. A copy is verified against the issuing CA
//! before it is kept; a changed one is swapped in by a reload like a changed
//! file; a failed fetch keeps the last good copy (and says so).

use super::{Live, Reloader};
use crate::config::{Config, CrlSource};
use crate::runtime::material::CrlUrlUse;
use crate::runtime::state::State;
use crate::telemetry::audit;
use crate::telemetry::metrics::Metrics;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CRL larger than this is refused (the largest public CAs' stay far below).
const MAX_CRL_BYTES: usize = 32 << 20;

/// Every CRL URL a config names, with its fetch timeout.
fn urls(config: &Config) -> Vec<(String, Duration)> {
    let listener = config.listeners.iter().flat_map(|l| l.tls.crls.iter());
    let stages = config
        .routes
        .iter()
        .filter_map(|r| r.wssec.as_ref())
        .flat_map(|w| [w.request.as_ref(), w.response.as_ref()])
        .flatten()
        .flat_map(|s| s.crls.iter());
    listener
        .chain(stages)
        .filter_map(|c| match c {
            CrlSource::Url(u) => Some((u.url.clone(), u.timeout.0)),
            CrlSource::File(_) => None,
        })
        .collect()
}

/// Fetches the CRL URLs the config names that the background fetcher has
/// no verified copy of, so the snapshot can be compiled with them (it
/// verifies them as it loads them). A failure keeps any copy held.
pub async fn fetch_missing(config: &Config, state: &State, metrics: &Metrics) {
    for (url, timeout) in urls(config) {
        if state.crl_verified(&url) {
            continue;
        }
        match download(&url, timeout).await {
            Ok(bytes) => {
                metrics.crl_fetches.with_label_values(&["ok"]).inc();
                state.crl_fetched(&url, bytes, false);
            }
            Err(e) => {
                metrics.crl_fetches.with_label_values(&["error"]).inc();
                audit::crl_fetch(&url, "error", &e);
                state.crl_fetch_failed(&url, e);
            }
        }
    }
}

/// One GET of a CRL over plain HTTP (CRLs are signed; distribution points
/// are `http://` by convention, RFC 5280 section 4.2.1.13).
pub async fn download(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return Err("only http:// distribution points are fetched (a CRL carries its own signature, so HTTPS adds nothing)".into());
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let fetch = async {
        let resp = client
            .get(uri)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("the server answered {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_CRL_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        Ok(body.to_bytes().to_vec())
    };
    match tokio::time::timeout(timeout, fetch).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Parses and verifies a downloaded copy against the CAs it must come from.
fn verify(bytes: &[u8], u: &CrlUrlUse) -> Result<(), String> {
    let ders = crate::tls::certs::parse_crls(bytes, std::path::Path::new(&u.url))
        .map_err(|e| e.to_string())?;
    for der in &ders {
        crate::tls::crl::check(der.as_ref(), &u.url, &u.issuers).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Fetches every URL the live snapshot uses when its refresh is due; a
/// verified, changed copy is kept and a reload asked for.
pub async fn run(live: Arc<Live>, reloader: Reloader) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let rt = live.current();
        let now = Instant::now();
        let mut changed = false;
        for u in &rt.crl_urls {
            let next = due.entry(u.url.clone()).or_insert(now + u.refresh);
            if *next > now {
                continue;
            }
            *next = now + u.refresh;
            let result = match download(&u.url, u.timeout).await {
                Ok(bytes) => verify(&bytes, u).map(|()| bytes),
                Err(e) => Err(e),
            };
            match result {
                Ok(bytes) => {
                    if live.state.crl_fetched(&u.url, bytes, true) {
                        live.metrics.crl_fetches.with_label_values(&["ok"]).inc();
                        audit::crl_fetch(&u.url, "ok", "a new CRL; reloading");
                        changed = true;
                    } else {
                        live.metrics
                            .crl_fetches
                            .with_label_values(&["unchanged"])
                            .inc();
                    }
                }
                Err(e) => {
                    live.metrics.crl_fetches.with_label_values(&["error"]).inc();
                    audit::crl_fetch(&u.url, "error", &e);
                    live.state.crl_fetch_failed(&u.url, e);
                }
            }
        }
        due.retain(|url, _| rt.crl_urls.iter().any(|u| &u.url == url));
        if changed {
            if let Err(e) = reloader.reload("crl_fetch").await {
                tracing::debug!(target: "sealgate", error = %e, "reload after a CRL download failed");
            }
        }
    }
}
