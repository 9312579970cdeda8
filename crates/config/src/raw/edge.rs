//! Config flow, step 3 (policies at the edge): a Policy's `externalAuth`, `cors` and `ipFilter`
//! sections exactly as written. `validate::edge` turns them into the model.

use serde::Deserialize;

/// `externalAuth`: ask an HTTP service about each request.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuthSpec {
    pub url: String,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    #[serde(default)]
    pub upstream_headers: Option<Vec<String>>,
    #[serde(default)]
    pub cache: Option<AuthCacheSpec>,
    #[serde(default)]
    pub failure_mode: Option<FailureModeSpec>,
    #[serde(default)]
    pub body: Option<AuthBodySpec>,
}

/// `externalAuth.body`: send the request body (up to a size) to the service.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthBodySpec {
    pub max_size: String,
    #[serde(default)]
    pub allow_partial: Option<bool>,
}

/// `externalAuth.cache`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthCacheSpec {
    pub ttl: String,
    #[serde(default)]
    pub max_entries: Option<usize>,
}

/// `externalAuth.failureMode`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureModeSpec {
    Allow,
    Deny,
}

/// `cors`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct CorsSpec {
    #[serde(default)]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default)]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default)]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default)]
    pub expose_headers: Option<Vec<String>>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    #[serde(default)]
    pub max_age: Option<String>,
}

/// `ipFilter`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct IpFilterSpec {
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Option<Vec<String>>,
}
