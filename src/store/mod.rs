//! State that replicas share: the replay cache, the rate limits and the
//! blocks, kept in this process by default or in Redis with `[state] backend
//! = "redis"`. Every call to the shared store has a deadline; while the store
//! cannot be reached each kind of state follows its `on_failure` policy, and
//! the fall-back and the recovery are each logged once.

pub mod block;
pub mod rate;
pub mod redis;
pub mod replay;

pub use self::redis::RedisStore;
pub use block::Blocks;
pub use replay::Replay;

use crate::config::{RateFailure, ReplayFailure, StateBackend, StateConfig};
use crate::runtime::material::Loader;
use std::time::Duration;

/// `[state]` compiled: what a snapshot asks of the shared store.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub url: String,
    password: Option<Vec<u8>>,
    pub key_prefix: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_size: usize,
    ca_pem: Option<Vec<u8>>,
    client_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub replay_failure: ReplayFailure,
    pub rate_failure: RateFailure,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &shown_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `None` for the in-memory backend, or when a problem was recorded.
pub fn compile(ld: &mut Loader<'_>, c: &StateConfig) -> Option<StoreSettings> {
    if c.backend == StateBackend::Memory {
        let redis_only = [
            ("url", c.url.is_some()),
            ("password_env", c.password_env.is_some()),
            ("password_file", c.password_file.is_some()),
            ("key_prefix", c.key_prefix.is_some()),
            ("pool_size", c.pool_size.is_some()),
            ("ca", c.ca.is_some()),
            ("cert", c.cert.is_some()),
            ("key", c.key.is_some()),
        ];
        for (k, set) in redis_only {
            if set {
                ld.problem(
                    format!("state.{k}"),
                    "applies to backend = \"redis\" only; set backend or remove the key",
                );
            }
        }
        return None;
    }
    let before = ld.problems.len();
    let url = match c.url.as_deref() {
        None => {
            ld.problem(
                "state.url",
                "backend = \"redis\" needs url = \"redis://host:6379/0\" (or rediss:// for TLS)",
            );
            String::new()
        }
        Some(u) => {
            let tls = u.starts_with("rediss://");
            // The URL is never echoed: it may carry the very password refused.
            let parsed = ::redis::parse_redis_url(u);
            if !tls && !u.starts_with("redis://") {
                ld.problem("state.url", "is not a redis:// or rediss:// URL");
            } else if parsed.is_none() {
                ld.problem("state.url", "is not a valid URL (redis://host:port/db)");
            } else if has_password(u) {
                ld.problem(
                    "state.url",
                    "the URL carries a password: move it to password_file or password_env",
                );
            } else if parsed.as_ref().and_then(|p| p.fragment()).is_some() {
                // `#insecure` would turn off the check of Redis's certificate.
                ld.problem(
                    "state.url",
                    "a #fragment is not allowed (use ca = ... for a private CA)",
                );
            }
            if !tls {
                for (k, set) in [
                    ("ca", c.ca.is_some()),
                    ("cert", c.cert.is_some()),
                    ("key", c.key.is_some()),
                ] {
                    if set {
                        ld.problem(format!("state.{k}"), "applies to rediss:// URLs only");
                    }
                }
            }
            u.to_owned()
        }
    };
    let password = match (&c.password_env, &c.password_file) {
        (None, None) => None,
        (env, file) => ld.secret(
            "state",
            "the Redis password",
            env.as_deref(),
            file.as_deref(),
        ),
    };
    let timeout = c.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout.is_zero() || timeout > Duration::from_secs(5) {
        ld.problem(
            "state.timeout",
            "between 1ms and 5s: every request may wait this long for the store",
        );
    }
    let connect_timeout = c.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0);
    if connect_timeout.is_zero() || connect_timeout > Duration::from_secs(60) {
        ld.problem("state.connect_timeout", "between 1ms and 60s");
    }
    let pool_size = c.pool_size.unwrap_or(2);
    if !(1..=64).contains(&pool_size) {
        ld.problem("state.pool_size", "between 1 and 64");
    }
    let key_prefix = c.key_prefix.clone().unwrap_or_else(|| "sealgate:".into());
    if key_prefix.len() > 128
        || key_prefix
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        ld.problem(
            "state.key_prefix",
            "at most 128 characters, no spaces or control characters",
        );
    }
    let read = |ld: &mut Loader<'_>, k: &str, p: &std::path::Path| {
        let path = ld.resolve(p);
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                ld.problem(
                    format!("state.{k}"),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    };
    let ca_pem = c.ca.as_deref().and_then(|p| read(ld, "ca", p));
    let client_pem = match (&c.cert, &c.key) {
        (Some(cert), Some(key)) => match (read(ld, "cert", cert), read(ld, "key", key)) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        },
        (None, None) => None,
        _ => {
            ld.problem("state.cert", "a client certificate needs both cert and key");
            None
        }
    };
    (ld.problems.len() == before).then_some(StoreSettings {
        url,
        password,
        key_prefix,
        timeout,
        connect_timeout,
        pool_size,
        ca_pem,
        client_pem,
        replay_failure: c.on_failure.replay,
        rate_failure: c.on_failure.rate,
    })
}

/// The URL as logs show it: scheme, host, port and database, nothing an
/// operator may have put in the user part.
pub fn shown_url(url: &str) -> String {
    match ::redis::parse_redis_url(url) {
        Some(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_fragment(None);
            u.to_string()
        }
        None => "(not a URL)".into(),
    }
}

fn has_password(url: &str) -> bool {
    ::redis::parse_redis_url(url).is_some_and(|p| p.password().is_some())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_in_the_url_is_found() {
        assert!(super::has_password("redis://:secret@h:6379/0"));
        assert!(super::has_password("rediss://user:secret@h/0"));
        assert!(!super::has_password("redis://user@h:6379/0"));
        assert!(!super::has_password("redis://h:6379/0"));
    }

    #[test]
    fn a_url_is_shown_without_its_user_part() {
        assert_eq!(
            super::shown_url("redis://hunter2@h:6379/0#insecure"),
            "redis://h:6379/0"
        );
        assert_eq!(super::shown_url("nonsense"), "(not a URL)");
    }
}
