//! Config flow, step 3 (traffic policy): the raw shapes of a rule's `retry` and a backend's
//! `circuitBreaker`, as written in the manifests; `validate::traffic` checks them.

use serde::Deserialize;

/// A rule's `retry`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub on: Option<Vec<String>>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    #[serde(default)]
    pub backoff: Option<BackoffSpec>,
    #[serde(default)]
    pub budget: Option<BudgetSpec>,
    #[serde(default)]
    pub max_body_size: Option<String>,
}

/// `retry.backoff`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackoffSpec {
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
}

/// `retry.budget`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    #[serde(default)]
    pub percent: Option<String>,
    #[serde(default)]
    pub min_per_second: Option<u32>,
}

/// A backend's `circuitBreaker`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSpec {
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub max_pending_requests: Option<u32>,
    #[serde(default)]
    pub max_requests: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
}
