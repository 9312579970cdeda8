//! Config flow, step 4 (progressive delivery): `Rollout` documents checked against the Routes and
//! Backends they name, and turned into the model. The rule a Rollout drives may name only its
//! `stable` backend: the Rollout brings `canary` in and owns both weights.

use super::policy::parse_percent;
use super::V;
use crate::error::hint;
use crate::loader::{Ctx, Object, Spec};
use crate::model::{Analysis, ObjectId, Ramp, Rollout, Schedule, Step};
use crate::raw;
use std::collections::HashMap;
use std::time::Duration;

/// An analysis more often than this judges too few requests to mean anything.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `ns/name`, or `name` in `ns`.
fn resolve(ns: &str, s: &str) -> ObjectId {
    match s.split_once('/') {
        Some((n, name)) => ObjectId {
            namespace: n.into(),
            name: name.into(),
        },
        None => ObjectId {
            namespace: ns.into(),
            name: s.into(),
        },
    }
}

/// Every Rollout of `objects`, validated; `backends` is sorted.
pub(super) fn rollouts(v: &mut V, objects: &[Object], backends: &[&ObjectId]) -> Vec<Rollout> {
    // Without a Rollout, indexing every Route (10,000 in a large config) is wasted work.
    if !objects.iter().any(|o| matches!(o.spec, Spec::Rollout(_))) {
        return Vec::new();
    }
    let routes: HashMap<&ObjectId, &raw::RouteSpec> = (objects.iter())
        .filter_map(|o| match &o.spec {
            Spec::Route(r) => Some((&o.id, r)),
            _ => None,
        })
        .collect();
    let mut taken: HashMap<(ObjectId, usize), &ObjectId> = HashMap::new();
    let mut out = Vec::new();
    for o in objects {
        let Spec::Rollout(spec) = &o.spec else {
            continue;
        };
        let Some(r) = rollout(v, o, spec, &routes, backends) else {
            continue;
        };
        if let Some(first) = taken.get(&(r.route.clone(), r.rule)) {
            v.errors.push(o.ctx.error(
                "spec.rule",
                format!(
                    "rule {} of route `{}` is already driven by Rollout `{first}`",
                    r.rule, r.route
                ),
            ));
            continue;
        }
        taken.insert((r.route.clone(), r.rule), &o.id);
        out.push(r);
    }
    out
}

fn rollout(
    v: &mut V,
    o: &Object,
    spec: &raw::RolloutSpec,
    routes: &HashMap<&ObjectId, &raw::RouteSpec>,
    backends: &[&ObjectId],
) -> Option<Rollout> {
    let (ctx, ns) = (&o.ctx, o.id.namespace.as_str());
    let mut ok = true;
    let mut backend = |v: &mut V, field: &str, name: &str| {
        let id = resolve(ns, name);
        if backends.binary_search(&&id).is_err() {
            let names = backends.iter().map(|b| b.name.as_str());
            v.errors.push(ctx.error(
                &format!("spec.{field}"),
                format!("unknown backend `{id}`{}", hint(name, names)),
            ));
            ok = false;
        }
        id
    };
    let stable = backend(v, "stable", &spec.stable);
    let canary = backend(v, "canary", &spec.canary);
    if stable == canary {
        v.errors.push(ctx.error(
            "spec.canary",
            "the canary must be another backend than `stable`",
        ));
    }
    let route = resolve(ns, &spec.route);
    let index = spec.rule.unwrap_or(0);
    match routes.get(&route) {
        None => {
            let names = routes.keys().map(|r| r.name.as_str());
            v.errors.push(ctx.error(
                "spec.route",
                format!("unknown route `{route}`{}", hint(&spec.route, names)),
            ));
        }
        Some(r) => match r.rules.get(index) {
            None => v.errors.push(ctx.error(
                "spec.rule",
                format!(
                    "route `{route}` has {} rule(s): `rule` is an index from 0 to {}",
                    r.rules.len(),
                    r.rules.len().saturating_sub(1)
                ),
            )),
            Some(rule) => check_rule(v, ctx, (rule, index), &route, &stable, &canary),
        },
    }
    let start_time = match humantime::parse_rfc3339_weak(spec.start_time.trim()) {
        Ok(t) if spec.start_time.trim().ends_with('Z') => Some(t),
        _ => {
            v.errors.push(ctx.error(
                "spec.startTime",
                format!(
                    "invalid startTime `{}`: expected an RFC 3339 time in UTC such as `2026-12-01T09:00:00Z`",
                    spec.start_time
                ),
            ));
            None
        }
    };
    let schedule = schedule(v, ctx, spec);
    let analysis = analysis(v, ctx, spec.analysis.as_ref());
    Some(Rollout {
        id: o.id.clone(),
        route,
        rule: index,
        stable,
        canary,
        start_time: start_time?,
        schedule: schedule?,
        analysis,
    })
    .filter(|_| ok)
}

/// The driven rule must forward to `stable` alone.
fn check_rule(
    v: &mut V,
    ctx: &Ctx,
    (rule, index): (&raw::RuleSpec, usize),
    route: &ObjectId,
    stable: &ObjectId,
    canary: &ObjectId,
) {
    let named: Vec<ObjectId> = (rule.backends.iter())
        .map(|b| resolve(&route.namespace, &b.backend))
        .collect();
    if named.is_empty() {
        v.errors.push(ctx.error(
            "spec.rule",
            format!("the rule of route `{route}` does not forward to backends: a Rollout needs a rule with `backends: [{{backend: {}}}]`", stable.name),
        ));
    } else if !named.contains(stable) {
        v.errors.push(ctx.error(
            "spec.stable",
            format!(
                "`{stable}` is not among the backends of rule {} of route `{route}` ({})",
                index,
                named.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", ")
            ),
        ));
    } else if named.len() > 1 || named.contains(canary) {
        v.errors.push(ctx.error(
            "spec.rule",
            format!(
                "the rule of route `{route}` may name only `{stable}`: the Rollout brings `{canary}` in and owns both weights"
            ),
        ));
    }
}

fn schedule(v: &mut V, ctx: &Ctx, spec: &raw::RolloutSpec) -> Option<Schedule> {
    match (&spec.steps, &spec.ramp) {
        (Some(steps), Some(ramp)) => {
            v.errors
                .push(ctx.error("spec", "a Rollout takes `steps` or `ramp`, not both"));
            // Both still checked: every error at once.
            steps_schedule(v, ctx, steps);
            ramp_schedule(v, ctx, ramp);
            None
        }
        (None, None) => {
            v.errors.push(ctx.error(
                "spec",
                "a Rollout needs one of `steps` (weights with pauses) or `ramp`",
            ));
            None
        }
        (Some(steps), None) => steps_schedule(v, ctx, steps),
        (None, Some(ramp)) => ramp_schedule(v, ctx, ramp),
    }
}

fn percent(v: &mut V, ctx: &Ctx, path: &str, s: &str) -> Option<f64> {
    parse_percent(s)
        .map_err(|e| v.errors.push(ctx.error(path, e)))
        .ok()
}

fn steps_schedule(v: &mut V, ctx: &Ctx, steps: &[raw::RolloutStepSpec]) -> Option<Schedule> {
    if steps.is_empty() {
        v.errors
            .push(ctx.error("spec.steps", "`steps` needs at least one step"));
        return None;
    }
    let mut out = Vec::new();
    let mut last = 0.0;
    for (i, s) in steps.iter().enumerate() {
        let at = format!("spec.steps[{i}]");
        let weight = percent(v, ctx, &format!("{at}.weight"), &s.weight);
        if let Some(w) = weight {
            if w < last {
                v.errors.push(ctx.error(
                    &format!("{at}.weight"),
                    format!("weights must not decrease: {w} comes after {last}"),
                ));
            }
            last = last.max(w);
        }
        let is_last = i + 1 == steps.len();
        let pause = match &s.pause {
            Some(p) => v.duration(ctx, &format!("{at}.pause"), Some(p), Duration::ZERO),
            None if is_last => Duration::ZERO,
            None => {
                v.errors.push(ctx.error(
                    &at,
                    "every step but the last needs a `pause` (how long its weight is held)",
                ));
                Duration::ZERO
            }
        };
        if pause.is_zero() && !is_last && s.pause.is_some() {
            v.errors
                .push(ctx.error(&format!("{at}.pause"), "a pause must be above 0"));
        }
        out.push(Step {
            weight: weight.unwrap_or(0.0),
            pause,
        });
    }
    Some(Schedule::Steps(out))
}

fn ramp_schedule(v: &mut V, ctx: &Ctx, r: &raw::RampSpec) -> Option<Schedule> {
    let from = percent(v, ctx, "spec.ramp.from", &r.from);
    let to = percent(v, ctx, "spec.ramp.to", &r.to);
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            v.errors.push(ctx.error(
                "spec.ramp.to",
                format!("`to` ({t}%) must be above `from` ({f}%)"),
            ));
        }
    }
    let over = v.duration(ctx, "spec.ramp.over", Some(&r.over), Duration::ZERO);
    let every = v.duration(ctx, "spec.ramp.every", Some(&r.every), Duration::ZERO);
    if over.is_zero() {
        v.errors
            .push(ctx.error("spec.ramp.over", "`over` must be above 0"));
    } else if every.is_zero() || every > over {
        v.errors.push(ctx.error(
            "spec.ramp.every",
            "`every` must be above 0 and at most `over`",
        ));
    }
    Some(Schedule::Ramp(Ramp {
        from: from?,
        to: to?,
        over,
        every,
    }))
}

fn analysis(v: &mut V, ctx: &Ctx, spec: Option<&raw::AnalysisSpec>) -> Analysis {
    let a = spec.cloned().unwrap_or_default();
    let interval = v.duration(
        ctx,
        "spec.analysis.interval",
        a.interval.as_ref(),
        Duration::from_secs(60),
    );
    if interval < MIN_INTERVAL {
        v.errors.push(ctx.error(
            "spec.analysis.interval",
            "the analysis interval must be at least 100ms",
        ));
    }
    let max_error_rate = match &a.max_error_rate {
        None => 1.0,
        Some(s) => percent(v, ctx, "spec.analysis.maxErrorRate", s).unwrap_or(1.0),
    };
    let max_p99_ratio = a.max_p99_ratio.unwrap_or(1.5);
    if !(max_p99_ratio.is_finite() && max_p99_ratio >= 1.0) {
        v.errors.push(ctx.error(
            "spec.analysis.maxP99Ratio",
            "maxP99Ratio must be at least 1 (canary p99 over stable p99)",
        ));
    }
    let min_requests = a.min_requests.unwrap_or(100);
    if min_requests == 0 {
        v.errors.push(ctx.error(
            "spec.analysis.minRequests",
            "minRequests must be at least 1",
        ));
    }
    Analysis {
        interval,
        max_error_rate,
        max_p99_ratio,
        min_requests: min_requests.max(1),
    }
}
