//! Config flow, step 3 (progressive delivery): the raw shape of a `Rollout` document, as written
//! in the manifests; `validate::rollout` checks it against the routes and backends it names.

use serde::Deserialize;

/// `Rollout.spec`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    pub route: String,
    #[serde(default)]
    pub rule: Option<usize>,
    pub stable: String,
    pub canary: String,
    pub start_time: String,
    #[serde(default)]
    pub steps: Option<Vec<RolloutStepSpec>>,
    #[serde(default)]
    pub ramp: Option<RampSpec>,
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
}

/// One of `steps`: the canary's weight, held for `pause`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStepSpec {
    pub weight: String,
    #[serde(default)]
    pub pause: Option<String>,
}

/// `ramp`: a linear climb from `from` to `to` over `over`, changed every `every`.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RampSpec {
    pub from: String,
    pub to: String,
    pub over: String,
    pub every: String,
}

/// `analysis`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub max_error_rate: Option<String>,
    #[serde(default)]
    pub max_p99_ratio: Option<f64>,
    #[serde(default)]
    pub min_requests: Option<u64>,
}
