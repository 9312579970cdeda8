//! Rate limiting, `scope: global`: the buckets live in Redis, shared by every replica. One atomic
//! Lua script per decision (one round trip) runs the same GCRA as `gcra`, on Redis's own clock so
//! replicas need no synchronised clocks. Every call is bounded by `redis.timeout`; past it, or on
//! any error, the caller's `onStoreError` decides. The connection manager reconnects by itself.

use super::gcra::{Decision, Gcra};
use redis::aio::ConnectionManager;
use redis::Client;
use std::time::Duration;

/// The GCRA of `gcra.rs`, in microseconds, atomically in Redis. Returns `{allowed, remaining,
/// wait_us}`. The key expires when its bucket would be full again, so idle keys cost nothing.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > capacity then
  return {0, 0, ahead - capacity}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((capacity - ahead) / interval), ahead}
";

/// Why a global decision could not be made.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// Redis did not answer within `redis.timeout`.
    Timeout,
    /// Redis answered with an error, or the connection failed.
    Failed(redis::RedisError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("Redis did not answer in time"),
            StoreError::Failed(e) => write!(f, "Redis failed: {e}"),
        }
    }
}

/// The connection to the Gateway's `redis`, shared by every global limit; it outlives reloads
/// that keep `redis` unchanged.
pub(crate) struct RedisStore {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
}

impl RedisStore {
    /// A store for `url` (not connected yet: the first decision connects). Must be called inside
    /// a tokio runtime that outlives it (the control runtime), which drives the connection.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        // Reconnecting is the manager's job; each attempt is bounded so that a dead Redis makes
        // decisions fail fast (the caller's timeout bounds them anyway).
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cannot set up the Redis connection: {e}"))?;
        Ok(RedisStore {
            conn,
            script: redis::Script::new(SCRIPT),
            timeout,
        })
    }

    /// Decides for one request of `key` under `gcra`, within the store's timeout.
    pub(crate) async fn check(&self, key: &str, gcra: Gcra) -> Result<Decision, StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.script.key(key);
        call.arg(gcra.interval.div_ceil(1000).max(1))
            .arg(gcra.capacity.div_ceil(1000).max(1));
        let reply = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await;
        let (allowed, remaining, wait_us): (i64, i64, i64) = match reply {
            Err(_) => return Err(StoreError::Timeout),
            Ok(Err(e)) => return Err(StoreError::Failed(e)),
            Ok(Ok(v)) => v,
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            wait: Duration::from_micros(wait_us.max(0) as u64),
        })
    }
}
