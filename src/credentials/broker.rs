//! The token cache: one entry per (source, principal), bounded; a token is
//! fetched once however many requests wait for it (single flight), reused
//! until it expires, ages out or the upstream refuses it, and not fetched
//! again before a back-off while its endpoint fails.

use super::fetch::FetchError;
use super::source::{Fetcher, Source};
use crate::wssec::tokens::Secret;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most cache entries; beyond it the one used longest ago goes.
const MAX_ENTRIES: usize = 10_000;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest a token is believed to live, whatever its endpoint says.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 86_400);
/// At most one invalidation per entry this often: a client cannot make the
/// gateway log in again on every request by provoking 401s.
const INVALIDATE_EVERY: Duration = Duration::from_secs(10);

/// A token as the broker holds it. Debug shows no secret.
pub struct Token {
    pub value: Secret,
    /// `Authorization: Bearer` as sent (marked sensitive).
    pub bearer: http::HeaderValue,
    pub instance_url: Option<String>,
    /// The organization id (Salesforce's `id` URL), for Pub/Sub's `tenantid`.
    pub tenant_id: Option<String>,
    pub scope: Option<String>,
    pub fetched: Instant,
    pub fetched_unix: u64,
    /// When the endpoint said it ends: not served after it.
    pub expires: Option<Instant>,
    pub expires_unix: Option<u64>,
    /// When a new one is fetched (`max_age`, or ahead of `expires` by the
    /// refresh margin); until a fetch succeeds this one still serves.
    pub refresh_at: Option<Instant>,
    /// Tells this token from the one that replaced it.
    pub serial: u64,
}

impl Token {
    fn usable(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }

    fn due(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|r| now >= r)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("instance_url", &self.instance_url)
            .field("scope", &self.scope)
            .field("fetched_unix", &self.fetched_unix)
            .field("expires_unix", &self.expires_unix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("no token: {detail} (next attempt in {}s)", retry_after.as_secs().max(1))]
pub struct TokenError {
    pub retry_after: Duration,
    /// What the endpoint said (never a secret).
    pub detail: String,
}

pub struct TokenMetrics {
    pub fetches: IntCounterVec,
    pub entries: IntGauge,
    pub age: IntGaugeVec,
}

#[derive(Default)]
struct SlotState {
    token: Option<Arc<Token>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
    /// A token was here before (so the next one is a refresh).
    had_token: bool,
    last_invalidated: Option<Instant>,
}

/// What an entry holds now.
enum Cached {
    /// Current: serve it.
    Fresh(Arc<Token>),
    /// Due for refresh but not ended: served while no new one can be had.
    Due(Arc<Token>),
    None,
}

struct Slot {
    upstream: String,
    state: Mutex<SlotState>,
    /// Held by the one request fetching; the others wait here, then find
    /// its token.
    flight: tokio::sync::Mutex<()>,
    used: Mutex<Instant>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, now: Instant) -> Cached {
        match &self.lock().token {
            Some(t) if t.usable(now) && !t.due(now) => Cached::Fresh(t.clone()),
            Some(t) if t.usable(now) => Cached::Due(t.clone()),
            _ => Cached::None,
        }
    }

    /// Without fetching: the fresh token; during a back-off the token due
    /// for refresh, or the refusal; `Err(None)`: a fetch is called for.
    fn without_fetch(&self, now: Instant) -> Result<Arc<Token>, Option<TokenError>> {
        let due = match self.cached(now) {
            Cached::Fresh(t) => return Ok(t),
            Cached::Due(t) => Some(t),
            Cached::None => None,
        };
        let s = self.lock();
        match (s.retry_at, due) {
            (Some(at), Some(t)) if at > now => Ok(t),
            (Some(at), None) if at > now => Err(Some(TokenError {
                retry_after: at - now,
                detail: s.last_error.clone(),
            })),
            _ => Err(None),
        }
    }

    fn serial(&self) -> Option<u64> {
        self.lock().token.as_ref().map(|t| t.serial)
    }
}

pub struct Broker {
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
    serial: AtomicU64,
    metrics: Option<TokenMetrics>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Broker {
    pub fn new(metrics: Option<TokenMetrics>) -> Broker {
        Broker {
            slots: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(1),
            metrics,
        }
    }

    fn slot(&self, src: &Source, principal: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (src.id.clone(), principal.to_owned());
        if let Some(s) = slots.get(&key) {
            *s.used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            return s.clone();
        }
        if slots.len() >= MAX_ENTRIES {
            let stalest = slots
                .iter()
                .filter(|(_, s)| Arc::strong_count(s) == 1)
                .min_by_key(|(_, s)| *s.used.lock().unwrap_or_else(PoisonError::into_inner))
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                slots.remove(&k);
            }
        }
        let slot = Arc::new(Slot {
            upstream: src.upstream.clone(),
            state: Mutex::new(SlotState::default()),
            flight: tokio::sync::Mutex::new(()),
            used: Mutex::new(Instant::now()),
        });
        slots.insert(key, slot.clone());
        if let Some(m) = &self.metrics {
            m.entries
                .set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
        }
        slot
    }

    /// A current token of `src` for `principal`: cached, or fetched now by
    /// this request (or the one already fetching it).
    pub async fn token(
        &self,
        src: &Source,
        f: &Fetcher,
        principal: &str,
    ) -> Result<Arc<Token>, TokenError> {
        let slot = self.slot(src, principal);
        match slot.without_fetch(Instant::now()) {
            Ok(t) => return Ok(t),
            Err(Some(e)) => return Err(e),
            Err(None) => {}
        }
        let seen = slot.serial();
        let _flight = match slot.flight.try_lock() {
            Ok(g) => g,
            Err(_) => match slot.cached(Instant::now()) {
                // Another request is refreshing it: this one goes on with
                // the token that still serves, not waiting on the endpoint.
                Cached::Due(t) => return Ok(t),
                _ => slot.flight.lock().await,
            },
        };
        // Whoever held the flight before may have fetched a token: take it,
        // however short its life. Or it failed, and the back-off answers.
        if let Cached::Fresh(t) | Cached::Due(t) = slot.cached(Instant::now()) {
            if Some(t.serial) != seen {
                return Ok(t);
            }
        }
        match slot.without_fetch(Instant::now()) {
            Ok(t) => return Ok(t),
            Err(Some(e)) => return Err(e),
            Err(None) => {}
        }
        let fetched = f.fetch(principal).await;
        let now = Instant::now();
        let mut s = slot.lock();
        match fetched {
            Ok(got) => {
                let wall = SystemTime::now();
                let lifetime = got
                    .expires_in
                    .map(|secs| Duration::from_secs(secs).min(MAX_LIFETIME));
                let refresh_in = refresh_in(lifetime, f.max_age, f.refresh_margin);
                let tenant_id = got.org_id();
                let token = Arc::new(Token {
                    value: got.access_token,
                    tenant_id,
                    bearer: got.bearer,
                    instance_url: got.instance_url,
                    scope: got.scope,
                    fetched: now,
                    fetched_unix: unix(wall),
                    expires: lifetime.and_then(|l| now.checked_add(l)),
                    expires_unix: lifetime.and_then(|l| wall.checked_add(l)).map(unix),
                    refresh_at: refresh_in.and_then(|r| now.checked_add(r)),
                    serial: self.serial.fetch_add(1, Ordering::Relaxed),
                });
                let refreshed = s.had_token;
                s.had_token = true;
                s.token = Some(token.clone());
                s.failures = 0;
                s.retry_at = None;
                drop(s);
                self.count(&src.upstream, "ok");
                crate::telemetry::audit::token_issued(
                    &src.upstream,
                    principal,
                    token.scope.as_deref().unwrap_or(""),
                    token.expires_unix,
                    refreshed,
                );
                Ok(token)
            }
            Err(e) => {
                s.failures = s.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (s.failures - 1).min(5))
                    .min(MAX_BACKOFF);
                s.retry_at = Some(now + backoff);
                s.last_error = e.to_string();
                // A token due for refresh but not ended still serves.
                let still = s.token.clone().filter(|t| t.usable(now));
                drop(s);
                self.count(&src.upstream, e.result());
                refused(&src.upstream, principal, &e);
                still.ok_or(TokenError {
                    retry_after: backoff,
                    detail: e.to_string(),
                })
            }
        }
    }

    /// The upstream refused `token`: it is not handed out again (unless
    /// already replaced, or another was refused moments ago).
    pub fn invalidate(&self, src: &Source, principal: &str, token: &Token) {
        let slot = self.slot(src, principal);
        let now = Instant::now();
        let mut s = slot.lock();
        let recent = s
            .last_invalidated
            .is_some_and(|t| now.duration_since(t) < INVALIDATE_EVERY);
        if !recent && s.token.as_ref().is_some_and(|t| t.serial == token.serial) {
            s.token = None;
            s.last_invalidated = Some(now);
            drop(s);
            crate::telemetry::audit::token_invalidated(&src.upstream, principal);
        }
    }

    /// Forgets the entries of sources the live configuration no longer has
    /// (a rotated secret, a removed upstream).
    pub fn retain(&self, live: &std::collections::HashSet<&str>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|(id, _), _| live.contains(id.as_str()));
        if let Some(m) = &self.metrics {
            m.entries
                .set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
        }
    }

    fn count(&self, upstream: &str, result: &str) {
        if let Some(m) = &self.metrics {
            m.fetches.with_label_values(&[upstream, result]).inc();
        }
    }

    /// Sets the gauges of the oldest usable token per upstream (on a timer).
    pub fn observe(&self) {
        let Some(m) = &self.metrics else { return };
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut oldest: HashMap<&str, u64> = HashMap::new();
        for slot in slots.values() {
            let s = slot.lock();
            if let Some(t) = s.token.as_ref().filter(|t| t.usable(now)) {
                let age = now.duration_since(t.fetched).as_secs();
                let e = oldest.entry(slot.upstream.as_str()).or_default();
                *e = (*e).max(age);
            }
        }
        m.age.reset();
        for (up, age) in oldest {
            m.age
                .with_label_values(&[up])
                .set(i64::try_from(age).unwrap_or(i64::MAX));
        }
        m.entries
            .set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
    }
}

/// How long until a token is fetched anew: ahead of its end by the margin,
/// but never sooner than halfway through a short life; and within max_age.
/// `None`: when the upstream refuses it.
fn refresh_in(
    lifetime: Option<Duration>,
    max_age: Option<Duration>,
    margin: Duration,
) -> Option<Duration> {
    match (lifetime, max_age) {
        (Some(l), age) => Some((l - margin.min(l / 2)).min(age.unwrap_or(l))),
        (None, age) => age,
    }
}

fn refused(upstream: &str, principal: &str, e: &FetchError) {
    crate::telemetry::audit::token_refused(upstream, principal, e.result(), &e.to_string());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn tokens_are_refreshed_ahead_of_their_end_and_within_max_age() {
        let s = Duration::from_secs;
        // Salesforce says no expires_in: max_age alone, or only when refused.
        assert_eq!(super::refresh_in(None, Some(s(3600)), s(60)), Some(s(3600)));
        assert_eq!(super::refresh_in(None, None, s(60)), None);
        // The margin ahead of expires_in; never before half of a short life.
        assert_eq!(super::refresh_in(Some(s(1800)), None, s(60)), Some(s(1740)));
        assert_eq!(super::refresh_in(Some(s(60)), None, s(300)), Some(s(30)));
        // max_age cuts a long one short.
        assert_eq!(
            super::refresh_in(Some(s(7200)), Some(s(600)), s(60)),
            Some(s(600))
        );
    }
}
