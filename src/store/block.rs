//! Blocks that replicas share. With a shared store, a client's failures are
//! counted and its block kept in Redis, so a client blocked on one replica
//! is refused at accept on every other one within one lookup; each replica
//! also holds the blocks it has met in its own table, so a blocked client
//! that keeps knocking costs no further round trips. While the store does not
//! answer, each replica counts and blocks on its own (`on_failure.blocks =
//! "local"`).

use super::redis::{RedisStore, StoreError};
use crate::admission::block::{Block, BlockSettings, Blocker, Who, AGGREGATE_48_AT, EVIDENCE};
use crate::fingerprint::Fingerprint;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Metric label of block operations.
const KIND: &str = "block";
/// A block the store says lasts longer than the longest configurable is not one.
const MAX_BLOCK_MS: u64 = crate::admission::block::MAX_DURATION.as_millis() as u64;
/// Most blocks `/blocked` lists from the store.
const MAX_LISTED: usize = 10_000;

/// Records one failure for each subject, in one round trip. KEYS[1]: the
/// index of blocks (a sorted set scored by end); then per subject its
/// failure list, its block, its /48's block and its /48's count of blocked
/// /64s. ARGV: max failures, window, duration (ms), reason, evidence kept,
/// /64s that make a /48 block; then per subject its index member and its
/// /48's ('' when it has none). A subject already blocked means the client
/// is: nothing is counted and the answer is {2, its member, its block}, as
/// the in-memory table refuses a blocked client before judging it.
/// Otherwise per subject a code (0 counted, 1 blocked now), the member
/// blocked and the block.
const FAIL: &str = r"
local subjects = (#KEYS - 1) / 4
for i = 0, subjects - 1 do
  local member, member48 = ARGV[7 + 2 * i], ARGV[8 + 2 * i]
  local b = redis.call('GET', KEYS[3 + 4 * i])
  if b then return {'2', member, b} end
  if member48 ~= '' then
    b = redis.call('GET', KEYS[4 + 4 * i])
    if b then return {'2', member48, b} end
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local duration = tonumber(ARGV[3])
local evidence = tonumber(ARGV[5])
local keep = math.max(max, evidence)
local out = {}
for i = 0, subjects - 1 do
  local fails, block, block48, count48 = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]
  local member, member48 = ARGV[7 + 2 * i], ARGV[8 + 2 * i]
  do
    redis.call('RPUSH', fails, now .. ' ' .. ARGV[4])
    redis.call('LTRIM', fails, -keep, -1)
    redis.call('PEXPIRE', fails, window)
    local entries = redis.call('LRANGE', fails, 0, -1)
    local recent = 0
    for _, e in ipairs(entries) do
      if now - tonumber(string.match(e, '^%d+')) < window then recent = recent + 1 end
    end
    if recent < max then
      table.insert(out, '0'); table.insert(out, ''); table.insert(out, '')
    else
      local reasons = {}
      for k = math.max(1, #entries - evidence + 1), #entries do
        table.insert(reasons, string.match(entries[k], ' (.*)$'))
      end
      local target, blocked = block, member
      if member48 ~= '' then
        local n = redis.call('INCR', count48)
        redis.call('PEXPIRE', count48, duration)
        if n >= tonumber(ARGV[6]) then target, blocked = block48, member48 end
      end
      local value = (now + duration) .. ' ' .. max .. ' ' .. table.concat(reasons, ',')
      redis.call('SET', target, value, 'PX', duration)
      redis.call('ZADD', KEYS[1], now + duration, blocked)
      redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
      -- The index lives as long as its last block.
      local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
      if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
      redis.call('DEL', fails)
      table.insert(out, '1'); table.insert(out, blocked); table.insert(out, value)
    end
  end
end
return out
";

fn fail_script() -> &'static ::redis::Script {
    static S: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| ::redis::Script::new(FAIL))
}

/// The block list: this process's table, and the shared store when there is one.
#[derive(Clone)]
pub struct Blocks {
    local: Arc<Blocker>,
    shared: Option<Arc<RedisStore>>,
}

impl Blocks {
    pub fn new(local: Arc<Blocker>, shared: Option<Arc<RedisStore>>) -> Blocks {
        Blocks { local, shared }
    }

    pub fn local(&self) -> &Blocker {
        &self.local
    }

    /// The store's key of `who`'s block.
    pub fn key(store: &RedisStore, who: &Who) -> String {
        store.key(KIND, &member(who))
    }

    /// Is this address blocked in the shared store (this table asked first)?
    pub async fn ip_blocked_in_store(&self, ip: IpAddr) -> bool {
        self.shared_lookup(Who::units(ip).collect()).await
    }

    /// Is this certificate blocked? This table first, then the store.
    pub async fn identity_blocked(&self, fp: Fingerprint) -> bool {
        let who = Who::Identity(fp);
        self.local.is_blocked(&who) || self.shared_lookup(vec![who]).await
    }

    /// Whether this table holds a block on the address or the identity (the
    /// store is asked with the request's rate limits, in the same round trip).
    pub fn held(&self, ip: IpAddr, identity: Option<&Who>) -> bool {
        identity.is_some_and(|w| self.local.is_blocked(w)) || self.local.ip_blocked(ip)
    }

    /// The blocks one request is checked against: the address's and the identity's.
    pub fn lookups(ip: IpAddr, identity: Option<&Who>) -> Vec<Who> {
        Who::units(ip).chain(identity.copied()).collect()
    }

    /// A block the store answered with: held here from now on.
    pub fn met(&self, who: Who, value: &str) {
        if let Some(block) = parse(value) {
            self.local.hold(who, block);
        }
    }

    async fn shared_lookup(&self, whos: Vec<Who>) -> bool {
        let Some(store) = &self.shared else {
            return false;
        };
        let names: Vec<String> = whos.iter().map(member).collect();
        match store.get_many(KIND, &names).await {
            Ok(values) => {
                let found = whos
                    .into_iter()
                    .zip(values)
                    .find_map(|(w, v)| Some((w, v?)));
                found.is_some_and(|(who, value)| {
                    self.met(who, &value);
                    true
                })
            }
            Err(_) => {
                // This table, already asked, is the fallback.
                store.count(KIND, "fallback");
                false
            }
        }
    }

    /// Records one authentication failure of an address and identity, and
    /// imposes (and logs, once across the fleet) the block it completes.
    /// True when the store already holds a block on either: the refusal is
    /// then `blocked`, as this table would have said.
    pub async fn failed(
        &self,
        ip: IpAddr,
        identity: Option<Fingerprint>,
        reason: &'static str,
    ) -> bool {
        let subjects: Vec<Who> = self.local.subjects(ip, identity).collect();
        let Some(store) = &self.shared else {
            for who in subjects {
                self.local.failed_one(who, reason);
            }
            return false;
        };
        if subjects.is_empty() {
            return false;
        }
        match fail(store, &self.local.settings(), &subjects, reason).await {
            Ok(outcomes) => {
                let mut already = false;
                for outcome in outcomes {
                    match outcome {
                        Failed::Counted => {}
                        Failed::Already(who, block) => {
                            if let Some(block) = block {
                                self.local.hold(who, block);
                            }
                            already = true;
                        }
                        Failed::Blocked(who, block) => {
                            self.local.hold(who, block.clone());
                            self.local.announce(who, &block);
                        }
                    }
                }
                already
            }
            Err(_) => {
                store.count(KIND, "fallback");
                for who in subjects {
                    self.local.failed_one(who, reason);
                }
                false
            }
        }
    }

    /// Active blocks, soonest to end first: the store's (with the error that
    /// kept it from answering) merged with this table's.
    pub async fn active(&self) -> (Vec<(Who, Block)>, Option<StoreError>) {
        let mut list = self.local.active();
        let mut error = None;
        if let Some(store) = &self.shared {
            match listed(store).await {
                Ok(shared) => {
                    for (who, block) in shared {
                        if !list.iter().any(|(w, _)| *w == who) {
                            list.push((who, block));
                        }
                    }
                    list.sort_by_key(|(_, b)| b.until);
                }
                Err(e) => error = Some(e),
            }
        }
        (list, error)
    }

    /// Drops expired entries from this table; the store expires its own.
    pub fn prune(&self) {
        self.local.prune();
    }
}

/// `kind:client`: a block's member in the index and the end of its key.
fn member(who: &Who) -> String {
    format!("{}:{who}", who.kind())
}

/// What one failure did to one subject.
enum Failed {
    Counted,
    /// The client was blocked already (by this block, when it reads).
    Already(Who, Option<Block>),
    Blocked(Who, Block),
}

async fn fail(
    store: &RedisStore,
    settings: &BlockSettings,
    subjects: &[Who],
    reason: &'static str,
) -> Result<Vec<Failed>, StoreError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut keys = vec![store.key(KIND, "index")];
    let mut args = vec![
        settings.max_failures.to_string(),
        ms(settings.window).to_string(),
        ms(settings.duration).to_string(),
        reason.to_owned(),
        EVIDENCE.to_string(),
        AGGREGATE_48_AT.to_string(),
    ];
    for who in subjects {
        let m = member(who);
        let net = who.aggregate();
        let m48 = net.as_ref().map(member);
        keys.push(store.key("failures", &m));
        keys.push(store.key(KIND, &m));
        keys.push(store.key(KIND, m48.as_deref().unwrap_or(&m)));
        keys.push(store.key("blocked64", m48.as_deref().unwrap_or(&m)));
        args.push(m);
        args.push(m48.unwrap_or_default());
    }
    let out: Vec<String> = store.script(KIND, fail_script(), &keys, &args).await?;
    let bad = || StoreError::Failed("unexpected answer to the failure script".into());
    if let [code, who, value] = out.as_slice() {
        if code == "2" {
            let who = who.parse::<Who>().map_err(|_| bad())?;
            return Ok(vec![Failed::Already(who, parse(value))]);
        }
    }
    if out.len() != subjects.len() * 3 {
        return Err(bad());
    }
    out.chunks(3)
        .map(|c| match c {
            [code, ..] if code == "0" => Ok(Failed::Counted),
            [code, who, value] if code == "1" => {
                let who = who.parse::<Who>().map_err(|_| bad())?;
                // The store imposed it: so it is, even if this replica's
                // clock reads its end as past.
                let block = parse(value).unwrap_or_else(|| Block {
                    until: Instant::now() + settings.duration,
                    until_unix: unix_ms(SystemTime::now() + settings.duration) / 1000,
                    failures: settings.max_failures,
                    reasons: vec![reason.to_owned()],
                });
                Ok(Failed::Blocked(who, block))
            }
            _ => Err(bad()),
        })
        .collect()
}

/// The store's active blocks.
async fn listed(store: &RedisStore) -> Result<Vec<(Who, Block)>, StoreError> {
    let now_ms = unix_ms(SystemTime::now());
    let mut cmd = ::redis::cmd("ZRANGEBYSCORE");
    cmd.arg(store.key(KIND, "index"))
        .arg(now_ms)
        .arg("+inf")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_LISTED);
    let members: Vec<String> = store.admin_query(&cmd).await?;
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut get = ::redis::cmd("MGET");
    for m in &members {
        get.arg(store.key(KIND, m));
    }
    let values: Vec<Option<String>> = store.admin_query(&get).await?;
    Ok(members
        .iter()
        .zip(values)
        .filter_map(|(m, v)| Some((m.parse::<Who>().ok()?, parse(&v?)?)))
        .collect())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A block as the store keeps it: `END_MS FAILURES reason,reason…`; `None`
/// when it has already ended here or is not one.
fn parse(value: &str) -> Option<Block> {
    let mut parts = value.splitn(3, ' ');
    let until_ms: u64 = parts.next()?.parse().ok()?;
    let failures: u32 = parts.next()?.parse().ok()?;
    let reasons = parts
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    let left = until_ms.checked_sub(unix_ms(SystemTime::now()))?;
    if left > MAX_BLOCK_MS {
        return None;
    }
    Some(Block {
        until: Instant::now().checked_add(Duration::from_millis(left))?,
        until_unix: until_ms / 1000,
        failures,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_names_its_client_both_ways() {
        let fp = Fingerprint::parse(&"ab".repeat(32)).unwrap();
        for who in [
            Who::ip("192.0.2.7".parse().unwrap()),
            Who::ip("2001:db8:1:2::9".parse().unwrap()),
            Who::ip("2001:db8:1:2::9".parse::<IpAddr>().unwrap())
                .aggregate()
                .unwrap(),
            Who::Identity(fp),
        ] {
            assert_eq!(member(&who).parse::<Who>(), Ok(who), "{}", member(&who));
        }
        for bad in ["ip:2001:db8::1", "ip:192.0.2.0/24", "identity:zz", "x:1"] {
            assert!(bad.parse::<Who>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stored_block_reads_back_until_it_ends() {
        let soon = unix_ms(SystemTime::now()) + 60_000;
        let b = parse(&format!("{soon} 3 expired,unknown_issuer")).unwrap();
        assert_eq!(b.failures, 3);
        assert_eq!(b.reasons, ["expired", "unknown_issuer"]);
        assert!(b.until > Instant::now() + Duration::from_secs(50));
        assert!(parse("1000 3 expired").is_none(), "ended long ago");
        assert!(
            parse("18446744073709551615 3 x").is_none(),
            "no end in sight"
        );
        assert!(parse("soon 3 x").is_none());
    }
}
