//! Config flow, step 3 (policies): the `Policy` kind, a rule's `fault` and the Gateway's `redis`
//! exactly as written. `validate::policy` turns them into the model.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// `spec` of a `Policy`. The auth, CORS and IP filter sections belong to a later release: they are
/// read only so that validation can say so instead of calling them unknown fields.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(default)]
    pub request_limits: Option<RequestLimitsSpec>,
    #[serde(default)]
    pub jwt: Option<IgnoredAny>,
    #[serde(default)]
    pub api_key: Option<IgnoredAny>,
    #[serde(default)]
    pub basic_auth: Option<IgnoredAny>,
    #[serde(default)]
    pub external_auth: Option<IgnoredAny>,
    #[serde(default)]
    pub any_of: Option<IgnoredAny>,
    #[serde(default)]
    pub cors: Option<IgnoredAny>,
    #[serde(default)]
    pub ip_filter: Option<IgnoredAny>,
}

/// `rateLimit`: `requests` per `per`, a bucket of `burst`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    pub requests: u64,
    pub per: String,
    #[serde(default)]
    pub burst: Option<u64>,
    #[serde(default)]
    pub key: Option<RateLimitKeySpec>,
    #[serde(default)]
    pub scope: Option<RateLimitScope>,
    #[serde(default)]
    pub on_store_error: Option<StoreErrorMode>,
}

/// Exactly one key kind; `validate` checks that, so every mistake is reported with the others.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitKeySpec {
    #[serde(default)]
    pub client_address: Option<bool>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub route: Option<bool>,
    #[serde(default)]
    pub consumer: Option<bool>,
    #[serde(default)]
    pub claim: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitScope {
    Local,
    Global,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorMode {
    Allow,
    Deny,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestLimitsSpec {
    #[serde(default)]
    pub max_body_size: Option<String>,
}

/// A rule's `fault`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    #[serde(default)]
    pub delay: Option<FaultDelaySpec>,
    #[serde(default)]
    pub abort: Option<FaultAbortSpec>,
    #[serde(default)]
    pub when_header: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelaySpec {
    pub duration: String,
    #[serde(default)]
    pub percent: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbortSpec {
    pub status: u16,
    #[serde(default)]
    pub percent: Option<String>,
}

/// The Gateway's `redis`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    pub url: String,
    #[serde(default)]
    pub timeout: Option<String>,
}
