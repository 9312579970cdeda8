//! Config flow and request flow: the decision cache of an `externalAuth` policy — what its auth
//! service answered for a credential, reused for `cache.ttl`. Kept across reloads while the
//! policy's `externalAuth` is unchanged (a changed service, header list or ttl starts afresh:
//! its old answers may no longer be what it would say). Bounded by `cache.maxEntries`: when full,
//! expired entries go first, then arbitrary ones, so a flood of distinct credentials can cost
//! memory only up to the bound.

use crate::policy::auth::external::Decision;
use gatehouse_config::{Config, ExternalAuth, ObjectId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A credential's key: SHA-256 of the listed headers' values (never the values themselves).
pub(crate) type CredentialKey = [u8; 32];

/// The decisions of one policy's auth service.
pub(crate) struct DecisionCache {
    entries: Mutex<HashMap<CredentialKey, (Instant, Decision)>>,
    ttl: Duration,
    max: usize,
}

impl DecisionCache {
    /// An empty cache keeping decisions for `ttl`, at most `max` of them.
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        DecisionCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max: max.max(1),
        }
    }

    /// The decision for `key`, if one younger than the ttl is kept.
    pub(crate) fn get(&self, key: &CredentialKey) -> Option<Decision> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((expires, d)) if *expires > Instant::now() => Some(d.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `d` for `key` for the ttl, making room first when the cache is full.
    pub(crate) fn insert(&self, key: CredentialKey, d: Decision) {
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, (expires, _)| *expires > now);
            while map.len() >= self.max {
                let Some(victim) = map.keys().next().copied() else {
                    break;
                };
                map.remove(&victim);
            }
        }
        map.insert(key, (now + self.ttl, d));
    }

    /// Decisions kept now, expired or not (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Each cached `externalAuth` with the spec its cache was made for.
pub(crate) type Caches = HashMap<ObjectId, (ExternalAuth, Arc<DecisionCache>)>;

/// The caches `config` will use: `current`'s for unchanged specs, new ones otherwise.
pub(crate) fn plan(config: &Config, current: &Caches) -> Caches {
    let mut out = Caches::new();
    for p in &config.policies {
        let Some(ext) = &p.external_auth else {
            continue;
        };
        let Some(c) = &ext.cache else {
            continue;
        };
        let cache = match current.get(&p.id) {
            Some((old, cache)) if old == ext => cache.clone(),
            _ => Arc::new(DecisionCache::new(c.ttl, c.max_entries)),
        };
        out.insert(p.id.clone(), (ext.clone(), cache));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Decision {
        Decision::Allow(Arc::from(Vec::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_expire_after_the_ttl() {
        let c = DecisionCache::new(Duration::from_secs(30), 10);
        c.insert([1; 32], allow());
        assert!(c.get(&[1; 32]).is_some());
        assert!(c.get(&[2; 32]).is_none());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(c.get(&[1; 32]).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.get(&[1; 32]).is_none(), "expired");
        assert_eq!(c.len(), 0, "an expired entry is dropped when found");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_never_holds_more_than_its_bound() {
        let c = DecisionCache::new(Duration::from_secs(30), 3);
        for i in 0..100u8 {
            c.insert([i; 32], allow());
            assert!(c.len() <= 3);
        }
        assert!(c.get(&[99; 32]).is_some(), "the newest decision is kept");
        // Expired entries make room before live ones are dropped.
        tokio::time::advance(Duration::from_secs(31)).await;
        c.insert([200; 32], allow());
        assert_eq!(c.len(), 1);
    }
}
