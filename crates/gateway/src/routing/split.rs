//! Request flow, backend choice (after the rule's policy chain, before the circuit breaker):
//! which backend of a forwarding rule serves the request. An `overrides` entry that matches names
//! the backend outright (unless it has no healthy endpoint: then the split decides, and the access
//! log says `"override":"fallback"`); otherwise the weighted split picks, at random or, with
//! `stickySplit`, at the user's fixed point so one user stays on one version.
//!
//! Stickiness by position, not by name: a user's key (a random seed kept in a cookie Gatehouse
//! sets, or a stable hash of a header) maps to a point in `[0, total weight)`; the backend whose
//! cumulative range holds the point serves the user. A change of weights moves a user only when
//! the range under their point changes owner: growing the last backend (the canary, written
//! last) only moves users from the others to it, never back. Every replica computes the same point,
//! so no state is shared.
//!
//! Dynamic weights (for `Rollout`): a rule's weights may come from a [`DynamicWeights`] instead of
//! its config. Whoever owns the rollout's state creates one `Arc<DynamicWeights>` (index-aligned
//! with the rule's `Target::choices`, which must then list every backend the rollout can give
//! traffic, weight 0 included), keeps it across reloads, and puts it in [`Release::weights`] when
//! the rule is compiled; each request reads it with one `ArcSwap` load, and
//! [`DynamicWeights::set`] changes the split for the next request.

use crate::policy::identity::Identity;
use crate::snapshot::Target;
use crate::state::endpoint::EndpointShared;
use crate::telemetry::metrics::{Metrics, RequestMetrics};
use crate::upstream::balancer::{cookie, stable_hash};
use crate::upstream::BackendRt;
use arc_swap::ArcSwap;
use gatehouse_config::{KeyValueMatch, ObjectId, Rule, StickySplit, ValueMatch};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;

/// One backend choice of a forwarding rule.
pub struct Choice {
    /// The backend.
    pub backend: Arc<BackendRt>,
    /// Metrics of this route/backend pair.
    pub metrics: Arc<RequestMetrics>,
    /// Cumulative weight up to and including this choice.
    pub until: u32,
}

/// Picks a backend of `choices` (cumulative weights summing to `total`) at random by weight.
pub(crate) fn pick(choices: &[Choice], total: u32) -> Option<&Choice> {
    match choices.len() {
        0 => None,
        1 => choices.first(),
        _ => {
            let x = fastrand::u32(..total.max(1));
            choices.iter().find(|c| x < c.until)
        }
    }
}

/// Chooses the backend for a request to `target`: at random by weight when the rule has no
/// release settings (the common case: one `Option` check), else by [`Release::choose`].
#[inline]
pub(crate) fn choose<'a>(
    target: &'a Target,
    headers: &HeaderMap,
    query: Option<&str>,
    identity: Option<&Identity>,
) -> Option<Chosen<'a>> {
    match &target.release {
        None => target.pick().map(|choice| Chosen {
            choice,
            set_cookie: None,
            over: None,
        }),
        Some(r) => r.choose(target, headers, query, identity),
    }
}

/// The choice whose cumulative range holds `point`.
fn at(choices: &[Choice], until: &[u32], point: u32) -> Option<usize> {
    until.iter().take(choices.len()).position(|u| point < *u)
}

/// The point of a user with key `seed` in `[0, total)`: the seed scaled, so the same seed keeps
/// its relative position whatever the total.
fn point(seed: u32, total: u32) -> u32 {
    ((u64::from(seed) * u64::from(total)) >> 32) as u32
}

/// Weights of a rule set at run time (by a `Rollout`), read by every request with one load.
pub struct DynamicWeights {
    until: ArcSwap<Box<[u32]>>,
}

impl DynamicWeights {
    /// Starts at `weights`, one per choice of the rule, in order.
    pub fn new(weights: &[u32]) -> Self {
        DynamicWeights {
            until: ArcSwap::from_pointee(cumulative(weights)),
        }
    }

    /// Sets the weights (one per choice, in order) for the requests that start from now on.
    pub fn set(&self, weights: &[u32]) {
        self.until.store(Arc::new(cumulative(weights)));
    }

    /// The weights now, one per choice.
    pub fn get(&self) -> Vec<u32> {
        let until = self.until.load();
        let mut prev = 0;
        (until.iter())
            .map(|u| {
                let w = u - prev;
                prev = *u;
                w
            })
            .collect()
    }
}

fn cumulative(weights: &[u32]) -> Box<[u32]> {
    let mut total = 0u32;
    (weights.iter())
        .map(|w| {
            total = total.saturating_add(*w);
            total
        })
        .collect()
}

/// How one user is told apart for a sticky split.
enum Sticky {
    /// A cookie Gatehouse sets to a random seed when the request has none.
    Cookie(Box<str>),
    /// A header whose value is hashed.
    Header(HeaderName),
}

/// One compiled override.
struct OverrideRt {
    cond: gatehouse_config::Override,
    choice: Choice,
}

/// What an override did for a request, for the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OverrideUse {
    /// The override's backend serves the request.
    Applied,
    /// An override matched but its backend had no healthy endpoint: the split decided.
    Fallback,
}

impl OverrideUse {
    /// The access log's `override` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OverrideUse::Applied => "applied",
            OverrideUse::Fallback => "fallback",
        }
    }
}

/// The backend chosen for one request and what the response must carry because of it.
pub(crate) struct Chosen<'a> {
    /// The backend.
    pub(crate) choice: &'a Choice,
    /// The sticky-split cookie to set (a user seen for the first time).
    pub(crate) set_cookie: Option<HeaderValue>,
    /// Whether an override decided.
    pub(crate) over: Option<OverrideUse>,
}

/// A rule's release settings, compiled; absent (`Target::release` is `None`) on a rule that uses
/// none of them, which then costs one `Option` check per request.
pub(crate) struct Release {
    sticky: Option<Sticky>,
    overrides: Box<[OverrideRt]>,
    /// The rule's mirror.
    pub(crate) mirror: Option<crate::proxy::mirror::Mirror>,
    /// Weights set at run time, replacing the rule's own (see the module notes).
    pub(crate) weights: Option<Arc<DynamicWeights>>,
}

/// Seconds a sticky-split cookie lasts: a release takes days, and a user must not change
/// version when their browser restarts.
const COOKIE_MAX_AGE: u32 = 30 * 24 * 3600;

impl Release {
    /// Compiles the release settings of `rule`; `None` when it has none.
    pub(crate) fn compile(
        route: &Arc<str>,
        rule: &Rule,
        backends: &HashMap<ObjectId, Arc<BackendRt>>,
        metrics: &Arc<Metrics>,
    ) -> Option<Box<Release>> {
        let r = &rule.release;
        if r.is_empty() {
            return None;
        }
        let sticky = r.sticky_split.as_ref().map(|s| match s {
            StickySplit::Cookie(name) => Sticky::Cookie(name.as_str().into()),
            // Validation checked the name is a token.
            StickySplit::Header(name) => HeaderName::from_bytes(name.as_bytes())
                .map(Sticky::Header)
                .unwrap_or(Sticky::Cookie(name.as_str().into())),
        });
        let overrides = (r.overrides.iter())
            .filter_map(|o| {
                let backend = backends.get(&o.backend)?.clone();
                Some(OverrideRt {
                    cond: o.clone(),
                    choice: Choice {
                        metrics: Arc::new(metrics.request_metrics(route, &backend.id)),
                        backend,
                        until: 0,
                    },
                })
            })
            .collect();
        let mirror = (r.mirror.as_ref()).and_then(|m| {
            let backend = backends.get(&m.backend)?.clone();
            Some(crate::proxy::mirror::Mirror::new(
                route, m, backend, metrics,
            ))
        });
        Some(Box::new(Release {
            sticky,
            overrides,
            mirror,
            weights: None,
        }))
    }

    /// Gives a compiled rule weights set at run time (a `Rollout`): its release settings as
    /// compiled (`Target::release`), or none, now reading `weights` (index-aligned with the
    /// rule's `Target::choices`). A reload that keeps the compiled rule keeps this `Arc` too.
    #[allow(dead_code)] // the Rollout (wt-h9r) calls it
    pub(crate) fn with_weights(
        release: Option<Box<Release>>,
        weights: Arc<DynamicWeights>,
    ) -> Box<Release> {
        let mut r = release.unwrap_or_else(|| {
            Box::new(Release {
                sticky: None,
                overrides: Box::new([]),
                mirror: None,
                weights: None,
            })
        });
        r.weights = Some(weights);
        r
    }

    /// Whether every backend this compiled release refers to is the one `backends` has now (a
    /// reload keeps a compiled rule only then).
    pub(crate) fn same_backends(&self, backends: &HashMap<ObjectId, Arc<BackendRt>>) -> bool {
        let same = |id: &ObjectId, rt: &Arc<BackendRt>| {
            backends.get(id).is_some_and(|b| Arc::ptr_eq(b, rt))
        };
        self.overrides
            .iter()
            .all(|o| same(&o.cond.backend, &o.choice.backend))
            && self
                .mirror
                .as_ref()
                .is_none_or(|m| same(m.backend_id(), m.backend()))
    }

    /// Chooses the backend for a request with `headers`, `query` and the caller's `identity`
    /// (when an auth policy of the rule established one) among `target`'s choices.
    pub(crate) fn choose<'a>(
        &'a self,
        target: &'a Target,
        headers: &HeaderMap,
        query: Option<&str>,
        identity: Option<&Identity>,
    ) -> Option<Chosen<'a>> {
        let mut over = None;
        if let Some(o) =
            (self.overrides.iter()).find(|o| matches(&o.cond, headers, query, identity))
        {
            if has_healthy(&o.choice.backend) {
                return Some(Chosen {
                    choice: &o.choice,
                    set_cookie: None,
                    over: Some(OverrideUse::Applied),
                });
            }
            over = Some(OverrideUse::Fallback);
        }
        let dynamic = self.weights.as_ref().map(|w| w.until.load());
        let total = match &dynamic {
            // Choices past the rule's own list have no backend: their weight is never drawn.
            Some(d) => d[..d.len().min(target.choices.len())]
                .last()
                .copied()
                .unwrap_or(0),
            None => target.total_weight,
        };
        if total == 0 {
            return None;
        }
        let (seed, set_cookie) = match &self.sticky {
            None => (None, None),
            Some(Sticky::Header(name)) => (
                headers.get(name).map(|v| stable_hash(v.as_bytes()) as u32),
                None,
            ),
            Some(Sticky::Cookie(name)) => match cookie(headers, name).and_then(parse_seed) {
                Some(seed) => (Some(seed), None),
                None => {
                    let seed = fastrand::u32(..);
                    (Some(seed), Some(seed_cookie(name, seed)))
                }
            },
        };
        let p = match seed {
            Some(seed) => point(seed, total),
            None => fastrand::u32(..total),
        };
        let i = match &dynamic {
            Some(d) => at(&target.choices, d, p)?,
            None => target.choices.iter().position(|c| p < c.until)?,
        };
        Some(Chosen {
            choice: &target.choices[i],
            set_cookie,
            over,
        })
    }
}

/// Whether a request meets every condition of an override.
fn matches(
    o: &gatehouse_config::Override,
    headers: &HeaderMap,
    query: Option<&str>,
    identity: Option<&Identity>,
) -> bool {
    let headers_ok = o.headers.iter().all(|m| {
        let values = headers.get_all(m.name.as_str()).iter();
        value_ok(m, values.filter_map(|v| v.to_str().ok()))
    });
    let cookies_ok = (o.cookies.iter()).all(|m| {
        let v = cookie(headers, &m.name).and_then(|v| std::str::from_utf8(v).ok());
        value_ok(m, v.into_iter())
    });
    let claims_ok = (o.claims.iter()).all(|m| {
        let v = identity.and_then(|i| i.claim_text(&m.name));
        value_ok(m, v.as_deref().into_iter())
    });
    headers_ok
        && cookies_ok
        && claims_ok
        && o.query.iter().all(|m| {
            let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
            let values: Vec<_> = pairs
                .filter(|(k, _)| k == m.name.as_str())
                .map(|(_, v)| v)
                .collect();
            value_ok(m, values.iter().map(|v| &**v))
        })
}

/// Whether one of `values` satisfies `m`.
fn value_ok<'v>(m: &KeyValueMatch, mut values: impl Iterator<Item = &'v str>) -> bool {
    match &m.value {
        ValueMatch::Present => values.next().is_some(),
        ValueMatch::Exact(want) => values.any(|v| v == want),
        ValueMatch::Regex(r) => values.any(|v| r.0.is_match(v)),
    }
}

/// Whether `backend` has an endpoint that is healthy and not ejected. Panic mode is ignored on
/// purpose: an override's backend is usually one instance (a developer's laptop), and when it is
/// down the request belongs to the normal split, not to a dead endpoint.
fn has_healthy(backend: &BackendRt) -> bool {
    let set = backend.state.endpoints.load();
    set.endpoints
        .iter()
        .any(|e| EndpointShared::available(&e.shared))
}

/// A sticky-split cookie's seed: 8 lowercase hex digits.
fn parse_seed(value: &[u8]) -> Option<u32> {
    if value.len() != 8 {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()
}

/// The `Set-Cookie` value that gives a new user the seed `seed`. Opaque (a backend's name would
/// tell users which version they run and pin them to it whatever the weights).
fn seed_cookie(name: &str, seed: u32) -> HeaderValue {
    let value =
        format!("{name}={seed:08x}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax");
    // The name is a validated token and the rest is ASCII.
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_keeps_its_relative_place_whatever_the_total() {
        assert_eq!(point(0, 100), 0);
        assert_eq!(point(u32::MAX, 100), 99);
        assert_eq!(point(1 << 31, 100), 50);
        // Growing the last range only takes points from the others.
        for seed in (0..u32::MAX).step_by(7_654_321) {
            let before = point(seed, 100) >= 95;
            let after = point(seed, 100) >= 75;
            assert!(!before || after, "seed {seed} left the canary as it grew");
        }
    }

    #[test]
    fn dynamic_weights_round_trip() {
        let w = DynamicWeights::new(&[95, 5]);
        assert_eq!(w.get(), vec![95, 5]);
        w.set(&[0, 100]);
        assert_eq!(w.get(), vec![0, 100]);
        assert_eq!(&w.until.load()[..], &[0, 100]);
    }

    #[test]
    fn run_time_weights_pick_by_their_own_ranges() {
        let w = DynamicWeights::new(&[95, 5]);
        let until = w.until.load();
        // `at` over three choices' worth of ranges; a point past the total finds none.
        let choices: [Choice; 0] = [];
        assert_eq!(at(&choices, &until, 0), None, "no choices, no pick");
        let idx = |p| until.iter().position(|u| p < *u);
        assert_eq!(idx(94), Some(0));
        assert_eq!(idx(95), Some(1));
        w.set(&[0, 100]);
        let until = w.until.load();
        assert_eq!(
            until.iter().position(|u| 0 < *u),
            Some(1),
            "weight 0 takes nothing"
        );
    }

    #[test]
    fn seeds_parse_from_cookies_they_were_set_in() {
        let c = seed_cookie("gh-version", 0xdead_beef);
        assert!(c
            .to_str()
            .unwrap()
            .starts_with("gh-version=deadbeef; Path=/;"));
        assert_eq!(parse_seed(b"deadbeef"), Some(0xdead_beef));
        assert_eq!(parse_seed(b"deadbee"), None);
        assert_eq!(parse_seed(b"zzzzzzzz"), None);
    }
}
