//! Config flow, after validation: the policies' state that outlives reloads — the buckets of each
//! local rate limit, keyed by policy id, and the Redis connection of global ones. A reload that
//! keeps a policy's `rateLimit` unchanged keeps its buckets; one that changes it starts afresh
//! (a new rate makes old arrival times meaningless). Redis is reconnected only when `redis` changes.
//! Auth policies keep their key sources (a fetched JWKS and its refresh schedule, watched JWKS,
//! secret, API key and htpasswd files, remembered bcrypt checks) while the part of the spec they
//! were made for is unchanged.

use crate::policy::auth::api_key::{parse_keys_file, KeyTable};
use crate::policy::auth::basic::{parse_htpasswd, Cache, Users};
use crate::policy::auth::jwks::{self, KeySet, RemoteJwks};
use crate::policy::auth::jwt::Keys;
use crate::policy::auth::watched::Watched;
use crate::policy::rate_limit::gcra::Gcra;
use crate::policy::rate_limit::local::{LocalLimiter, DEFAULT_CAPACITY};
use crate::policy::rate_limit::redis::RedisStore;
use gatehouse_config::{Config, JwtKeys, ObjectId, Policy, RateLimit, RateLimitScope, Redis};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What is kept: each local limit with the spec it was made for, and the Redis store.
#[derive(Default, Clone)]
struct Kept {
    limiters: HashMap<ObjectId, (RateLimit, Arc<LocalLimiter>)>,
    redis: Option<(Redis, Arc<RedisStore>)>,
    jwt_keys: HashMap<ObjectId, (JwtKeys, Keys)>,
    api_keys: HashMap<ObjectId, (PathBuf, Arc<Watched<KeyTable>>)>,
    htpasswd: HashMap<ObjectId, (PathBuf, Htpasswd)>,
    /// `externalAuth` decision caches (`state::auth_cache`).
    auth_caches: super::auth_cache::Caches,
}

/// A watched htpasswd file and the bcrypt checks remembered for it.
type Htpasswd = (Arc<Watched<Users>>, Arc<Cache>);

/// What one auth policy's sections use at run time.
#[derive(Clone, Default)]
pub(crate) struct AuthState {
    /// `jwt`'s keys.
    pub(crate) jwt_keys: Option<Keys>,
    /// `apiKey.keysFile`.
    pub(crate) api_keys: Option<Arc<Watched<KeyTable>>>,
    /// `basicAuth.htpasswdFile`.
    pub(crate) htpasswd: Option<Htpasswd>,
}

/// The policy state a new config will use, decided but not yet in force.
pub struct PolicyPlan {
    kept: Kept,
    /// Why the Redis store could not be set up (the reload is refused).
    pub(crate) redis_error: Option<String>,
    /// Each auth policy's state, or why it could not be set up (a file that cannot be read or
    /// parsed: the reload is refused when a rule uses the policy).
    auth: HashMap<ObjectId, Result<AuthState, String>>,
}

impl PolicyPlan {
    /// The buckets of a local rate limit.
    pub(crate) fn limiter(&self, id: &ObjectId) -> Option<&Arc<LocalLimiter>> {
        self.kept.limiters.get(id).map(|(_, l)| l)
    }

    /// The state of auth policy `id`.
    pub(crate) fn auth(&self, id: &ObjectId) -> Result<&AuthState, String> {
        match self.auth.get(id) {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(format!("policy {id}: {e}")),
            None => Err(format!("no auth state planned for policy {id}")),
        }
    }

    /// The decision cache of policy `id`'s `externalAuth`, when it has one.
    pub(crate) fn auth_cache(
        &self,
        id: &ObjectId,
    ) -> Option<&Arc<super::auth_cache::DecisionCache>> {
        self.kept.auth_caches.get(id).map(|(_, c)| c)
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
                    // Not connected here: each worker's first decision starts its own lane.
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
        kept.auth_caches = super::auth_cache::plan(config, &current.auth_caches);
        let mut auth = HashMap::new();
        for p in &config.policies {
            if p.jwt.is_some() || p.api_key.is_some() || p.basic_auth.is_some() {
                auth.insert(p.id.clone(), plan_auth(p, &current, &mut kept));
            }
        }
        PolicyPlan {
            kept,
            redis_error,
            auth,
        }
    }

    /// Puts a plan in force; state of removed or changed policies is released with the last
    /// snapshot that uses it.
    pub(crate) fn commit(&self, plan: &PolicyPlan) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = plan.kept.clone();
    }
}

/// The state of one auth policy: what `current` holds for the same spec, or made afresh.
fn plan_auth(p: &Policy, current: &Kept, kept: &mut Kept) -> Result<AuthState, String> {
    let mut state = AuthState::default();
    if let Some(j) = &p.jwt {
        let keys = match current.jwt_keys.get(&p.id) {
            Some((spec, keys)) if *spec == j.keys => keys.clone(),
            _ => jwt_keys(&j.keys)?,
        };
        kept.jwt_keys
            .insert(p.id.clone(), (j.keys.clone(), keys.clone()));
        state.jwt_keys = Some(keys);
    }
    if let Some(path) = p.api_key.as_ref().and_then(|k| k.keys_file.as_ref()) {
        let file = match current.api_keys.get(&p.id) {
            Some((old, w)) if old == path => w.clone(),
            _ => Watched::load(path, parse_keys_file)?,
        };
        kept.api_keys
            .insert(p.id.clone(), (path.clone(), file.clone()));
        state.api_keys = Some(file);
    }
    if let Some(b) = &p.basic_auth {
        let path = &b.htpasswd_file;
        let users = match current.htpasswd.get(&p.id) {
            Some((old, h)) if old == path => h.clone(),
            _ => (Watched::load(path, parse_htpasswd)?, Arc::default()),
        };
        kept.htpasswd
            .insert(p.id.clone(), (path.clone(), users.clone()));
        state.htpasswd = Some(users);
    }
    Ok(state)
}

/// Sets up the key source of a `jwt`.
fn jwt_keys(spec: &JwtKeys) -> Result<Keys, String> {
    Ok(match spec {
        JwtKeys::JwksUrl {
            url,
            refresh,
            min_refresh,
            ca_file,
        } => Keys::Remote(RemoteJwks::start(
            url,
            *refresh,
            *min_refresh,
            ca_file.as_deref(),
        )?),
        JwtKeys::JwksFile(path) => Keys::File(Watched::load(path, jwks::parse_file)?),
        JwtKeys::SecretFile(path) => Keys::File(Watched::load(path, jwks::parse_secret)?),
        JwtKeys::Secret(s) => Keys::Fixed(Arc::new(KeySet::secret(s.as_bytes()))),
    })
}
