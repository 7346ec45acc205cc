//! CRLs from distribution points (`crls = [{ url = "http://...", refresh = "1h" }]`):
//! fetched before the first snapshot is compiled, then again every
//! `refresh` in the background. A copy is verified against the issuing CA
//! before it is kept; a changed one is swapped in by a reload like a changed
//! file; a failed fetch keeps the last good copy (and says so).

use super::{Live, Reloader};
use crate::config::{Config, CrlSource};
use crate::runtime::material::CrlUrlUse;
use crate::runtime::state::{CrlCopies, State};
use crate::telemetry::audit;
use crate::telemetry::metrics::Metrics;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CRL larger than this is refused (the largest public CAs' stay far below).
const MAX_CRL_BYTES: usize = 32 << 20;

/// Every CRL URL a config names, with its fetch timeout.
fn urls(config: &Config) -> Vec<(String, Duration)> {
    let listener = config.listeners.iter().flat_map(|l| l.tls.crls.iter());
    let stages = config.wssec_stages().flat_map(|s| s.crls.iter());
    listener
        .chain(stages)
        .filter_map(|c| match c {
            CrlSource::Url(u) => Some((u.url.clone(), u.timeout.0)),
            CrlSource::File(_) => None,
        })
        .collect()
}

/// Whether the config takes any CRL from a URL.
pub fn names_urls(config: &Config) -> bool {
    !urls(config).is_empty()
}

/// Fetches the CRL URLs the config names that no snapshot has used yet
/// (`all`: every one, when a compile failed and the CAs may have changed
/// with their CRLs), as candidates the snapshot verifies as it loads them.
/// A failure keeps any copy held.
pub async fn fetch_missing(config: &Config, state: &State, metrics: &Metrics, all: bool) {
    let mut seen = std::collections::HashSet::new();
    for (url, timeout) in urls(config) {
        if !seen.insert(url.clone()) || (!all && state.crl_verified(&url)) {
            continue;
        }
        match download(&url, timeout).await {
            Ok(bytes) => {
                metrics.crl_fetches.with_label_values(&["ok"]).inc();
                state.crl_fetched(&url, bytes);
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

/// More CRLs than this in one download is refused (a distribution point
/// publishes one; each costs a signature check).
const MAX_CRLS_PER_SOURCE: usize = 16;

/// Each CRL's issuer (raw DN) and thisUpdate.
type Issued = Vec<(Vec<u8>, i64)>;

/// Parses `bytes` and checks every CRL in it against `issuers`.
pub fn verify(bytes: &[u8], url: &str, issuers: &[CertificateDer<'_>]) -> Result<Issued, String> {
    let ders = crate::tls::certs::parse_crls(bytes, std::path::Path::new(url))
        .map_err(|e| e.to_string())?;
    if ders.len() > MAX_CRLS_PER_SOURCE {
        return Err(format!(
            "{url}: {} CRLs in one download (at most {MAX_CRLS_PER_SOURCE})",
            ders.len()
        ));
    }
    ders.iter()
        .map(|der| {
            crate::tls::crl::check(der.as_ref(), url, issuers)
                .map(|c| (c.issuer_raw, c.this_update_unix))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Why `new` may not replace `held`: a CRL of the same issuer issued
/// earlier would bring back a certificate revoked since (a stale mirror, or
/// someone on the plain-HTTP path).
fn rollback(new: &Issued, held: &Issued, url: &str) -> Option<String> {
    new.iter().find_map(|(issuer, t)| {
        let h = held.iter().find(|(i, _)| i == issuer)?.1;
        (*t < h).then(|| {
            format!("{url}: the CRL served was issued before the one in use (thisUpdate {t} < {h}); keeping the newer one")
        })
    })
}

/// The copy of `url` a snapshot uses: the newer candidate when it verifies
/// against `issuers` and is no older than the copy in use, else the copy in
/// use (its problems reported by the loader).
pub fn choose(copies: &CrlCopies, url: &str, issuers: &[CertificateDer<'_>]) -> Vec<u8> {
    if let Some(latest) = &copies.latest {
        if let Ok(new) = verify(latest, url, issuers) {
            let held = copies
                .good
                .as_deref()
                .and_then(|g| verify(g, url, issuers).ok());
            if held.is_none_or(|h| rollback(&new, &h, url).is_none()) {
                return latest.clone();
            }
        }
    }
    match (&copies.good, &copies.latest) {
        (Some(g), _) | (None, Some(g)) => g.clone(),
        (None, None) => Vec::new(),
    }
}

/// One URL as the live snapshot uses it: every CA list it must verify with.
struct Use<'a> {
    url: &'a str,
    refresh: Duration,
    timeout: Duration,
    issuers: Vec<&'a [CertificateDer<'static>]>,
}

fn uses(list: &[CrlUrlUse]) -> Vec<Use<'_>> {
    let mut out: Vec<Use<'_>> = Vec::new();
    for u in list {
        match out.iter_mut().find(|x| x.url == u.url) {
            Some(x) => {
                x.refresh = x.refresh.min(u.refresh);
                x.timeout = x.timeout.min(u.timeout);
                x.issuers.push(&u.issuers);
            }
            None => out.push(Use {
                url: &u.url,
                refresh: u.refresh,
                timeout: u.timeout,
                issuers: vec![&u.issuers],
            }),
        }
    }
    out
}

/// A download judged against the live snapshot's CAs and the copy in use.
fn judge(bytes: &[u8], u: &Use<'_>, state: &State) -> Result<(), String> {
    let good = state
        .crl_download(u.url)
        .and_then(Result::ok)
        .and_then(|c| c.good);
    for issuers in &u.issuers {
        let new = verify(bytes, u.url, issuers)?;
        if let Some(held) = good.as_deref().and_then(|g| verify(g, u.url, issuers).ok()) {
            if let Some(e) = rollback(&new, &held, u.url) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `base + d`, or far ahead when that would overflow.
fn later(base: Instant, d: Duration) -> Instant {
    base.checked_add(d)
        .unwrap_or_else(|| base + Duration::from_secs(365 * 86_400))
}

/// How soon a failed fetch is tried again.
const RETRY: Duration = Duration::from_secs(60);

/// How often a reload is asked for again while a verified new CRL waits
/// (an unrelated broken file keeps refusing reloads).
const ASK_AGAIN: Duration = Duration::from_secs(10);

/// Fetches every URL the live snapshot uses when its refresh is due; a
/// verified, changed copy becomes the candidate and a reload is asked for
/// until a snapshot uses it.
pub async fn run(live: Arc<Live>, reloader: Reloader) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    // Verified downloads no live snapshot uses yet.
    let mut waiting: HashMap<String, Vec<u8>> = HashMap::new();
    let mut asked: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let rt = live.current();
        let now = Instant::now();
        for u in uses(&rt.crl_urls) {
            let next = due
                .entry(u.url.to_owned())
                .or_insert_with(|| later(now, u.refresh));
            if *next > now {
                continue;
            }
            *next = later(now, u.refresh);
            let result = match download(u.url, u.timeout).await {
                Ok(bytes) if live.state.crl_is_good(u.url, &bytes) => Ok(None),
                Ok(bytes) => {
                    // Parsing and signature checks of what a server sent stay
                    // off the async workers.
                    let (state, checked) = (live.state.clone(), rt.clone());
                    let url = u.url.to_owned();
                    tokio::task::spawn_blocking(move || {
                        let u = uses(&checked.crl_urls).into_iter().find(|x| x.url == url);
                        match u {
                            Some(u) => judge(&bytes, &u, &state).map(|()| Some(bytes)),
                            None => Ok(None),
                        }
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("checking the CRL failed: {e}")))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(None) => {
                    live.metrics
                        .crl_fetches
                        .with_label_values(&["unchanged"])
                        .inc();
                }
                Ok(Some(bytes)) => {
                    live.metrics.crl_fetches.with_label_values(&["ok"]).inc();
                    if live.state.crl_fetched(u.url, bytes.clone()) {
                        audit::crl_fetch(u.url, "ok", "a new CRL; reloading");
                    }
                    waiting.insert(u.url.to_owned(), bytes);
                }
                Err(e) => {
                    live.metrics.crl_fetches.with_label_values(&["error"]).inc();
                    audit::crl_fetch(u.url, "error", &e);
                    live.state.crl_fetch_failed(u.url, e);
                    *next = later(now, u.refresh.min(RETRY));
                }
            }
        }
        due.retain(|url, _| rt.crl_urls.iter().any(|u| &u.url == url));
        waiting.retain(|url, der| {
            rt.crl_urls.iter().any(|u| &u.url == url)
                && !rt.downloaded.iter().any(|(u, d)| u == url && d == der)
        });
        if !waiting.is_empty() && asked.is_none_or(|t| t.elapsed() >= ASK_AGAIN) {
            asked = Some(Instant::now());
            if let Err(e) = reloader.reload("crl_fetch").await {
                tracing::debug!(target: "sealgate", error = %e, "reload after a CRL download failed");
            }
        } else if waiting.is_empty() {
            asked = None;
        }
    }
}
