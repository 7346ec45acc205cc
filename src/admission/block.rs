//! Automatic blocking: a client address or identity that keeps failing
//! authentication within a window is refused for a while, at accept and on
//! every request.
//!
//! Memory is bounded whatever an attacker holds: failures are tracked for at
//! most `MAX_TRACKED` clients, blocks for at most `MAX_BLOCKED`; an IPv6 /48
//! whose /64s keep getting blocked (or any /64 once the table fills up) is
//! blocked as one /48 entry. Lookups take a read lock and never wait on a
//! rebuild: expired blocks are pruned by `prune` on a timer, and the gauge is
//! kept as a count, not recomputed from the table.

use super::ip::{canonical, IpSet};
use crate::fingerprint::Fingerprint;
use prometheus::{IntCounter, IntGauge};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Who is blocked: an address range, or a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    /// An IPv4 address (`/32`), or an IPv6 network: `/64` (one host's share,
    /// so an attacker cannot rotate through its addresses) or `/48`.
    Ip(IpAddr, u8),
    Identity(Fingerprint),
}

impl Who {
    /// The unit one address is blocked by: IPv4 /32, IPv6 /64.
    pub fn ip(ip: IpAddr) -> Who {
        match canonical(ip) {
            IpAddr::V6(v6) => Who::Ip(IpAddr::V6(v6_prefix(v6, 64)), 64),
            v4 => Who::Ip(v4, 32),
        }
    }

    fn net48(ip: IpAddr) -> Option<Who> {
        match canonical(ip) {
            IpAddr::V6(v6) => Some(Who::Ip(IpAddr::V6(v6_prefix(v6, 48)), 48)),
            IpAddr::V4(_) => None,
        }
    }

    /// The entries that block an address: its own unit, and for IPv6 its /48.
    pub fn units(ip: IpAddr) -> impl Iterator<Item = Who> {
        std::iter::once(Who::ip(ip)).chain(Who::net48(ip))
    }

    /// The /48 a blocked /64 is aggregated into.
    pub fn aggregate(&self) -> Option<Who> {
        match self {
            Who::Ip(ip, 64) => Who::net48(*ip),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Who::Ip(..) => "ip",
            Who::Identity(_) => "identity",
        }
    }
}

/// `kind:client`, the form a shared store keys a block by.
impl std::str::FromStr for Who {
    type Err = ();

    fn from_str(s: &str) -> Result<Who, ()> {
        match s.split_once(':').ok_or(())? {
            ("identity", fp) => Fingerprint::parse(fp).map(Who::Identity).map_err(|_| ()),
            ("ip", net) => match net.split_once('/') {
                None => match net.parse::<IpAddr>().map_err(|_| ())? {
                    v4 @ IpAddr::V4(_) => Ok(Who::Ip(v4, 32)),
                    IpAddr::V6(_) => Err(()),
                },
                Some((a, bits)) => match (a.parse::<IpAddr>(), bits) {
                    (Ok(v6 @ IpAddr::V6(_)), "48") => Ok(Who::Ip(v6, 48)),
                    (Ok(v6 @ IpAddr::V6(_)), "64") => Ok(Who::Ip(v6, 64)),
                    _ => Err(()),
                },
            },
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Ip(ip @ IpAddr::V4(_), _) => write!(f, "{ip}"),
            Who::Ip(ip, bits) => write!(f, "{ip}/{bits}"),
            Who::Identity(fp) => write!(f, "{fp}"),
        }
    }
}

fn v6_prefix(v6: Ipv6Addr, bits: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> bits))
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
    pub reasons: Vec<String>,
}

/// Metric handles the blocker keeps current.
pub struct BlockMetrics {
    pub ip_blocks: IntCounter,
    pub identity_blocks: IntCounter,
    pub active: IntGauge,
}

#[derive(Default)]
struct Blocked {
    map: HashMap<Who, Block>,
    /// Blocked /64s per /48, to aggregate a /48 that keeps minting them.
    per_48: HashMap<IpAddr, u32>,
}

impl Blocked {
    fn insert(&mut self, who: Who, block: Block) {
        // Replacing an entry (an expired one not yet pruned) adds no /64.
        if self.map.insert(who, block).is_some() {
            return;
        }
        if let Some(Who::Ip(net, _)) = who.aggregate() {
            *self.per_48.entry(net).or_default() += 1;
        }
    }

    fn remove(&mut self, who: &Who) {
        if self.map.remove(who).is_none() {
            return;
        }
        if let Some(Who::Ip(net, _)) = who.aggregate() {
            if let Some(n) = self.per_48.get_mut(&net) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_48.remove(&net);
                }
            }
        }
    }

    fn prune(&mut self, now: Instant) {
        let gone: Vec<Who> = self
            .map
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(w, _)| *w)
            .collect();
        for w in gone {
            self.remove(&w);
        }
    }
}

/// When a client is blocked and for how long; a reload may change them
/// while the table of failures and blocks stays.
#[derive(Clone)]
pub struct BlockSettings {
    pub max_failures: u32,
    pub window: Duration,
    pub duration: Duration,
    /// Addresses never blocked (health checkers, the load balancer).
    pub never: IpSet,
}

pub struct Blocker {
    settings: arc_swap::ArcSwap<BlockSettings>,
    failures: Mutex<HashMap<Who, Failures>>,
    blocked: RwLock<Blocked>,
    metrics: Option<BlockMetrics>,
}

/// Most clients whose failures are tracked at once; beyond it the stalest go.
const MAX_TRACKED: usize = 100_000;
/// Most blocks held at once; beyond it the one ending soonest goes.
const MAX_BLOCKED: usize = 50_000;
/// Blocked /64s in one /48 that turn into one /48 block.
pub const AGGREGATE_48_AT: u32 = 16;
/// The longest `window` or `duration` a config may set.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);
/// Reasons kept as evidence per client.
pub const EVIDENCE: usize = 8;

impl Blocker {
    pub fn new(mut settings: BlockSettings, metrics: Option<BlockMetrics>) -> Blocker {
        settings.max_failures = settings.max_failures.max(1);
        Blocker {
            settings: arc_swap::ArcSwap::from_pointee(settings),
            failures: Mutex::new(HashMap::new()),
            blocked: RwLock::new(Blocked::default()),
            metrics,
        }
    }

    /// New thresholds and durations; blocks already imposed keep their end.
    pub fn reconfigure(&self, mut settings: BlockSettings) {
        settings.max_failures = settings.max_failures.max(1);
        self.settings.store(Arc::new(settings));
    }

    /// Is this client blocked now? Expired blocks are treated as gone.
    pub fn is_blocked(&self, who: &Who) -> bool {
        let now = Instant::now();
        let b = self.blocked.read().unwrap_or_else(PoisonError::into_inner);
        b.map.get(who).is_some_and(|x| x.until > now)
    }

    /// Is this address blocked, by its own unit or by its /48?
    pub fn ip_blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let b = self.blocked.read().unwrap_or_else(PoisonError::into_inner);
        Who::units(ip).any(|w| b.map.get(&w).is_some_and(|x| x.until > now))
    }

    pub fn settings(&self) -> Arc<BlockSettings> {
        self.settings.load_full()
    }

    /// Who one failure counts against: the address (unless it is never
    /// blocked) and the verified identity, when there is one.
    pub fn subjects(&self, ip: IpAddr, identity: Option<Fingerprint>) -> impl Iterator<Item = Who> {
        let never = self.settings.load().never.contains(canonical(ip));
        [(!never).then(|| Who::ip(ip)), identity.map(Who::Identity)]
            .into_iter()
            .flatten()
    }

    /// Records one authentication failure of an address (and of the verified
    /// identity, when there is one); imposes and logs a block when a client
    /// crosses the threshold.
    pub fn failed(&self, ip: IpAddr, identity: Option<Fingerprint>, reason: &'static str) {
        for who in self.subjects(ip, identity) {
            self.failed_one(who, reason);
        }
    }

    /// One failure of one client, in this process alone.
    pub fn failed_one(&self, who: Who, reason: &'static str) {
        if let Some((who, block)) = self.record(who, reason) {
            self.announce(who, &block);
        }
    }

    /// Counts and logs a block the moment it is imposed (once, by whoever
    /// imposed it).
    pub fn announce(&self, who: Who, block: &Block) {
        if let Some(m) = &self.metrics {
            match who {
                Who::Ip(..) => m.ip_blocks.inc(),
                Who::Identity(_) => m.identity_blocks.inc(),
            }
        }
        tracing::warn!(
            target: "sealgate::admission",
            client = %who,
            kind = who.kind(),
            failures = block.failures,
            evidence = ?block.reasons,
            blocked_until_unix = block.until_unix,
            "client blocked after repeated authentication failures"
        );
    }

    /// Holds a block imposed elsewhere (another replica, through the shared
    /// store), so this process refuses the client without asking again.
    pub fn hold(&self, who: Who, block: Block) {
        let now = Instant::now();
        let mut b = self.blocked.write().unwrap_or_else(PoisonError::into_inner);
        if b.map.get(&who).is_some_and(|x| x.until >= block.until) {
            return;
        }
        Self::make_room(&mut b, now);
        b.insert(who, block);
        self.set_gauge(b.map.len());
    }

    /// Records one failure; returns the block (and what it covers) when this
    /// failure crossed the threshold, so it is logged exactly once.
    fn record(&self, who: Who, reason: &'static str) -> Option<(Who, Block)> {
        if let Who::Ip(ip, _) = who {
            if self.ip_blocked(ip) {
                return None;
            }
        } else if self.is_blocked(&who) {
            return None;
        }
        let now = Instant::now();
        let settings = self.settings.load();
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&who) {
            forget_stalest(&mut map, settings.window, now);
        }
        let f = map.entry(who).or_insert_with(|| Failures {
            at: VecDeque::new(),
            reasons: VecDeque::new(),
        });
        while f
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= settings.window)
        {
            f.at.pop_front();
        }
        f.at.push_back(now);
        f.reasons.push_back(reason);
        while f.reasons.len() > EVIDENCE {
            f.reasons.pop_front();
        }
        while f.at.len() > settings.max_failures as usize {
            f.at.pop_front();
        }
        if (f.at.len() as u32) < settings.max_failures {
            return None;
        }
        let block = Block {
            until: now + settings.duration,
            until_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| (d + settings.duration).as_secs())
                .unwrap_or(0),
            failures: f.at.len() as u32,
            reasons: f.reasons.iter().map(|r| (*r).to_owned()).collect(),
        };
        map.remove(&who);
        drop(map);
        let covered = self.impose(who, block.clone(), now);
        Some((covered, block))
    }

    /// Adds a block within the table's bound; returns what it ended up covering.
    fn impose(&self, who: Who, block: Block, now: Instant) -> Who {
        let mut b = self.blocked.write().unwrap_or_else(PoisonError::into_inner);
        let mut target = who;
        if let Who::Ip(ip, 64) = who {
            let siblings = Who::net48(ip)
                .and_then(|w| match w {
                    Who::Ip(net, _) => b.per_48.get(&net).copied(),
                    Who::Identity(_) => None,
                })
                .unwrap_or(0);
            let crowded = b.map.len() >= MAX_BLOCKED * 3 / 4;
            if siblings + 1 >= AGGREGATE_48_AT || crowded {
                if let Some(net) = Who::net48(ip) {
                    target = net;
                    let inside: Vec<Who> = b
                        .map
                        .keys()
                        .filter(|w| matches!(w, Who::Ip(a, 64) if Who::net48(*a) == Some(net)))
                        .copied()
                        .collect();
                    for w in inside {
                        b.remove(&w);
                    }
                }
            }
        }
        Self::make_room(&mut b, now);
        b.insert(target, block);
        self.set_gauge(b.map.len());
        target
    }

    /// Keeps the table within its bound before an insert.
    fn make_room(b: &mut Blocked, now: Instant) {
        if b.map.len() >= MAX_BLOCKED {
            b.prune(now);
        }
        if b.map.len() >= MAX_BLOCKED {
            let soonest = b.map.iter().min_by_key(|(_, x)| x.until).map(|(w, _)| *w);
            if let Some(w) = soonest {
                b.remove(&w);
            }
        }
    }

    fn set_gauge(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.active.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Drops expired blocks and stale failure records; run on a timer.
    pub fn prune(&self) {
        let now = Instant::now();
        {
            let mut b = self.blocked.write().unwrap_or_else(PoisonError::into_inner);
            b.prune(now);
            self.set_gauge(b.map.len());
        }
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let window = self.settings.load().window;
        f.retain(|_, x| x.at.back().is_some_and(|t| now.duration_since(*t) < window));
    }

    /// Active blocks, soonest to end first (for `/blocked`).
    pub fn active(&self) -> Vec<(Who, Block)> {
        let now = Instant::now();
        let b = self.blocked.read().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<(Who, Block)> = b
            .map
            .iter()
            .filter(|(_, x)| x.until > now)
            .map(|(w, x)| (*w, x.clone()))
            .collect();
        v.sort_by_key(|(_, x)| x.until);
        v
    }

    /// Entries in the block table (expired ones included until pruned).
    pub fn table_len(&self) -> usize {
        self.blocked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

/// Frees room in the failure table: forgets clients outside the window, and
/// if everyone is recent, the tenth whose last failure is oldest, so a flood
/// of one-off failures cannot wash out a persistent attacker's.
fn forget_stalest(map: &mut HashMap<Who, Failures>, window: Duration, now: Instant) {
    map.retain(|_, f| f.at.back().is_some_and(|t| now.duration_since(*t) < window));
    if map.len() < MAX_TRACKED {
        return;
    }
    let mut by_age: Vec<(Instant, Who)> = map
        .iter()
        .filter_map(|(w, f)| f.at.back().map(|t| (*t, *w)))
        .collect();
    let cut = by_age.len() / 10;
    by_age.select_nth_unstable_by_key(cut, |(t, _)| *t);
    for (_, w) in by_age.into_iter().take(cut + 1) {
        map.remove(&w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocker(never: &[&str], duration: Duration) -> Blocker {
        let nets: Vec<ipnet::IpNet> = never.iter().map(|n| n.parse().unwrap()).collect();
        Blocker::new(
            BlockSettings {
                max_failures: 3,
                window: Duration::from_secs(60),
                duration,
                never: IpSet::from_nets(&nets),
            },
            None,
        )
    }

    #[test]
    fn blocks_after_n_failures_in_window_and_lifts() {
        let b = blocker(&["10.9.0.0/16"], Duration::from_millis(50));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(b.record(Who::ip(ip), "expired").is_none());
        assert!(b.record(Who::ip(ip), "expired").is_none());
        let (_, block) = b.record(Who::ip(ip), "unknown_issuer").unwrap();
        assert_eq!(block.reasons, vec!["expired", "expired", "unknown_issuer"]);
        assert!(b.ip_blocked(ip));
        // IPv4-mapped form is the same client.
        assert!(b.ip_blocked("::ffff:192.0.2.7".parse().unwrap()));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!b.ip_blocked(ip));
        assert!(b.active().is_empty());
        b.prune();
        assert_eq!(b.table_len(), 0);
        // An IPv6 client is blocked by its /64.
        for n in 1..=3 {
            let ip: IpAddr = format!("2001:db8:1:2::{n}").parse().unwrap();
            b.failed(ip, None, "expired");
        }
        assert!(b.ip_blocked("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(!b.ip_blocked("2001:db8:1:3::1".parse().unwrap()));
        // Never-block addresses are never blocked.
        for _ in 0..10 {
            b.failed("10.9.1.1".parse().unwrap(), None, "expired");
        }
        assert!(!b.ip_blocked("10.9.1.1".parse().unwrap()));
    }

    #[test]
    fn a_48_that_keeps_minting_64s_becomes_one_entry() {
        let b = blocker(&[], Duration::from_secs(60));
        for n in 0..2000u32 {
            let ip: IpAddr = format!("2001:db8:7:{:x}::1", n).parse().unwrap();
            for _ in 0..3 {
                b.failed(ip, None, "unknown_issuer");
            }
        }
        // AGGREGATE_48_AT - 1 /64 blocks came first, then one /48 replaced them.
        assert_eq!(b.table_len(), 1, "{:?}", b.active());
        assert!(b.ip_blocked("2001:db8:7:ffff::5".parse().unwrap()));
        assert!(!b.ip_blocked("2001:db8:8::5".parse().unwrap()));
        let (who, _) = &b.active()[0];
        assert_eq!(who.to_string(), "2001:db8:7::/48");
    }

    #[test]
    fn the_block_table_never_exceeds_its_bound() {
        let b = blocker(&[], Duration::from_secs(60));
        // Distinct IPv4 clients, each failing enough to be blocked.
        for n in 0..(MAX_BLOCKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + n));
            for _ in 0..3 {
                b.failed(ip, None, "unknown_issuer");
            }
        }
        assert!(b.table_len() <= MAX_BLOCKED, "{}", b.table_len());
        // The most recent is blocked.
        let last = IpAddr::from(std::net::Ipv4Addr::from(
            0x0b00_0000 + MAX_BLOCKED as u32 + 499,
        ));
        assert!(b.ip_blocked(last));
    }
}
