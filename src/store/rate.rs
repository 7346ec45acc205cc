//! Rate limits evaluated in the shared store: GCRA in one Lua script per
//! request (every limit of the route in one round trip, on Redis's clock so
//! replicas agree), giving the decision and wait the in-memory limiter
//! gives. A bucket's key expires when the bucket is full again, so Redis
//! holds only the clients active now.

use super::redis::{RedisStore, StoreError};
use crate::admission::rate::{Gcra, Key};
use std::time::Duration;

/// KEYS: the buckets; ARGV: per bucket its interval and tolerance (µs).
/// Buckets are taken in order until one refuses (as the in-memory checks
/// are); returns 0, or the µs to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  if tat - now > tolerance then
    return tat - tolerance - now
  end
  local new = tat + interval
  redis.call('SET', key, string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
end
return 0
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

/// `Ok(None)` when every bucket admits the request, `Ok(Some(wait))` when one
/// refuses it.
pub async fn take(
    store: &RedisStore,
    buckets: &[Bucket<'_>],
) -> Result<Option<Duration>, StoreError> {
    let keys: Vec<String> = buckets
        .iter()
        .map(|b| store.key("rate", &name(b)))
        .collect();
    let args: Vec<u64> = buckets
        .iter()
        .flat_map(|b| [b.gcra.interval_us, b.gcra.tolerance_us])
        .collect();
    let wait: i64 = store.script("rate", script(), &keys, &args).await?;
    Ok((wait > 0).then(|| Duration::from_micros(wait.unsigned_abs())))
}
