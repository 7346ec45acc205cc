//! Rate limits on governor's GCRA, with a state store of bounded size: a flood
//! of distinct keys evicts stale buckets (and, when every bucket is live, the
//! oldest ones) instead of growing without end.

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a bucket is keyed by. Small and `Copy`, so a million keys stay cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// An address (high and low 64 bits, so the key is 8-byte aligned);
    /// IPv6 truncated to its /64, since one host owns a whole /64.
    Ip(u64, u64),
    /// The first 8 bytes of the client certificate's SHA-256 fingerprint.
    Client(u64),
}

impl Key {
    pub fn ip(ip: IpAddr) -> Key {
        let x = super::ip::as_u128(ip);
        let hi = (x >> 64) as u64;
        match super::ip::canonical(ip) {
            IpAddr::V4(_) => Key::Ip(hi, x as u64),
            IpAddr::V6(_) => Key::Ip(hi, 0),
        }
    }
}

const SHARDS: usize = 16;

/// A sharded map from key to the bucket's theoretical arrival time (TAT),
/// holding at most `max_keys` entries.
pub struct BoundedStore {
    shards: Vec<Mutex<HashMap<Key, u64>>>,
    per_shard: usize,
    /// Same origin as the limiter's clock (created just before it), so a stored
    /// TAT can be compared with "now" to tell a stale (full) bucket.
    start: Instant,
}

impl BoundedStore {
    pub fn new(max_keys: usize) -> BoundedStore {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        BoundedStore {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_capacity(per_shard)))
                .collect(),
            per_shard,
            start: Instant::now(),
        }
    }

    fn shard(&self, k: &Key) -> &Mutex<HashMap<Key, u64>> {
        &self.shards[shard_index(k) % SHARDS]
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the maps' tables: keys and values are stored inline, one
    /// control byte per bucket, buckets a power of two at most 7/8 full.
    pub fn approx_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Key, u64)>() + 1;
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .map(|m| (m.capacity() * 8 / 7).next_power_of_two() * slot)
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// Spreads keys over shards with a multiply-xor keyed by a process-random seed:
/// cheap (the map hashes the key again with SipHash anyway) and unpredictable
/// enough that a client cannot aim every key at one shard.
fn shard_index(k: &Key) -> usize {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut b);
        u64::from_le_bytes(b) | 1
    });
    let (a, b) = match *k {
        Key::Ip(hi, lo) => (hi, lo),
        Key::Client(c) => (c, 0x9e37_79b9_7f4a_7c15),
    };
    let x = (a ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(seed);
    (x.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 59) as usize
}

/// The store as the limiter holds it, shared with [`RateLimit`] for its figures.
pub struct SharedStore(Arc<BoundedStore>);

impl StateStore for SharedStore {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure(key, f)
    }
}

impl BoundedStore {
    fn measure<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let Ok(mut map) = self.shard(key).lock() else {
            // A poisoned shard only means another thread panicked mid-update; judge as new.
            return f(None).map(|(t, _)| t);
        };
        let old = map.get(key).copied().map(Nanos::from);
        let (t, new) = f(old)?;
        if old.is_none() && map.len() >= self.per_shard {
            let now = self.start.elapsed().as_nanos() as u64;
            // Stale buckets are full again: forgetting them changes no decision.
            let mut keep_above = now;
            if map.values().filter(|tat| **tat > now).count() >= self.per_shard {
                // Every bucket is live: drop the eighth that refills soonest.
                let mut tats: Vec<u64> = map.values().copied().collect();
                let cut = tats.len() / 8;
                tats.select_nth_unstable(cut);
                keep_above = tats[cut];
            }
            // Rebuilt rather than pruned in place, so deleted slots never make the table grow.
            let mut fresh = HashMap::with_capacity(self.per_shard);
            fresh.extend(map.drain().filter(|(_, tat)| *tat > keep_above));
            *map = fresh;
        }
        map.insert(*key, new.as_u64());
        Ok(t)
    }
}

/// A rate as a config writes it: one of `per_second` or `per_minute`
/// sustained, `burst` at once (default: one second's worth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: Option<f64>,
    pub per_minute: Option<f64>,
    pub burst: Option<u32>,
}

/// A rate that cannot be enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("set exactly one of per_second or per_minute")]
    OneOf,
    #[error("the rate must be a positive number")]
    NotPositive,
    #[error("the rate is too low to represent; use per_minute with a larger number")]
    TooLow,
    #[error("the rate is too high (more than 10^9 per second)")]
    TooHigh,
    #[error("burst 0 would refuse everything; use 1 or more")]
    ZeroBurst,
    #[error("max_keys must be at least 1")]
    ZeroKeys,
}

/// Builds governor's quota for a rate.
pub fn quota(r: &Rate) -> Result<Quota, RateError> {
    let per = match (r.per_second, r.per_minute) {
        (Some(r), None) => r,
        (None, Some(m)) => m / 60.0,
        _ => return Err(RateError::OneOf),
    };
    if !(per.is_finite() && per > 0.0) {
        return Err(RateError::NotPositive);
    }
    let period = Duration::try_from_secs_f64(1.0 / per).map_err(|_| RateError::TooLow)?;
    if period.is_zero() {
        return Err(RateError::TooHigh);
    }
    let burst = r
        .burst
        .unwrap_or_else(|| per.ceil().clamp(1.0, u32::MAX as f64) as u32);
    let burst = NonZeroU32::new(burst).ok_or(RateError::ZeroBurst)?;
    let q = Quota::with_period(period).ok_or(RateError::TooHigh)?;
    Ok(q.allow_burst(burst))
}

/// The GCRA parameters of a rate, in microseconds, for a store that
/// evaluates it elsewhere (Redis): the emission interval, and how far ahead
/// of now the theoretical arrival time may run (interval × (burst − 1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub interval_us: u64,
    pub tolerance_us: u64,
}

impl Gcra {
    fn of(q: &Quota) -> Gcra {
        let interval_us = u64::try_from(q.replenish_interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let burst = u64::from(q.burst_size().get());
        Gcra {
            interval_us,
            tolerance_us: interval_us.saturating_mul(burst - 1),
        }
    }
}

/// A rate limit per key (client or address): governor's GCRA over a bounded store.
pub struct RateLimit {
    limiter: RateLimiter<Key, SharedStore, MonotonicClock, NoOpMiddleware<Instant>>,
    store: Arc<BoundedStore>,
    gcra: Gcra,
    /// What names this limit in a shared store.
    pub id: String,
}

impl RateLimit {
    pub fn new(rate: &Rate, max_keys: usize) -> Result<RateLimit, RateError> {
        let q = quota(rate)?;
        if max_keys == 0 {
            return Err(RateError::ZeroKeys);
        }
        let store = Arc::new(BoundedStore::new(max_keys));
        Ok(RateLimit {
            limiter: RateLimiter::new(q, SharedStore(store.clone()), MonotonicClock),
            store,
            gcra: Gcra::of(&q),
            id: String::new(),
        })
    }

    pub fn with_id(mut self, id: String) -> RateLimit {
        self.id = id;
        self
    }

    pub fn gcra(&self) -> Gcra {
        self.gcra
    }

    /// Admits the key or says how long until it may try again.
    pub fn check(&self, key: &Key) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()))
    }

    pub fn store(&self) -> &BoundedStore {
        &self.store
    }
}

/// One bucket (a route's, or one shared by routes): governor's direct limiter,
/// a single atomic, no store and no lock.
pub struct SingleLimit {
    limiter: RateLimiter<
        governor::state::NotKeyed,
        governor::state::InMemoryState,
        MonotonicClock,
        NoOpMiddleware<Instant>,
    >,
    gcra: Gcra,
    /// What names this bucket in a shared store.
    pub id: String,
}

impl SingleLimit {
    pub fn new(rate: &Rate) -> Result<SingleLimit, RateError> {
        let q = quota(rate)?;
        Ok(SingleLimit {
            limiter: RateLimiter::direct_with_clock(q, MonotonicClock),
            gcra: Gcra::of(&q),
            id: String::new(),
        })
    }

    pub fn with_id(mut self, id: String) -> SingleLimit {
        self.id = id;
        self
    }

    pub fn gcra(&self) -> Gcra {
        self.gcra
    }

    /// Admits or says how long until the next request may pass.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()))
    }
}

/// Seconds for `Retry-After`: the wait, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_second: f64, burst: u32) -> Rate {
        Rate {
            per_second: Some(per_second),
            per_minute: None,
            burst: Some(burst),
        }
    }

    #[test]
    fn burst_then_refusal_with_wait() {
        let l = RateLimit::new(&cfg(1.0, 2), 100).unwrap();
        let k = Key::ip("10.0.0.1".parse().unwrap());
        let t0 = std::time::Instant::now();
        assert!(l.check(&k).is_ok());
        assert!(l.check(&k).is_ok());
        let wait = l.check(&k).unwrap_err();
        // A second from the first request, less what a busy machine took
        // between the checks.
        let since = t0.elapsed();
        assert!(
            wait + since >= Duration::from_millis(990) && wait <= Duration::from_secs(1),
            "{wait:?} after {since:?}"
        );
        assert_eq!(retry_after_secs(wait), 1);
        // Another key has its own bucket.
        assert!(l.check(&Key::ip("10.0.0.2".parse().unwrap())).is_ok());
    }

    #[test]
    fn ipv6_keys_by_64_and_mapped_ipv4_equal_ipv4() {
        assert_eq!(
            Key::ip("2001:db8::1".parse().unwrap()),
            Key::ip("2001:db8::ffff:2".parse().unwrap())
        );
        assert_eq!(
            Key::ip("::ffff:10.0.0.1".parse().unwrap()),
            Key::ip("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn store_never_exceeds_its_bound_and_evicts_stale_first() {
        let l = RateLimit::new(&cfg(1.0, 5), 1000).unwrap();
        for i in 0..50_000u64 {
            let _ = l.check(&Key::Ip(i, 0));
        }
        let bound = 1000usize.div_ceil(SHARDS) * SHARDS;
        assert!(l.store().len() <= bound, "{}", l.store().len());
        // A key that used its whole burst is refused; a refused check stores nothing.
        let k = Key::Ip(7, 7);
        for _ in 0..5 {
            assert!(l.check(&k).is_ok());
        }
        assert!(l.check(&k).is_err());
    }

    #[test]
    fn config_errors() {
        let bad = Rate {
            per_second: Some(1.0),
            per_minute: Some(60.0),
            burst: None,
        };
        assert_eq!(quota(&bad).unwrap_err(), RateError::OneOf);
        assert_eq!(quota(&cfg(0.0, 1)).unwrap_err(), RateError::NotPositive);
        assert_eq!(quota(&cfg(1.0, 0)).unwrap_err(), RateError::ZeroBurst);
        assert_eq!(
            RateLimit::new(&cfg(1.0, 1), 0).err(),
            Some(RateError::ZeroKeys)
        );
    }

    #[test]
    fn a_single_bucket_is_shared_by_every_caller() {
        let l = SingleLimit::new(&cfg(1.0, 2)).unwrap();
        assert!(l.check().is_ok());
        assert!(l.check().is_ok());
        assert!(l.check().unwrap_err() > Duration::from_millis(900));
    }
}
