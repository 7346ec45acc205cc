//! Replay detection: a message (signer, Created, SignatureValue) or a
//! UsernameToken (user, Nonce, Created) is accepted once while it could be fresh.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use aws_lc_rs::digest;

/// A fixed-size key: the SHA-256 of the length-prefixed parts, so entries are
/// small whatever the size of a SignatureValue.
pub type ReplayKey = [u8; 32];

/// Builds a key; `domain` keeps signature and UsernameToken keys apart.
pub fn replay_key(domain: &str, parts: &[&[u8]]) -> ReplayKey {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("message already seen")]
    Replay,
    #[error("replay cache is full")]
    Full,
    /// A shared store did not answer, and the policy is to refuse.
    #[error("replay store unavailable")]
    Unavailable,
}

/// Remembers keys until a deadline. Implementations must be safe to share
/// between threads; a shared store (Redis) fits behind the same trait.
pub trait ReplayCache: Send + Sync {
    /// Records `key` until `keep_until`; refuses a key already held.
    fn check_and_insert(
        &self,
        key: ReplayKey,
        keep_until: SystemTime,
        now: SystemTime,
    ) -> Result<(), ReplayError>;

    /// Records every entry or none (a refused message leaves no record
    /// behind); a shared store does it in one round trip.
    fn check_and_insert_all(
        &self,
        entries: &[(ReplayKey, SystemTime)],
        now: SystemTime,
    ) -> Result<(), ReplayError> {
        for (i, (key, until)) in entries.iter().enumerate() {
            if let Err(e) = self.check_and_insert(*key, *until, now) {
                for (k, _) in &entries[..i] {
                    self.forget(k);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Forgets a key recorded by a message that was then never delivered (its
    /// upstream was busy or down), so the sender's retry is not a "replay".
    fn forget(&self, _key: &ReplayKey) {}
}

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    until: HashMap<ReplayKey, SystemTime>,
    by_expiry: BTreeSet<(SystemTime, ReplayKey)>,
}

impl Shard {
    fn purge(&mut self, now: SystemTime) {
        while let Some(&(t, k)) = self.by_expiry.first() {
            if t >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.until.remove(&k);
        }
    }
}

/// In-memory cache, sharded to keep lock contention low.
///
/// When full it REFUSES new entries rather than evicting live ones: evicting
/// would silently reopen a replay window, while refusing fails closed. Only
/// fully verified messages from trusted signers are inserted, and entries
/// live at most max TTL + skew, so filling it needs a trusted signer's volume.
pub struct MemoryReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: AtomicUsize,
}

impl MemoryReplayCache {
    /// `max_entries` is split evenly over the shards (at least one each).
    pub fn new(max_entries: usize) -> Self {
        MemoryReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: AtomicUsize::new(per_shard(max_entries)),
        }
    }

    /// A new ceiling (a reload changed `replay_cache_entries`); entries
    /// held stay, so no replay window opens. Above the ceiling, new entries
    /// are refused until old ones expire.
    pub fn set_capacity(&self, max_entries: usize) {
        self.per_shard
            .store(per_shard(max_entries), Ordering::Relaxed);
    }

    /// Entries held now (expired ones included until the next purge).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).until.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is held and still fresh at `now`.
    pub fn holds(&self, key: &ReplayKey, now: SystemTime) -> bool {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let s = shard.lock().unwrap_or_else(PoisonError::into_inner);
        s.until.get(key).is_some_and(|t| *t >= now)
    }

    /// Forgets `key`; whether it was held.
    pub fn remove(&self, key: &ReplayKey) -> bool {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match s.until.remove(key) {
            Some(until) => {
                s.by_expiry.remove(&(until, *key));
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for MemoryReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayCache")
            .field("entries", &self.len())
            .field(
                "capacity",
                &(self.per_shard.load(Ordering::Relaxed) * SHARDS),
            )
            .finish()
    }
}

impl ReplayCache for MemoryReplayCache {
    fn check_and_insert(
        &self,
        key: ReplayKey,
        keep_until: SystemTime,
        now: SystemTime,
    ) -> Result<(), ReplayError> {
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        // A panic elsewhere cannot leave a shard inconsistent: keep using it.
        let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
        s.purge(now);
        if s.until.contains_key(&key) {
            return Err(ReplayError::Replay);
        }
        if s.until.len() >= self.per_shard.load(Ordering::Relaxed) {
            return Err(ReplayError::Full);
        }
        s.until.insert(key, keep_until);
        s.by_expiry.insert((keep_until, key));
        Ok(())
    }

    fn forget(&self, key: &ReplayKey) {
        self.remove(key);
    }
}

fn per_shard(max_entries: usize) -> usize {
    max_entries.div_ceil(SHARDS).max(1)
}

/// A cache that remembers nothing (explain mode, or replay handled elsewhere).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReplayCache;

impl ReplayCache for NoReplayCache {
    fn check_and_insert(
        &self,
        _: ReplayKey,
        _: SystemTime,
        _: SystemTime,
    ) -> Result<(), ReplayError> {
        Ok(())
    }
}
