//! A request's admission in the shared store: its blocks, then its rate
//! limits as GCRA, in one Lua script per request (one round trip, on Redis's
//! clock so replicas agree), giving the decision and wait the in-memory
//! limiter gives. A bucket's key expires when the bucket is full again, so
//! Redis holds only the clients active now.

use super::redis::{RedisStore, StoreError};
use crate::admission::rate::{Gcra, Key};
use std::time::Duration;

/// KEYS: the blocks to look up (ARGV[1] of them), then the buckets; ARGV
/// after the count: per bucket its interval and tolerance (µs). A block
/// refuses first: {2, its index from 1, the block}; then buckets are taken in
/// order until one refuses (as the in-memory checks are): {1, µs to wait};
/// else {0}.
const GCRA: &str = r"
local blocks = tonumber(ARGV[1])
for i = 1, blocks do
  local b = redis.call('GET', KEYS[i])
  if b then return {2, i, b} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = blocks + 1, #KEYS do
  local j = i - blocks
  local interval = tonumber(ARGV[2 * j])
  local tolerance = tonumber(ARGV[2 * j + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if tat - now > tolerance then
    return {1, tat - tolerance - now, ''}
  end
  local new = tat + interval
  redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
end
return {0, 0, ''}
";

fn script() -> &'static ::redis::Script {
    static S: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
    S.get_or_init(|| ::redis::Script::new(GCRA))
}

/// One bucket to take from: the limit's id, the key within it (none for a
/// route's or a global bucket), and its rate.
pub struct Bucket<'a> {
    pub id: &'a str,
    pub key: Option<Key>,
    pub gcra: Gcra,
}

fn name(b: &Bucket<'_>) -> String {
    match b.key {
        None => b.id.to_owned(),
        Some(Key::Client(c)) => format!("{}:c:{c:016x}", b.id),
        Some(Key::Ip(hi, lo)) => format!("{}:i:{hi:016x}{lo:016x}", b.id),
    }
}

/// What the store said of one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// The block at this index of the lookups, as the store keeps it.
    Blocked(usize, String),
    Wait(Duration),
}

/// Looks up `blocks` (keys from `Blocks::key`), then takes from `buckets`.
pub async fn check(
    store: &RedisStore,
    blocks: &[String],
    buckets: &[Bucket<'_>],
) -> Result<Verdict, StoreError> {
    let keys: Vec<String> = blocks
        .iter()
        .cloned()
        .chain(buckets.iter().map(|b| store.key("rate", &name(b))))
        .collect();
    let args: Vec<u64> = std::iter::once(blocks.len() as u64)
        .chain(
            buckets
                .iter()
                .flat_map(|b| [b.gcra.interval_us, b.gcra.tolerance_us]),
        )
        .collect();
    let kind = if buckets.is_empty() { "block" } else { "rate" };
    let (code, n, block): (i64, i64, String) = store.script(kind, script(), &keys, &args).await?;
    Ok(match code {
        2 => Verdict::Blocked(
            usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX),
            block,
        ),
        1 => Verdict::Wait(Duration::from_micros(n.max(1).unsigned_abs())),
        _ => Verdict::Admit,
    })
}
