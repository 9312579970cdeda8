//! Config flow, the validated model (progressive delivery): a `Rollout`, which moves one rule's
//! traffic from its `stable` backend to a `canary` on a schedule and judges the canary as it goes.

use super::{ser_duration, ObjectId};
use serde::{Serialize, Serializer};
use std::time::{Duration, SystemTime};

/// The `Rollout` kind. Compared whole on a reload: an unchanged Rollout keeps its run-time state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Identity.
    pub id: ObjectId,
    /// The Route whose rule it drives.
    pub route: ObjectId,
    /// Index of that rule in the Route's `rules`.
    pub rule: usize,
    /// The backend the rule names, which loses traffic as the canary gains it.
    pub stable: ObjectId,
    /// The backend brought in by the Rollout.
    pub canary: ObjectId,
    /// When the schedule starts; the schedule is a pure function of it, so replicas agree.
    #[serde(serialize_with = "ser_time")]
    pub start_time: SystemTime,
    /// How the canary's weight grows.
    pub schedule: Schedule,
    /// How the canary is judged.
    pub analysis: Analysis,
}

/// The canary's weights over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Schedule {
    /// `steps`: each weight held for its pause; the end of the last one promotes.
    Steps(Vec<Step>),
    /// `ramp`: from `from` to `to` linearly over `over`, changed every `every`; the end promotes.
    Ramp(Ramp),
}

/// One of `steps`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The canary's share in percent, 0-100.
    pub weight: f64,
    /// How long it is held; zero for the last step, which promotes when reached.
    #[serde(serialize_with = "ser_duration")]
    pub pause: Duration,
}

/// `ramp`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ramp {
    /// First weight, percent.
    pub from: f64,
    /// Last weight, percent.
    pub to: f64,
    /// Length of the climb.
    #[serde(serialize_with = "ser_duration")]
    pub over: Duration,
    /// Time between weight changes.
    #[serde(serialize_with = "ser_duration")]
    pub every: Duration,
}

/// `analysis`: canary against stable, every `interval`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between judgements.
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// The canary's error rate (5xx and proxy errors) above which it is rolled back, percent.
    pub max_error_rate: f64,
    /// Canary p99 over stable p99 above which it is rolled back.
    pub max_p99_ratio: f64,
    /// Canary requests needed in a window before it is judged.
    pub min_requests: u64,
}

/// RFC 3339, UTC: `2026-12-01T09:00:00Z`, with milliseconds when there are any.
pub fn format_time(t: SystemTime) -> String {
    let whole = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_millis() == 0);
    if whole {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}
