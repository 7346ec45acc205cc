//! State that outlives snapshots: rate-limit buckets, the replay cache,
//! blocks and TLS session state. A reload compiles a new `Runtime` that
//! takes its pieces from here, so a client half-way through its burst, a
//! message seen a second ago or a blocked address stay as they were.
//!
//! Compiling only adds to the state (get or create); what the live snapshot
//! no longer uses is dropped when a new one is swapped in (`retain`), so a
//! reload that fails changes nothing.

use crate::admission::block::{BlockMetrics, BlockSettings, Blocker};
use crate::admission::rate::{Rate, RateError, RateLimit, SingleLimit};
use crate::store::{RedisStore, Replay, StoreSettings};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// A rate limiter kept across snapshots, found again by what it is.
#[derive(Clone)]
enum Kept {
    Keyed(Arc<RateLimit>),
    Single(Arc<SingleLimit>),
}

/// The TLS session cache and ticket keys of one listener, so a client can
/// resume across a reload (its certificate is checked again when it does).
#[derive(Clone)]
pub struct TlsSessions {
    pub cache: Arc<dyn rustls::server::StoresServerSessions>,
    pub ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

pub struct State {
    limiters: Mutex<HashMap<String, Kept>>,
    replay: Arc<Replay>,
    /// The shared store, kept while its settings are.
    store: Mutex<Option<Arc<RedisStore>>>,
    blocker: Mutex<Option<Arc<Blocker>>>,
    broker: Mutex<Option<Arc<crate::credentials::Broker>>>,
    sessions: Mutex<HashMap<String, TlsSessions>>,
    crl_downloads: Mutex<HashMap<String, Download>>,
    spools: Mutex<HashMap<std::path::PathBuf, Arc<super::spool::SpoolDir>>>,
}

/// The copies of one CRL URL a snapshot may choose from.
#[derive(Debug, Clone)]
pub struct CrlCopies {
    pub good: Option<Vec<u8>>,
    pub latest: Option<Vec<u8>>,
}

/// What fetching one CRL URL has given: the copy a snapshot went live with
/// (verified against its issuing CA, the one a failed fetch falls back
/// to), a newer download not yet verified against the CAs of a snapshot
/// (the CAs may be changing with it), and the last error.
#[derive(Debug, Clone, Default)]
struct Download {
    good: Option<Vec<u8>>,
    latest: Option<Vec<u8>>,
    error: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// What one snapshot took from the state, by id, so the rest can go once it is live.
#[derive(Debug, Default, Clone)]
pub struct Taken(BTreeSet<String>);

impl State {
    pub fn new() -> State {
        State {
            limiters: Mutex::new(HashMap::new()),
            replay: Arc::new(Replay::new(DEFAULT_REPLAY_ENTRIES)),
            store: Mutex::new(None),
            blocker: Mutex::new(None),
            broker: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
            crl_downloads: Mutex::new(HashMap::new()),
            spools: Mutex::new(HashMap::new()),
        }
    }

    /// The keyed limiter for `id` (where it is configured, and its rate), made
    /// on first use; the same id gets the same buckets in every snapshot.
    pub fn keyed_limit(
        &self,
        taken: &mut Taken,
        id: String,
        rate: &Rate,
        max_keys: usize,
    ) -> Result<Arc<RateLimit>, RateError> {
        self.limiter(
            taken,
            format!("{id} {rate:?} keys={max_keys}"),
            |k| match k {
                Kept::Keyed(l) => Some(l.clone()),
                Kept::Single(_) => None,
            },
            Kept::Keyed,
            || RateLimit::new(rate, max_keys).map(|l| l.with_id(shared_id(&id, rate))),
        )
    }

    /// The single bucket for `id`; routes naming the same global rate pass the same id.
    pub fn single_limit(
        &self,
        taken: &mut Taken,
        id: String,
        rate: &Rate,
    ) -> Result<Arc<SingleLimit>, RateError> {
        self.limiter(
            taken,
            format!("{id} {rate:?}"),
            |k| match k {
                Kept::Single(l) => Some(l.clone()),
                Kept::Keyed(_) => None,
            },
            Kept::Single,
            || SingleLimit::new(rate).map(|l| l.with_id(shared_id(&id, rate))),
        )
    }

    /// The limiter kept under `id`, or a new one kept from now on.
    fn limiter<T>(
        &self,
        taken: &mut Taken,
        id: String,
        find: impl Fn(&Kept) -> Option<Arc<T>>,
        keep: impl Fn(Arc<T>) -> Kept,
        make: impl FnOnce() -> Result<T, RateError>,
    ) -> Result<Arc<T>, RateError> {
        let mut m = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        let l = match m.get(&id).and_then(&find) {
            Some(l) => l,
            None => {
                let l = Arc::new(make()?);
                m.insert(id.clone(), keep(l.clone()));
                l
            }
        };
        taken.0.insert(id);
        Ok(l)
    }

    /// The gateway's one replay cache: a message seen on one route, or under
    /// an earlier snapshot, is a replay on any.
    pub fn replay(&self) -> Arc<Replay> {
        self.replay.clone()
    }

    /// The shared store for `settings`: the one held when its settings are
    /// the same (its connections stay), else a new one, connecting in the
    /// background. Taken into use by `activate`.
    pub fn store(
        &self,
        settings: &StoreSettings,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Result<Arc<RedisStore>, String> {
        let held = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_ref() {
            Some(s) if s.settings() == settings => Ok(s.clone()),
            _ => RedisStore::new(settings.clone(), metrics),
        }
    }

    /// The blocker, with its table of failures and blocks; made with
    /// `settings` the first time, reconfigured only by `activate`.
    pub fn blocker(&self, settings: &BlockSettings, metrics: BlockMetrics) -> Arc<Blocker> {
        let mut b = self.blocker.lock().unwrap_or_else(PoisonError::into_inner);
        b.get_or_insert_with(|| Arc::new(Blocker::new(settings.clone(), Some(metrics))))
            .clone()
    }

    /// The spool directory `dir`, the same one for every snapshot that names
    /// it (so its cap counts the messages of all of them), with `max_total`.
    pub fn spool(&self, dir: &std::path::Path, max_total: u64) -> Arc<super::spool::SpoolDir> {
        let mut s = self.spools.lock().unwrap_or_else(PoisonError::into_inner);
        let d = s
            .entry(dir.to_owned())
            .or_insert_with(|| Arc::new(super::spool::SpoolDir::new(dir, max_total)));
        d.set_max_total(max_total);
        d.clone()
    }

    /// The brokered token cache, made on first use with `metrics`.
    pub fn broker(
        &self,
        metrics: &crate::telemetry::metrics::Metrics,
    ) -> Arc<crate::credentials::Broker> {
        let mut b = self.broker.lock().unwrap_or_else(PoisonError::into_inner);
        b.get_or_insert_with(|| {
            Arc::new(crate::credentials::Broker::new(Some(
                crate::credentials::broker::TokenMetrics {
                    fetches: metrics.token_fetches.clone(),
                    entries: metrics.token_cache_entries.clone(),
                    age: metrics.token_age.clone(),
                },
            )))
        })
        .clone()
    }

    /// A listener's TLS session state, kept while its client-certificate mode is.
    pub fn tls_sessions(&self, taken: &mut Taken, listener: &str, mode: &str) -> TlsSessions {
        let id = format!("tls {listener} {mode}");
        let mut m = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let s = m
            .entry(id.clone())
            .or_insert_with(|| TlsSessions {
                cache: rustls::server::ServerSessionMemoryCache::new(4096),
                ticketer: rustls::crypto::aws_lc_rs::Ticketer::new().ok(),
            })
            .clone();
        taken.0.insert(id);
        s
    }

    /// What is held for `url`: the verified copy and a newer candidate;
    /// the last error when neither exists; `None` when never fetched.
    pub fn crl_download(&self, url: &str) -> Option<Result<CrlCopies, String>> {
        let m = self
            .crl_downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let d = m.get(url)?;
        Some(match (&d.good, &d.latest) {
            (None, None) => Err(d.error.clone().unwrap_or_else(|| "not fetched yet".into())),
            (good, latest) => Ok(CrlCopies {
                good: good.clone(),
                latest: latest.clone(),
            }),
        })
    }

    /// Whether a verified copy of `url` is held.
    pub fn crl_verified(&self, url: &str) -> bool {
        let m = self
            .crl_downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.get(url).is_some_and(|d| d.good.is_some())
    }

    /// Records a download as the candidate for the next snapshot; whether it
    /// differs from what is held.
    pub fn crl_fetched(&self, url: &str, der: Vec<u8>) -> bool {
        let mut m = self
            .crl_downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let d = m.entry(url.to_owned()).or_default();
        d.error = None;
        if d.good.as_ref() == Some(&der) {
            d.latest = None;
            return false;
        }
        let changed = d.latest.as_ref() != Some(&der);
        d.latest = Some(der);
        changed
    }

    /// A snapshot went live with `der` from `url`: it is the verified copy.
    pub fn crl_used(&self, url: &str, der: &[u8]) {
        let mut m = self
            .crl_downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let d = m.entry(url.to_owned()).or_default();
        if d.latest.as_deref() == Some(der) {
            d.latest = None;
        }
        d.good = Some(der.to_vec());
    }

    /// Whether the verified copy of `url` is `der`.
    pub fn crl_is_good(&self, url: &str, der: &[u8]) -> bool {
        let m = self
            .crl_downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.get(url).and_then(|d| d.good.as_deref()) == Some(der)
    }

    /// Records a failed fetch; the last good copy stays.
    pub fn crl_fetch_failed(&self, url: &str, error: String) {
        let mut m = self
            .crl_downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.entry(url.to_owned()).or_default().error = Some(error);
    }

    /// Called as a snapshot goes live: settings that are shared take its
    /// values, and what it did not take is dropped.
    pub fn activate(
        &self,
        taken: &Taken,
        replay_entries: usize,
        blocking: Option<&BlockSettings>,
        store: Option<&Arc<RedisStore>>,
        metrics: &crate::telemetry::metrics::Metrics,
    ) {
        self.replay.set_capacity(replay_entries);
        if let Some(s) = store {
            s.connect();
        }
        self.replay.share(store.cloned());
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = store.cloned();
        if store.is_none() {
            metrics.state_backend_up.set(1);
        }
        if let (Some(b), Some(s)) = (
            self.blocker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref(),
            blocking,
        ) {
            b.reconfigure(s.clone());
        }
        if blocking.is_none() {
            // Blocking turned off: its table goes, as a restart would drop it.
            *self.blocker.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        self.limiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| taken.0.contains(id));
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| taken.0.contains(id));
    }
}

pub const DEFAULT_REPLAY_ENTRIES: usize = 100_000;

/// A limit's name in a shared store: the same on every replica with the
/// same config, and a new one when its place or rate changes (as its
/// in-memory buckets would be).
fn shared_id(id: &str, rate: &Rate) -> String {
    let digest = super::material::sha256(format!("{id} {rate:?}").as_bytes());
    crate::hex::lower(&digest[..digest.len().min(8)])
}
