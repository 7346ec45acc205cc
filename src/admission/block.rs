//! Automatic blocking: a client IP or identity that keeps failing
//! authentication within a window is refused for a while, at accept.

use super::ip::{canonical, IpSet};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Who is blocked: an address, or a client certificate by SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    Ip(IpAddr),
    Identity(String),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Ip(ip) => write!(f, "ip {ip}"),
            Who::Identity(fp) => write!(f, "identity {fp}"),
        }
    }
}

/// What one block covers: an IPv4 address, or an IPv6 /64 (one host's share,
/// so an attacker cannot rotate through its addresses).
pub fn block_unit(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

/// Recent failures of one client.
struct Failures {
    at: VecDeque<Instant>,
    reasons: VecDeque<&'static str>,
}

/// One active block and the evidence behind it.
#[derive(Debug, Clone)]
pub struct Block {
    pub until: Instant,
    pub until_unix: u64,
    pub failures: u32,
    pub reasons: Vec<&'static str>,
}

pub struct Blocker {
    max_failures: u32,
    window: Duration,
    duration: Duration,
    never: IpSet,
    failures: Mutex<HashMap<Who, Failures>>,
    blocked: RwLock<HashMap<Who, Block>>,
}

/// Most clients whose failures are tracked at once; beyond it the stalest go.
const MAX_TRACKED: usize = 100_000;
/// Reasons kept as evidence per client.
const EVIDENCE: usize = 8;

impl Blocker {
    pub fn new(max_failures: u32, window: Duration, duration: Duration, never: IpSet) -> Blocker {
        Blocker {
            max_failures: max_failures.max(1),
            window,
            duration,
            never,
            failures: Mutex::new(HashMap::new()),
            blocked: RwLock::new(HashMap::new()),
        }
    }

    /// Is this client blocked now? Expired blocks are treated as gone.
    pub fn is_blocked(&self, who: &Who) -> bool {
        self.blocked
            .read()
            .map(|b| b.get(who).is_some_and(|x| x.until > Instant::now()))
            .unwrap_or(false)
    }

    pub fn ip_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked(&Who::Ip(block_unit(ip)))
    }

    /// Records one authentication failure. Returns the new block when this
    /// failure crossed the threshold (so it is logged exactly once).
    pub fn record(&self, who: Who, reason: &'static str) -> Option<Block> {
        let who = match who {
            Who::Ip(ip) => {
                if self.never.contains(canonical(ip)) {
                    return None;
                }
                Who::Ip(block_unit(ip))
            }
            other => other,
        };
        if self.is_blocked(&who) {
            return None;
        }
        let now = Instant::now();
        let mut map = self.failures.lock().ok()?;
        if map.len() >= MAX_TRACKED && !map.contains_key(&who) {
            let window = self.window;
            map.retain(|_, f| f.at.back().is_some_and(|t| now.duration_since(*t) < window));
            if map.len() >= MAX_TRACKED {
                // Everyone is recent: forget the tenth whose last failure is oldest,
                // so a flood of one-off failures cannot wash out a persistent attacker's.
                let mut by_age: Vec<(Instant, Who)> = map
                    .iter()
                    .filter_map(|(w, f)| f.at.back().map(|t| (*t, w.clone())))
                    .collect();
                let cut = by_age.len() / 10;
                by_age.select_nth_unstable_by_key(cut, |(t, _)| *t);
                for (_, w) in by_age.into_iter().take(cut + 1) {
                    map.remove(&w);
                }
            }
        }
        let f = map.entry(who.clone()).or_insert_with(|| Failures {
            at: VecDeque::new(),
            reasons: VecDeque::new(),
        });
        while f
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            f.at.pop_front();
        }
        f.at.push_back(now);
        f.reasons.push_back(reason);
        while f.reasons.len() > EVIDENCE {
            f.reasons.pop_front();
        }
        if (f.at.len() as u32) < self.max_failures {
            return None;
        }
        let block = Block {
            until: now + self.duration,
            until_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| (d + self.duration).as_secs())
                .unwrap_or(0),
            failures: f.at.len() as u32,
            reasons: f.reasons.iter().copied().collect(),
        };
        map.remove(&who);
        drop(map);
        if let Ok(mut b) = self.blocked.write() {
            b.insert(who, block.clone());
        }
        Some(block)
    }

    /// Active blocks, dropping the expired ones.
    pub fn active(&self) -> Vec<(Who, Block)> {
        let now = Instant::now();
        let Ok(mut b) = self.blocked.write() else {
            return Vec::new();
        };
        b.retain(|_, x| x.until > now);
        let mut v: Vec<(Who, Block)> = b.iter().map(|(w, x)| (w.clone(), x.clone())).collect();
        v.sort_by_key(|(_, x)| x.until);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_n_failures_in_window_and_lifts() {
        let never = IpSet::from_nets(&["10.9.0.0/16".parse().unwrap()]);
        let b = Blocker::new(3, Duration::from_secs(60), Duration::from_millis(50), never);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(b.record(Who::Ip(ip), "expired").is_none());
        assert!(b.record(Who::Ip(ip), "expired").is_none());
        let block = b.record(Who::Ip(ip), "unknown_issuer").unwrap();
        assert_eq!(block.reasons, vec!["expired", "expired", "unknown_issuer"]);
        assert!(b.ip_blocked(ip));
        // IPv4-mapped form is the same client.
        assert!(b.ip_blocked("::ffff:192.0.2.7".parse().unwrap()));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!b.ip_blocked(ip));
        assert!(b.active().is_empty());
        // An IPv6 client is blocked by its /64.
        for n in 1..=3 {
            let ip: IpAddr = format!("2001:db8:1:2::{n}").parse().unwrap();
            b.record(Who::Ip(ip), "expired");
        }
        assert!(b.ip_blocked("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(!b.ip_blocked("2001:db8:1:3::1".parse().unwrap()));
        // Never-block addresses are never blocked.
        for _ in 0..10 {
            assert!(b
                .record(Who::Ip("10.9.1.1".parse().unwrap()), "expired")
                .is_none());
        }
    }
}
