//! Config flow, step 3 (policies): the `Policy` kind, a rule's `fault` and the Gateway's `redis`
//! exactly as written. `validate::policy` turns them into the model.

use serde::Deserialize;

/// `spec` of a `Policy`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(default)]
    pub request_limits: Option<RequestLimitsSpec>,
    #[serde(default)]
    pub jwt: Option<JwtSpec>,
    #[serde(default)]
    pub api_key: Option<ApiKeySpec>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthSpec>,
    #[serde(default)]
    pub external_auth: Option<super::ExternalAuthSpec>,
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    #[serde(default)]
    pub cors: Option<super::CorsSpec>,
    #[serde(default)]
    pub ip_filter: Option<super::IpFilterSpec>,
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

/// `jwt`: bearer tokens checked against keys from a JWKS (URL or file) or a shared secret.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub jwks: Option<JwksSpec>,
    #[serde(default)]
    pub secret: Option<SecretSpec>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub from: Option<Vec<CredentialSourceSpec>>,
    #[serde(default)]
    pub forward_claims: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub required_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub required_claims: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub leeway: Option<String>,
}

/// `jwt.jwks`: exactly one of `url` and `file`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct JwksSpec {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub refresh_interval: Option<String>,
    #[serde(default)]
    pub min_refresh_interval: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `jwt.secret`: the HMAC key, from a file or written inline.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretSpec {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// Where a credential is read: exactly one of `header` (with an optional `prefix`), `cookie`
/// and `query`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSourceSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
}

/// `apiKey`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    #[serde(default)]
    pub from: Option<Vec<CredentialSourceSpec>>,
    #[serde(default)]
    pub keys: Option<Vec<ApiKeyEntrySpec>>,
    #[serde(default)]
    pub keys_file: Option<String>,
}

/// One key of `apiKey.keys`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyEntrySpec {
    pub consumer: String,
    pub sha256: String,
}

/// `basicAuth`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthSpec {
    pub htpasswd_file: String,
    #[serde(default)]
    pub realm: Option<String>,
}
