//! Config flow, run time: a rollout's controller, on the control runtime. It wakes when the
//! schedule changes the weight, when an analysis is due, and when an operator acts; it applies
//! the schedule and judges the canary against the stable backend from the gateway's own samples.

use super::{Figures, Inner, LastAnalysis, Phase, RolloutState, P99_FLOOR};
use crate::routing::rollout::{percent_of, step_count};
use crate::telemetry::rollout::Window;
use gatehouse_config::format_time;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::SystemTime;

/// The controller loop; ends when the state is dropped or retired by a reload.
pub(crate) async fn run(weak: Weak<RolloutState>) {
    loop {
        let Some(state) = weak.upgrade() else { return };
        if state.retired.load(Ordering::Relaxed) {
            return;
        }
        let until = tick(&state);
        let wake = state.wake.clone();
        drop(state);
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = wake.notified() => {}
        }
    }
}

/// One round: the analysis when it is due, then the schedule. Returns when to wake next.
fn tick(state: &RolloutState) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let mut inner = state.lock();
    if now >= inner.next_analysis {
        analyse(state, &mut inner);
        inner.next_analysis = now + state.spec.analysis.interval;
    }
    state.follow_schedule(&mut inner);
    let mut until = inner.next_analysis;
    if let Some(change) = inner.next_change {
        let wall = state.clock.now();
        let wait = change.duration_since(wall).unwrap_or_default();
        until = until.min(now + wait);
    }
    until
}

fn figures(w: &Window) -> Figures {
    Figures {
        requests: w.requests,
        errors: w.errors,
        error_rate: w.error_rate(),
        p99: w.p99(),
    }
}

/// Judges the canary on what both sides served since the last judgement.
fn analyse(state: &RolloutState, inner: &mut Inner) {
    let a = &state.spec.analysis;
    let judging = matches!(inner.phase, Phase::Progressing | Phase::Paused) && state.weight() > 0;
    if !judging {
        // Nothing to judge: traffic seen now must not count in a later window.
        state.stable.take();
        state.canary.take();
        return;
    }
    let at = state.clock.now();
    if state.canary.requests() < a.min_requests {
        // The window stays open until the canary has served enough to be judged; the last
        // judgement stays on show (`GET /rollouts` has the open window's counts).
        state.metrics.analysed(&state.name, "insufficient", None);
        return;
    }
    let (stable, canary) = (figures(&state.stable.take()), figures(&state.canary.take()));
    let floor = P99_FLOOR.as_secs_f64();
    let p99_ratio = match (stable.p99, canary.p99) {
        (Some(s), Some(c)) if stable.requests >= a.min_requests => {
            Some(c.max(floor) / s.max(floor))
        }
        _ => None,
    };
    let breach = if canary.error_rate > a.max_error_rate {
        Some(format!(
            "canary error rate {:.2}% ({} of {} requests) above maxErrorRate {}%",
            canary.error_rate, canary.errors, canary.requests, a.max_error_rate
        ))
    } else {
        p99_ratio.filter(|r| *r > a.max_p99_ratio).map(|r| {
            format!(
                "canary p99 {:.1}ms is {r:.2} times stable's {:.1}ms, above maxP99Ratio {}",
                canary.p99.unwrap_or_default() * 1e3,
                stable.p99.unwrap_or_default() * 1e3,
                a.max_p99_ratio
            )
        })
    };
    let result = if breach.is_some() { "fail" } else { "pass" };
    inner.last = Some(LastAnalysis {
        at,
        result,
        stable,
        canary,
        p99_ratio,
    });
    let side = |f: &Figures| (f.error_rate, f.p99);
    state
        .metrics
        .analysed(&state.name, result, Some([side(&stable), side(&canary)]));
    if let Some(why) = breach {
        state.transition(inner, Phase::RolledBack, &why);
    }
}

fn time(t: Option<SystemTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(format_time(t)))
}

fn side(f: &Figures) -> serde_json::Value {
    json!({
        "requests": f.requests,
        "errors": f.errors,
        "errorRatePercent": (f.error_rate * 100.0).round() / 100.0,
        "p99Ms": f.p99.map(|p| (p * 1e6).round() / 1e3),
    })
}

/// The admin API's view of one rollout.
pub(super) fn describe(state: &RolloutState) -> serde_json::Value {
    let inner = state.lock();
    let r = &state.spec;
    let last = inner.last.as_ref().map(|l| {
        json!({
            "at": format_time(l.at),
            "result": l.result,
            "stable": side(&l.stable),
            "canary": side(&l.canary),
            "p99Ratio": l.p99_ratio.map(|x| (x * 100.0).round() / 100.0),
        })
    });
    json!({
        "name": r.id.name,
        "namespace": r.id.namespace,
        "route": r.route.to_string(),
        "rule": r.rule,
        "stable": r.stable.to_string(),
        "canary": r.canary.to_string(),
        "state": inner.phase.as_str(),
        "canaryWeight": percent_of(state.weight()),
        "step": inner.step,
        "steps": step_count(r),
        "startTime": format_time(r.start_time),
        "nextChange": time(inner.next_change),
        "lastAnalysis": last,
        "window": {
            "stableRequests": state.stable.requests(),
            "canaryRequests": state.canary.requests(),
            "minRequests": r.analysis.min_requests,
        },
        "reason": inner.reason,
    })
}
