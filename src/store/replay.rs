//! The gateway's one replay cache: this process's, or — with a shared store —
//! Redis's, where "seen" is an atomic set-if-absent, so a message replayed
//! to another replica is refused there too.

use super::redis::StoreError;
use super::RedisStore;
use crate::config::ReplayFailure;
use crate::wssec::replay::{MemoryReplayCache, ReplayCache, ReplayError, ReplayKey};
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

struct Shared {
    store: Arc<RedisStore>,
    on_failure: ReplayFailure,
}

pub struct Replay {
    /// The in-memory backend, and the fall-back under `on_failure = "local"`.
    local: MemoryReplayCache,
    shared: ArcSwapOption<Shared>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("local", &self.local)
            .field("shared", &self.shared.load().is_some())
            .finish()
    }
}

const KIND: &str = "replay";

/// Who settles a shared check: the waiter that gave up, or the task that
/// answered first.
const PENDING: u8 = 0;
const GAVE_UP: u8 = 1;
const ANSWERED: u8 = 2;

impl Replay {
    pub fn new(max_entries: usize) -> Replay {
        Replay {
            local: MemoryReplayCache::new(max_entries),
            shared: ArcSwapOption::empty(),
        }
    }

    /// The in-memory cache's ceiling.
    pub fn set_capacity(&self, max_entries: usize) {
        self.local.set_capacity(max_entries);
    }

    /// Keeps entries in `store` from now on (`None`: in this process).
    pub fn share(&self, store: Option<Arc<RedisStore>>) {
        self.shared.store(store.map(|store| {
            Arc::new(Shared {
                on_failure: store.settings().replay_failure,
                store,
            })
        }));
    }

    /// Whether a shared store answers: its check waits on the network, so
    /// it runs off the event loops.
    pub fn is_shared(&self) -> bool {
        self.shared.load().is_some()
    }

    /// Entries held in this process.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
    }
}

fn text(key: &ReplayKey) -> String {
    crate::hex::lower(key)
}

impl ReplayCache for Replay {
    fn check_and_insert(
        &self,
        key: ReplayKey,
        keep_until: SystemTime,
        now: SystemTime,
    ) -> Result<(), ReplayError> {
        self.check_and_insert_all(&[(key, keep_until)], now)
    }

    fn check_and_insert_all(
        &self,
        entries: &[(ReplayKey, SystemTime)],
        now: SystemTime,
    ) -> Result<(), ReplayError> {
        let Some(sh) = self.shared.load_full() else {
            return self.local.check_and_insert_all(entries, now);
        };
        // Entries this replica recorded while the store did not answer (or
        // before a reload named it) still count.
        if entries.iter().any(|(k, _)| self.local.holds(k, now)) {
            return Err(ReplayError::Replay);
        }
        let named: Vec<(String, SystemTime)> = entries.iter().map(|(k, t)| (text(k), *t)).collect();
        let mark = crate::hex::random_id();
        // Verification against a shared store runs on a blocking thread
        // (`Stage::runs_inline`): the call runs as a task of
        // the thread's runtime (whichever its flavor) while this one waits,
        // within the store's deadline (the task keeps its own).
        let answer = match tokio::runtime::Handle::try_current() {
            // Waiting here would stall the very loop that runs the call: a
            // message judged inline just as a reload named a store.
            Ok(_) if crate::runtime::worker::on_event_loop() => Err(StoreError::NotConnected),
            Ok(h) => {
                let limit = sh.store.settings().timeout;
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let claim = Arc::new(AtomicU8::new(PENDING));
                let (store, task_claim) = (sh.store.clone(), claim.clone());
                h.spawn(async move {
                    let answer = store.insert_new(KIND, &named, &mark).await;
                    let delivered = task_claim
                        .compare_exchange(PENDING, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                    let failed = answer.is_err();
                    let _ = tx.send(answer);
                    if failed || !delivered {
                        // The entries may have been written all the same
                        // (late, or with the answer lost): take back ours, so
                        // the sender's retry is no replay.
                        store.remove_marked(KIND, &named, &mark).await;
                    }
                });
                match rx.recv_timeout(limit + Duration::from_millis(100)) {
                    Ok(answer) => answer,
                    // Given up before the task answered: the task cleans up.
                    Err(_)
                        if claim
                            .compare_exchange(PENDING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok() =>
                    {
                        Err(StoreError::Timeout(limit))
                    }
                    // The answer is on its way (or the task was dropped).
                    Err(_) => rx.recv().unwrap_or(Err(StoreError::Timeout(limit))),
                }
            }
            Err(_) => Err(StoreError::NotConnected),
        };
        match (answer, sh.on_failure) {
            (Ok(true), _) => Ok(()),
            (Ok(false), _) => Err(ReplayError::Replay),
            (Err(_), ReplayFailure::FailClosed) => {
                sh.store.count(KIND, "fail_closed");
                Err(ReplayError::Unavailable)
            }
            (Err(_), ReplayFailure::Local) => {
                sh.store.count(KIND, "fallback");
                self.local.check_and_insert_all(entries, now)
            }
        }
    }

    fn forget(&self, key: &ReplayKey) {
        // Held here: it was recorded here (the store did not answer), so the
        // store's entry, if any, is another replica's and stays.
        if self.local.remove(key) {
            return;
        }
        if let (Some(sh), Ok(h)) = (
            self.shared.load_full(),
            tokio::runtime::Handle::try_current(),
        ) {
            let key = text(key);
            h.spawn(async move {
                let _ = sh.store.remove(KIND, &key).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateFailure;
    use crate::store::StoreSettings;
    use crate::telemetry::metrics::Metrics;
    use crate::wssec::replay::replay_key;
    use std::time::Instant;

    #[test]
    fn a_shared_check_on_an_event_loop_refuses_at_once_instead_of_stalling_it() {
        let settings = StoreSettings {
            // Nothing listens: only the deadline would end a wait.
            url: "redis://127.0.0.1:1".into(),
            password: None,
            key_prefix: "t".into(),
            timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            pool_size: 1,
            ca_pem: None,
            client_pem: None,
            replay_failure: ReplayFailure::FailClosed,
            rate_failure: RateFailure::Local,
        };
        let replay = Replay::new(10);
        replay.share(Some(RedisStore::new(settings, &Metrics::new()).unwrap()));
        assert!(replay.is_shared());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let now = SystemTime::now();
        let key = replay_key("t", &[b"m"]);
        let took = rt.block_on(async {
            crate::runtime::worker::mark_event_loop();
            let t = Instant::now();
            let got = replay.check_and_insert(key, now + Duration::from_secs(60), now);
            assert_eq!(got, Err(ReplayError::Unavailable));
            t.elapsed()
        });
        // The store's call would be a task of this very loop: waiting for
        // it could only end at the deadline.
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}
