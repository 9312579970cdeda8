//! Config flow, snapshot building on a reload: a diff against the live snapshot. Backends whose
//! definition and run-time state are unchanged, and rules whose content hash (route, index,
//! [`fingerprint`]) is unchanged and whose backends were kept, are taken over as they are, with
//! their metric handles; only what changed is compiled again. A rule with policies is kept when
//! every policy it lists is unchanged (its chain is built from those definitions and from state
//! the policy store keeps per unchanged policy), and, for a global rate limit, the Redis settings.
//! A rule that validates requests is kept while the OpenAPI document it validates against (its
//! own or its Route's, schemas included) hashes the same as the one its step was compiled from
//! (`OpenApi::digest`: the file's path and bytes). A rule a Rollout drives is kept while the
//! state layer kept that Rollout's state (an unchanged spec: the same `RolloutState`, whose
//! weights and samples the compiled target reads) and its stable and canary backends were kept.

use super::{Snapshot, Target};
use crate::policy::validate::Validators;
use crate::routing::{fingerprint, Entry, Router};
use crate::state::rollout::RolloutState;
use crate::upstream::BackendRt;
use gatehouse_config::{Action, Backend, Config, ObjectId, Policy, RateLimitScope, Redis, Rule};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// What the live snapshot offers for reuse.
pub(super) struct Reuse<'a> {
    /// Compiled rules by [`entry_key`] of (route, index); see [`Reuse::entry`].
    entries: HashMap<u64, &'a Arc<Entry<Target>>, BuildHasherDefault<Prehashed>>,
    /// Backends by id, with the definition they were built from.
    backends: HashMap<&'a ObjectId, (&'a Backend, &'a Arc<BackendRt>)>,
    /// The live config's policies by id, to tell which of the new config's are unchanged.
    policies: HashMap<&'a ObjectId, &'a Policy>,
    /// The live config's Redis settings (global rate limits run on the store made from them).
    redis: Option<&'a Redis>,
    /// The live route table (its host classes' regex sets).
    router: Option<&'a Router<Target>>,
}

impl<'a> Reuse<'a> {
    /// Indexes `previous`; nothing to reuse on a first build.
    pub(super) fn new(previous: Option<&'a Snapshot>) -> Self {
        let Some(prev) = previous else {
            return Reuse {
                entries: HashMap::default(),
                backends: HashMap::new(),
                policies: HashMap::new(),
                redis: None,
                router: None,
            };
        };
        let mut entries =
            HashMap::with_capacity_and_hasher(prev.router.entry_slots(), Default::default());
        for e in prev.router.entries() {
            // Two rules of one key (a 64-bit collision) cannot both be found: the second is
            // compiled again, which is never wrong.
            entries.entry(entry_key(&e.route, e.index)).or_insert(e);
        }
        // Keyed by the definition's id, so looking a new backend up formats nothing.
        let runtimes: HashMap<&str, &Arc<BackendRt>> =
            (prev.backends.iter()).map(|rt| (&*rt.id, rt)).collect();
        let mut key = String::new();
        let backends = (prev.config.backends.iter())
            .filter_map(|b| {
                key.clear();
                b.id.push_to(&mut key);
                Some((&b.id, (b, *runtimes.get(key.as_str())?)))
            })
            .collect();
        Reuse {
            entries,
            backends,
            policies: prev.config.policies.iter().map(|p| (&p.id, p)).collect(),
            redis: prev.config.gateway.redis.as_ref(),
            router: Some(&prev.router),
        }
    }

    /// The live entry of rule `index` of `route`, if there is one.
    fn entry(&self, route: &str, index: usize) -> Option<&'a Arc<Entry<Target>>> {
        let e = *self.entries.get(&entry_key(route, index))?;
        (*e.route == *route && e.index == index).then_some(e)
    }

    /// The policies of `config` whose compiled steps a kept rule may go on using: the same
    /// definition as in the live config (the policy store then keeps their buckets, keys and
    /// caches), and for a global rate limit the same Redis settings (the same store).
    fn unchanged_policies<'c>(&self, config: &'c Config) -> HashSet<&'c ObjectId> {
        let redis_same = config.gateway.redis.as_ref() == self.redis;
        (config.policies.iter())
            .filter(|p| {
                self.policies
                    .get(&p.id)
                    .is_some_and(|old| same_definition(old, p))
            })
            .filter(|p| {
                redis_same
                    || (p.rate_limit.as_ref()).is_none_or(|r| r.scope != RateLimitScope::Global)
            })
            .map(|p| &p.id)
            .collect()
    }

    /// The live backend runtime for `b`, when its definition and planned state are unchanged.
    pub(super) fn backend(
        &self,
        b: &Backend,
        state: &Arc<crate::state::BackendState>,
    ) -> Option<Arc<BackendRt>> {
        let (def, rt) = self.backends.get(&b.id)?;
        (*def == b && Arc::ptr_eq(&rt.state, state)).then(|| (*rt).clone())
    }

    /// The route table, compiling with `target` only the rules that cannot be kept.
    pub(super) fn router(
        &self,
        config: &Config,
        backends: &HashMap<ObjectId, Arc<BackendRt>>,
        rollouts: &crate::state::rollout::RolloutPlan,
        validators: &Validators,
        mut target: impl FnMut(&Arc<str>, usize, &Rule) -> Target,
    ) -> Router<Target> {
        let unchanged = self.unchanged_policies(config);
        Router::build_reusing(config, self.router, |name, index, rule| {
            let route = name.as_str();
            let fp = fingerprint(rule);
            if let Some(old) = self.entry(route, index) {
                // The fingerprint covers the rule's policy names, not the policies: a rule is
                // compiled again when one of them changed. Nor does it cover the Rollout that
                // drives the rule, nor the document it validates against.
                // (0: an entry built without a fingerprint, which no rule can be said to equal.)
                let kept = old.fingerprint != 0
                    && old.fingerprint == fp
                    && rule.policies.iter().all(|id| unchanged.contains(id))
                    && same_rollout(&old.target, rollouts.for_rule(route, index))
                    // The document a rule validates against is in no fingerprint (a Route-level
                    // one in none of its rules'): its digest is compared with the one the live
                    // step was compiled from.
                    && validation_source(&old.target)
                        == validators.document(route, rule).map(|api| api.digest);
                if kept && same_backends(&old.target, rule, backends) {
                    return old.clone();
                }
            }
            let route = name.shared();
            Arc::new(Entry {
                route: route.clone(),
                index,
                rule: rule.clone(),
                target: target(route, index, rule),
                fingerprint: fp,
            })
        })
    }
}

/// The key of rule `index` of `route` in the index of live entries: one short xxh3 where the
/// map's SipHash over (route, index), once to index and once to look up each rule, was about a
/// tenth of the instructions of a 10,000-route snapshot build. Not keyed: the names are the
/// operator's own, and a lookup compares the entry's route and index, so a collision costs a
/// recompilation, never a wrong entry.
fn entry_key(route: &str, index: usize) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(route.as_bytes(), index as u64)
}

/// The hasher of maps whose keys are already hashes ([`entry_key`]): passes them through.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys go in; anything else still hashes, if poorly.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether a policy says the same as before. Where it is defined is not what it does: an edit
/// that adds a line above a policy must not rebuild every rule that uses it. (A clone of one
/// policy per policy and reload: there are few policies beside many rules.)
fn same_definition(old: &gatehouse_config::Policy, new: &gatehouse_config::Policy) -> bool {
    let moved = gatehouse_config::Policy {
        source: old.source.clone(),
        ..new.clone()
    };
    *old == moved
}

/// The digest of the document a compiled target validates against, if it validates.
fn validation_source(old: &Target) -> Option<u64> {
    (old.policies.as_ref())
        .and_then(|c| c.validation())
        .map(|v| v.source())
}

/// Whether a compiled target was built against the rollout state the new snapshot drives its
/// rule with: none then and none now, or the very state the store kept (an unchanged spec keeps
/// its phase, step, weights and samples; the target reads the weights and feeds the samples).
fn same_rollout(old: &Target, now: Option<&Arc<RolloutState>>) -> bool {
    match (&old.rollout, now) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// Whether a kept target's backends are the ones this snapshot resolves the rule to. The
/// fingerprint already says the rule names the same backends with the same weights (and an
/// unchanged Rollout the same stable and canary); a backend rebuilt for this snapshot makes the
/// target stale.
///
/// A `Target` that comes to hold anything else derived from outside its rule must be checked
/// here too.
fn same_backends(old: &Target, rule: &Rule, backends: &HashMap<ObjectId, Arc<BackendRt>>) -> bool {
    let release = (old.release.as_ref()).is_none_or(|r| r.same_backends(backends));
    if let Some(r) = &old.rollout {
        // `[stable, canary]`, as `rollout_choices` resolved them.
        let now = [&r.spec.stable, &r.spec.canary]
            .into_iter()
            .filter_map(|id| backends.get(id));
        return release && same_choices(&old.choices, now);
    }
    let Action::Forward(list) = &rule.action else {
        return old.choices.is_empty();
    };
    let now = list
        .iter()
        .filter(|wb| wb.weight > 0)
        .filter_map(|wb| backends.get(&wb.backend));
    release && same_choices(&old.choices, now)
}

/// Whether `choices` are, in order, exactly the backends `now` yields.
fn same_choices<'b>(
    choices: &[super::Choice],
    mut now: impl Iterator<Item = &'b Arc<BackendRt>>,
) -> bool {
    choices
        .iter()
        .all(|c| now.next().is_some_and(|b| Arc::ptr_eq(b, &c.backend)))
        && now.next().is_none()
}
