//! Config flow, after validation: the policies' state that outlives reloads — the buckets of each
//! local rate limit, keyed by policy id, and the Redis connection of global ones. A reload that
//! keeps a policy's `rateLimit` unchanged keeps its buckets; one that changes it starts afresh
//! (a new rate makes old arrival times meaningless). Redis is reconnected only when `redis` changes.

use crate::policy::rate_limit::gcra::Gcra;
use crate::policy::rate_limit::local::{LocalLimiter, DEFAULT_CAPACITY};
use crate::policy::rate_limit::redis::RedisStore;
use gatehouse_config::{Config, ObjectId, RateLimit, RateLimitScope, Redis};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What is kept: each local limit with the spec it was made for, and the Redis store.
#[derive(Default, Clone)]
struct Kept {
    limiters: HashMap<ObjectId, (RateLimit, Arc<LocalLimiter>)>,
    redis: Option<(Redis, Arc<RedisStore>)>,
}

/// The policy state a new config will use, decided but not yet in force.
pub struct PolicyPlan {
    kept: Kept,
    /// Why the Redis store could not be set up (the reload is refused).
    pub(crate) redis_error: Option<String>,
}

impl PolicyPlan {
    /// The buckets of a local rate limit.
    pub(crate) fn limiter(&self, id: &ObjectId) -> Option<&Arc<LocalLimiter>> {
        self.kept.limiters.get(id).map(|(_, l)| l)
    }

    /// The store of global rate limits.
    pub(crate) fn redis(&self) -> Option<&Arc<RedisStore>> {
        self.kept.redis.as_ref().map(|(_, r)| r)
    }
}

/// The policy state of the config in force.
#[derive(Default)]
pub struct PolicyStore {
    current: Mutex<Kept>,
}

impl PolicyStore {
    /// Decides the state of `config`'s policies; nothing changes until `commit`.
    pub(crate) fn plan(&self, config: &Config) -> PolicyPlan {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = Kept::default();
        for p in &config.policies {
            let Some(rl) = p
                .rate_limit
                .as_ref()
                .filter(|r| r.scope == RateLimitScope::Local)
            else {
                continue;
            };
            let limiter = match current.limiters.get(&p.id) {
                Some((old, l)) if old == rl => l.clone(),
                _ => Arc::new(LocalLimiter::new(
                    Gcra::new(rl.requests, rl.per, rl.burst),
                    DEFAULT_CAPACITY,
                )),
            };
            kept.limiters.insert(p.id.clone(), (rl.clone(), limiter));
        }
        let mut redis_error = None;
        if let Some(want) = &config.gateway.redis {
            kept.redis = match &current.redis {
                Some((old, store)) if old == want => Some((old.clone(), store.clone())),
                _ => {
                    // The connection's driver runs on the control runtime, which lives as long
                    // as the process, whichever thread plans the reload.
                    let _entered = crate::runtime::control().enter();
                    match RedisStore::new(&want.url, want.timeout) {
                        Ok(s) => Some((want.clone(), Arc::new(s))),
                        Err(e) => {
                            redis_error = Some(e);
                            None
                        }
                    }
                }
            };
        }
        PolicyPlan { kept, redis_error }
    }

    /// Puts a plan in force; state of removed or changed policies is released with the last
    /// snapshot that uses it.
    pub(crate) fn commit(&self, plan: &PolicyPlan) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = plan.kept.clone();
    }
}
