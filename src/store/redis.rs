//! The Redis backend: a few multiplexed connections (the `redis` crate's
//! connection manager, which reconnects by itself), made in the background
//! so a gateway starts while Redis is down, and one deadline on every call.

use super::StoreSettings;
use crate::telemetry::metrics::Metrics;
use ::redis::aio::ConnectionManager;
use arc_swap::ArcSwapOption;
use prometheus::{IntCounterVec, IntGauge};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The deadline of an operator's query; also the connections' own
/// response timeout, every shorter deadline being the caller's.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The kind of the health probe's operations.
const PING: &str = "ping";

/// Why a state operation got no answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("not connected to the state store")]
    NotConnected,
    #[error("no answer from the state store within {0:?}")]
    Timeout(Duration),
    #[error("state store: {0}")]
    Failed(String),
}

/// Whether the store answers, as the metrics and the audit log see it.
struct Health {
    up: IntGauge,
    ops: IntCounterVec,
    /// Down as last reported, so each change is logged once.
    down: AtomicBool,
}

pub struct RedisStore {
    settings: StoreSettings,
    client: ::redis::Client,
    /// Set once the connection tasks run.
    connecting: AtomicBool,
    conns: Vec<ArcSwapOption<ConnectionManager>>,
    next: AtomicUsize,
    health: Health,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `settings`, not yet connected (see `connect`): a config
    /// may be compiled on a short-lived runtime (`check`, start-up).
    pub fn new(settings: StoreSettings, metrics: &Metrics) -> Result<Arc<RedisStore>, String> {
        let client = client(&settings)?;
        Ok(Arc::new(RedisStore {
            client,
            connecting: AtomicBool::new(false),
            conns: (0..settings.pool_size)
                .map(|_| ArcSwapOption::empty())
                .collect(),
            next: AtomicUsize::new(0),
            health: Health {
                up: metrics.state_backend_up.clone(),
                ops: metrics.state_operations.clone(),
                down: AtomicBool::new(false),
            },
            settings,
        }))
    }

    /// Starts making the connections on the current runtime, once (the
    /// live snapshot's store, as it goes live). Until they stand, every
    /// call fails fast.
    pub fn connect(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.connecting.swap(true, Ordering::Relaxed) {
            return;
        }
        self.health.up.set(0);
        for i in 0..self.conns.len() {
            rt.spawn(connect(Arc::downgrade(self), self.client.clone(), i));
        }
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// A key of `kind` under the configured prefix.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.settings.key_prefix)
    }

    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let n = self.conns.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .find_map(|k| {
                self.conns
                    .get(start.wrapping_add(k) % n)
                    .and_then(|c| c.load_full())
                    .map(|c| (*c).clone())
            })
            .ok_or(StoreError::NotConnected)
    }

    /// Runs `cmd` within the deadline, counting it under `kind`.
    pub(super) async fn call<T: ::redis::FromRedisValue>(
        &self,
        kind: &'static str,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        self.within(
            kind,
            |mut c| async move { cmd.query_async::<T>(&mut c).await },
        )
        .await
    }

    /// Runs `script` (by its SHA, loaded when Redis lacks it) within the
    /// deadline: one round trip.
    pub async fn script<T: ::redis::FromRedisValue, A: ::redis::ToRedisArgs>(
        &self,
        kind: &'static str,
        script: &::redis::Script,
        keys: &[String],
        args: &[A],
    ) -> Result<T, StoreError> {
        self.within(kind, |mut c| async move {
            let mut inv = script.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            for a in args {
                inv.arg(a);
            }
            inv.invoke_async::<T>(&mut c).await
        })
        .await
    }

    /// `op` within the store's deadline, counted under `kind`.
    async fn within<T, F, Fut>(&self, kind: &'static str, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        self.bounded(kind, self.settings.timeout, true, op).await
    }

    /// An operator's query (`/blocked`): a longer deadline than the request
    /// path's, and slow answers do not count against the store's health.
    pub(super) async fn admin_query<T: ::redis::FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        self.bounded("admin", ADMIN_TIMEOUT, false, |mut c| async move {
            cmd.query_async::<T>(&mut c).await
        })
        .await
    }

    /// `op` within `limit` (this deadline alone: the connections' own
    /// response timeout is the longest any caller uses); `observed`: its
    /// outcome counts and moves the store's health.
    async fn bounded<T, F, Fut>(
        &self,
        kind: &'static str,
        limit: Duration,
        observed: bool,
        op: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        // While down, calls fail at once (a partitioned Redis would make
        // each wait its whole deadline); the timer's ping lifts it.
        let down = kind != PING && self.health.down.load(Ordering::Relaxed);
        let conn = if down {
            Err(StoreError::NotConnected)
        } else {
            self.conn()
        };
        let r = match conn {
            Err(e) => Err(e),
            Ok(c) => match tokio::time::timeout(limit, op(c)).await {
                Err(_) => Err(StoreError::Timeout(limit)),
                Ok(Err(e)) if e.is_timeout() => Err(StoreError::Timeout(limit)),
                Ok(Err(e)) => Err(StoreError::Failed(e.to_string())),
                Ok(Ok(v)) => Ok(v),
            },
        };
        if observed {
            self.observe(kind, r.as_ref().err());
        }
        r
    }

    fn observe(&self, kind: &str, err: Option<&StoreError>) {
        let result = match err {
            None => "ok",
            Some(StoreError::Timeout(_)) => "timeout",
            Some(_) => "error",
        };
        self.health.ops.with_label_values(&[kind, result]).inc();
        match err {
            None => self.recovered(),
            Some(e) => self.failed(e),
        }
    }

    fn recovered(&self) {
        self.health.up.set(1);
        if self.health.down.swap(false, Ordering::Relaxed) {
            crate::telemetry::audit::state_backend(true, &super::shown_url(&self.settings.url), "");
        }
    }

    fn failed(&self, e: &StoreError) {
        self.health.up.set(0);
        if !self.health.down.swap(true, Ordering::Relaxed) {
            let url = super::shown_url(&self.settings.url);
            crate::telemetry::audit::state_backend(false, &url, &e.to_string());
        }
    }

    /// While the store is down, asks it whether it answers again, so an idle
    /// replica notices the recovery too (run on a timer).
    pub async fn probe(&self) {
        if self.health.down.load(Ordering::Relaxed) {
            let _ = self.call::<String>(PING, &::redis::cmd("PING")).await;
        }
    }

    /// Counts a decision made without the store (`fallback`, `fail_closed`).
    pub fn count(&self, kind: &str, result: &str) {
        self.health.ops.with_label_values(&[kind, result]).inc();
    }

    /// Records each key until its time unless one of them is already there:
    /// true when none was. One key is a SET NX PXAT, several one script; both
    /// atomic, so of two replicas exactly one gets true.
    pub async fn insert_new(
        &self,
        kind: &'static str,
        entries: &[(String, SystemTime)],
        mark: &str,
    ) -> Result<bool, StoreError> {
        let at_ms = |t: &SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .max(1)
        };
        if let [(key, until)] = entries {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(self.key(kind, key))
                .arg(mark)
                .arg("NX")
                .arg("PXAT")
                .arg(at_ms(until));
            let v: Option<String> = self.call(kind, &cmd).await?;
            return Ok(v.is_some());
        }
        let keys: Vec<String> = entries.iter().map(|(k, _)| self.key(kind, k)).collect();
        let args: Vec<String> = std::iter::once(mark.to_owned())
            .chain(entries.iter().map(|(_, t)| at_ms(t).to_string()))
            .collect();
        let fresh: i64 = self.script(kind, insert_all(), &keys, &args).await?;
        Ok(fresh == 1)
    }

    /// Deletes those of `entries` that still hold `mark` (this replica's
    /// write, not another's).
    pub async fn remove_marked(
        &self,
        kind: &'static str,
        entries: &[(String, SystemTime)],
        mark: &str,
    ) {
        let keys: Vec<String> = entries.iter().map(|(k, _)| self.key(kind, k)).collect();
        let _ = self
            .script::<i64, _>(kind, remove_marked(), &keys, &[mark])
            .await;
    }

    /// The values of `keys` (of `kind`, prefixed here), `None` where absent.
    pub async fn get_many(
        &self,
        kind: &'static str,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let mut cmd = ::redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.key(kind, k));
        }
        self.call(kind, &cmd).await
    }

    pub async fn remove(&self, kind: &'static str, key: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(self.key(kind, key));
        self.call::<i64>(kind, &cmd).await.map(|_| ())
    }
}

/// Every key set to ARGV[1] (each until its ARGV[i + 1], ms since the
/// epoch) or, when one is already there, none: 1 or 0.
fn insert_all() -> &'static ::redis::Script {
    static S: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        ::redis::Script::new(
            r"
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then return 0 end
end
for i, k in ipairs(KEYS) do
  redis.call('SET', k, ARGV[1], 'PXAT', ARGV[i + 1])
end
return 1
",
        )
    })
}

/// Deletes each key whose value is ARGV[1].
fn remove_marked() -> &'static ::redis::Script {
    static S: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        ::redis::Script::new(
            r"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then n = n + redis.call('DEL', k) end
end
return n
",
        )
    })
}

fn client(s: &StoreSettings) -> Result<::redis::Client, String> {
    use ::redis::IntoConnectionInfo;
    let mut info = s
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    if let Some(pw) = &s.password {
        info.redis.password = Some(String::from_utf8_lossy(pw).into_owned());
    }
    if s.url.starts_with("rediss://") && (s.ca_pem.is_some() || s.client_pem.is_some()) {
        let certs = ::redis::TlsCertificates {
            client_tls: s
                .client_pem
                .as_ref()
                .map(|(c, k)| ::redis::ClientTlsConfig {
                    client_cert: c.clone(),
                    client_key: k.clone(),
                }),
            root_cert: s.ca_pem.clone(),
        };
        ::redis::Client::build_with_tls(info, certs).map_err(|e| e.to_string())
    } else {
        ::redis::Client::open(info).map_err(|e| e.to_string())
    }
}

/// Makes connection `i`, retrying with backoff until it stands or the store
/// is dropped; the manager then reconnects by itself.
async fn connect(store: std::sync::Weak<RedisStore>, client: ::redis::Client, i: usize) {
    let mut wait = Duration::from_millis(100);
    loop {
        let Some(s) = store.upgrade() else { return };
        let cfg = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(s.settings.connect_timeout)
            .set_response_timeout(ADMIN_TIMEOUT.max(s.settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(1000);
        let made = client.get_connection_manager_with_config(cfg).await;
        match made {
            Ok(c) => {
                if let Some(slot) = s.conns.get(i) {
                    slot.store(Some(Arc::new(c)));
                }
                s.recovered();
                return;
            }
            Err(e) => s.failed(&StoreError::Failed(e.to_string())),
        }
        drop(s);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
