//! Config flow, written back (progressive delivery): a `Rollout` as a manifest, for `GET /config`.

use super::{document, duration};
use crate::model::{format_time, Rollout, Schedule};
use serde_json::{json, Value};

/// A percentage the way the manifests write it.
fn percent(p: f64) -> Value {
    Value::from(format!("{p}%"))
}

/// A `Rollout` document, every default spelled out.
pub(super) fn rollout(r: &Rollout) -> Value {
    let mut spec = json!({
        "route": r.route.to_string(),
        "rule": r.rule,
        "stable": r.stable.to_string(),
        "canary": r.canary.to_string(),
        "startTime": format_time(r.start_time),
        "analysis": {
            "interval": duration(r.analysis.interval),
            "maxErrorRate": percent(r.analysis.max_error_rate),
            "maxP99Ratio": r.analysis.max_p99_ratio,
            "minRequests": r.analysis.min_requests,
        },
    });
    match &r.schedule {
        Schedule::Steps(steps) => {
            let list: Vec<Value> = (steps.iter())
                .map(|s| json!({"weight": percent(s.weight), "pause": duration(s.pause)}))
                .collect();
            spec["steps"] = Value::from(list);
        }
        Schedule::Ramp(ramp) => {
            spec["ramp"] = json!({
                "from": percent(ramp.from),
                "to": percent(ramp.to),
                "over": duration(ramp.over),
                "every": duration(ramp.every),
            });
        }
    }
    document("Rollout", &r.id, spec)
}
