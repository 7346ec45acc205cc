//! Material with a lifetime, watched while the gateway serves: an audit
//! event when a certificate comes within a configured threshold of its
//! notAfter (30, 7 and 1 days by default) or passes it, when a CRL comes near
//! its nextUpdate or passes it, and when a private key file is readable by
//! others. Each once per certificate, CRL or file and process, however many
//! reloads hold it.

use super::Live;
use crate::runtime::Runtime;
use crate::telemetry::audit;
use crate::tls::certs::now_unix;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// What has been announced, by certificate or CRL and threshold.
#[derive(Default)]
pub struct Announced {
    done: HashSet<(String, u64)>,
}

/// The threshold index an item is within (`Some(len)` once passed), given
/// thresholds longest first: the shortest one crossed.
fn crossed(left_secs: i64, thresholds: &[Duration]) -> Option<usize> {
    if left_secs <= 0 {
        return Some(thresholds.len());
    }
    thresholds
        .iter()
        .rposition(|t| left_secs <= i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
}

impl Announced {
    /// Whether `item` newly crossed a threshold (marking it and every
    /// longer one), and its label: `expired` or the threshold.
    fn crossing(&mut self, item: &str, left_secs: i64, thresholds: &[Duration]) -> Option<String> {
        let idx = crossed(left_secs, thresholds)?;
        let key = (item.to_owned(), idx as u64);
        if self.done.contains(&key) {
            return None;
        }
        for i in 0..=idx {
            self.done.insert((item.to_owned(), i as u64));
        }
        Some(match thresholds.get(idx) {
            Some(t) => humantime::format_duration(*t).to_string(),
            None => "expired".to_owned(),
        })
    }

    /// Announces what in `rt` crossed a threshold since the last look.
    pub fn look(&mut self, rt: &Runtime) {
        let now = now_unix();
        for c in &rt.certs {
            let item = format!("cert {} {}", c.fingerprint, c.role);
            let left = c.not_after_unix - now;
            if let Some(label) = self.crossing(&item, left, &rt.expiry_warnings) {
                audit::certificate_expiry(c, left.div_euclid(86_400), &label);
            }
        }
        for c in &rt.crls {
            let Some(next) = c.next_update_unix else {
                continue;
            };
            let item = format!("crl {} {} {} {next}", c.at, c.source, c.issuer);
            let left = next - now;
            if let Some(label) = self.crossing(&item, left, &rt.expiry_warnings) {
                audit::crl_next_update(c, left.div_euclid(86_400), &label);
            }
        }
    }
}

/// Key files announced as readable by others, once per file and mode and process.
fn announced_keys() -> &'static Mutex<HashSet<(std::path::PathBuf, u32)>> {
    static KEYS: OnceLock<Mutex<HashSet<(std::path::PathBuf, u32)>>> = OnceLock::new();
    KEYS.get_or_init(Default::default)
}

/// Audit events for the snapshot's key files that others can read.
pub fn announce_readable_keys(rt: &Runtime) {
    let mut seen = announced_keys()
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (key, path, mode) in &rt.readable_keys {
        if seen.insert((path.clone(), *mode)) {
            audit::key_readable(key, path, *mode);
        }
    }
}

/// Looks at the live snapshot every second (a few dozen comparisons).
pub async fn run(live: Arc<Live>) {
    let mut announced = Announced::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        announced.look(&live.current());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_once_and_the_shortest_crossed_only() {
        let day: i64 = 86_400;
        let t = [30u64, 7, 1].map(|d| Duration::from_secs(d * 86_400));
        let mut a = Announced::default();
        assert_eq!(a.crossing("c", 40 * day, &t), None);
        assert_eq!(a.crossing("c", 10 * day, &t).as_deref(), Some("30days"));
        assert_eq!(a.crossing("c", 9 * day, &t), None);
        // Straight from 10 days to 12 hours: one event, for 1 day.
        assert_eq!(a.crossing("c", day / 2, &t).as_deref(), Some("1day"));
        assert_eq!(a.crossing("c", 100, &t), None);
        assert_eq!(a.crossing("c", 0, &t).as_deref(), Some("expired"));
        assert_eq!(a.crossing("c", -5, &t), None);
        // A certificate first seen within 7 days announces 7 days, not 30.
        assert_eq!(a.crossing("d", 3 * day, &t).as_deref(), Some("7days"));
    }
}
