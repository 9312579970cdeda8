//! Rate limiting, `scope: local`: the buckets of one policy in this process. Exact under
//! concurrency (a decision is one read-modify-write under its shard's lock) and bounded in memory:
//! at most `capacity` keys are kept. Keys whose bucket is full again are forgotten first, which
//! changes no decision (see `gcra`); past that, a flood of distinct keys makes the shard forget its
//! stalest quarter (the buckets closest to full), so memory stays bounded whatever clients send.

use super::gcra::{Decision, Gcra};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use tokio::time::Instant;

/// Keys kept per policy by default: 100k keys is about 3 MiB, and far more distinct clients than
/// one replica sees within a period.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

const SHARDS: usize = 16;

/// Keys arrive already hashed (by a per-process random seed): the map need not hash them again.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, u64, BuildHasherDefault<Identity>>;

/// The buckets of one local rate limit.
pub(crate) struct LocalLimiter {
    gcra: Gcra,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    seed: RandomState,
    epoch: Instant,
}

impl LocalLimiter {
    /// Buckets for `gcra`, at most about `capacity` keys.
    pub(crate) fn new(gcra: Gcra, capacity: usize) -> Self {
        LocalLimiter {
            gcra,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(4),
            seed: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Decides for one request of the key `key`.
    pub(crate) fn check(&self, key: &impl std::hash::Hash) -> Decision {
        let h = self.seed.hash_one(key);
        // Nanoseconds since the limiter was made, plus one period so that 0 means "never seen"
        // and a first request meets a full bucket.
        let now = (Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64)
            .saturating_add(self.gcra.capacity);
        let shard = &self.shards[(h >> 59) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(&h) {
            evict(&mut map, now, self.per_shard);
        }
        let tat = map.get(&h).copied().unwrap_or(0);
        let (decision, new_tat) = self.gcra.decide(tat, now);
        if decision.allowed {
            map.insert(h, new_tat);
        }
        decision
    }

    /// Keys held now (the flood bound's tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Makes room in a full shard: first every full bucket (exact), then, if that freed less than a
/// quarter, the quarter of keys with the oldest TAT.
fn evict(map: &mut Shard, now: u64, cap: usize) {
    map.retain(|_, tat| *tat > now);
    if map.len() < cap - cap / 4 {
        return;
    }
    let mut tats: Vec<u64> = map.values().copied().collect();
    let cut = tats.len() / 4;
    let (_, threshold, _) = tats.select_nth_unstable(cut);
    let threshold = *threshold;
    map.retain(|_, tat| *tat > threshold);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn burst_at_once_then_the_rate_on_the_clock() {
        // 5 per second, bucket of 10.
        let l = LocalLimiter::new(Gcra::new(5, Duration::from_secs(1), 10), 1000);
        let admitted = (0..50).filter(|_| l.check(&"alice").allowed).count();
        assert_eq!(admitted, 10, "exactly the burst at once");
        assert!(l.check(&"bob").allowed, "keys are independent");
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(!l.check(&"alice").allowed);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(l.check(&"alice").allowed, "one more after T = 200 ms");
        assert!(!l.check(&"alice").allowed);
        // Ten seconds at the rate: exactly 50 more.
        let mut more = 0;
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(10)).await;
            more += (0..3).filter(|_| l.check(&"alice").allowed).count();
        }
        assert_eq!(more, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn exact_under_concurrency() {
        let l = std::sync::Arc::new(LocalLimiter::new(
            Gcra::new(1000, Duration::from_secs(3600), 1000),
            1000,
        ));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..500).filter(|_| l.check(&7u32).allowed).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_distinct_keys_stays_bounded() {
        let l = LocalLimiter::new(Gcra::new(1, Duration::from_secs(60), 1), 1600);
        for i in 0..200_000u32 {
            l.check(&i);
        }
        assert!(l.len() <= 1600, "{} keys kept", l.len());
        // Idle keys go first and exactly: after a period every bucket is full again.
        tokio::time::advance(Duration::from_secs(61)).await;
        for i in 0..SHARDS as u32 * 200 {
            assert!(l.check(&(1_000_000 + i)).allowed);
        }
        assert!(l.len() <= 1600);
    }
}
