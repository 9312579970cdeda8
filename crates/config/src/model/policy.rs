//! Config flow, step 4 (output, policies): the validated `Policy` kind, a rule's `fault` and the
//! Gateway's `redis`, as the gateway compiles them into each rule's policy chain.

use super::{ObjectId, Source};
use serde::{Serialize, Serializer};
use std::time::Duration;

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::units::DisplayDuration(*d))
}

/// The `Policy` kind: steps attached to rules by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// Identity.
    pub id: ObjectId,
    /// `rateLimit`.
    pub rate_limit: Option<RateLimit>,
    /// `requestLimits`.
    pub request_limits: Option<RequestLimits>,
    /// `jwt`.
    pub jwt: Option<Jwt>,
    /// `apiKey`.
    pub api_key: Option<ApiKey>,
    /// `basicAuth`.
    pub basic_auth: Option<BasicAuth>,
    /// `anyOf`: the auth sections (`jwt`, `apiKey`, `basicAuth`) of which one must pass; the
    /// others must all pass. Empty: all must pass.
    pub any_of: Vec<AuthSection>,
    /// `externalAuth` (its own step, after the other auth sections).
    pub external_auth: Option<super::ExternalAuth>,
    /// `cors`.
    pub cors: Option<super::Cors>,
    /// `ipFilter`.
    pub ip_filter: Option<super::IpFilter>,
    /// Where it was defined.
    pub source: Source,
}

/// A rate limit: a bucket of `burst` requests refilled at `requests` per `per` (GCRA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests per period: the sustained rate.
    pub requests: u64,
    /// The period.
    #[serde(serialize_with = "ser_duration")]
    pub per: Duration,
    /// How many may arrive at once; `requests` when not written.
    pub burst: u64,
    /// What one bucket counts.
    pub key: RateLimitKey,
    /// In this process or shared through Redis.
    pub scope: RateLimitScope,
    /// What a global limit does when Redis cannot answer in time.
    pub on_store_error: StoreErrorMode,
}

/// What a rate limit's bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    /// The client's address (the one behind `trustedProxies`).
    ClientAddress,
    /// A request header (lowercase name); requests without it share one bucket.
    Header(String),
    /// A cookie; requests without it share one bucket.
    Cookie(String),
    /// One bucket per route.
    Route,
    /// The consumer an auth policy found (API key, basic-auth user); requests without one share
    /// one bucket.
    Consumer,
    /// A claim of the verified JWT (text; numbers in their JSON spelling); requests without it
    /// share one bucket.
    Claim(String),
}

/// Where a rate limit's buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RateLimitScope {
    /// In this process.
    Local,
    /// In Redis, shared by every replica.
    Global,
}

/// What to do when the store of a global limit fails or is slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StoreErrorMode {
    /// Let the request through.
    Allow,
    /// Answer 429.
    Deny,
}

/// `requestLimits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestLimits {
    /// Largest request body, in bytes.
    pub max_body_size: u64,
}

/// A rule's `fault`: delays and aborts injected into a share of its requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Delay before the request goes on.
    pub delay: Option<FaultDelay>,
    /// Answer with a status instead of forwarding.
    pub abort: Option<FaultAbort>,
    /// Only requests carrying this header (lowercase) are considered.
    pub when_header: Option<String>,
}

/// `fault.delay`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    /// How long.
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Share of requests, 0-100.
    pub percent: f64,
}

/// `fault.abort`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    /// Status answered.
    pub status: u16,
    /// Share of requests, 0-100.
    pub percent: f64,
}

/// The Gateway's `redis`, the store of `scope: global` rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redis {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Longest wait for one decision before `onStoreError` decides.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// An auth section's name, as `anyOf` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthSection {
    /// `jwt`.
    Jwt,
    /// `apiKey`.
    ApiKey,
    /// `basicAuth`.
    BasicAuth,
    /// `externalAuth`: asked only when the other alternatives did not pass.
    ExternalAuth,
}

/// `jwt`: a bearer token signed by a key of `keys`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// `aud` must name one of these (when any are given).
    pub audiences: Vec<String>,
    /// Where the verification keys come from.
    pub keys: JwtKeys,
    /// Algorithms accepted (names such as `RS256`); empty: every algorithm of the key's type.
    pub algorithms: Vec<String>,
    /// Where the token is read, in order.
    pub from: Vec<CredentialSource>,
    /// Claim name to upstream header name (lowercase).
    pub forward_claims: Vec<(String, String)>,
    /// Scopes (`scope`, space-separated, or `scp`, a list) the token must grant; else 403.
    pub required_scopes: Vec<String>,
    /// Claims that must have this value (or contain it, for a list); else 403.
    pub required_claims: Vec<(String, String)>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
}

/// Where a `jwt`'s keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum JwtKeys {
    /// A JWKS served over HTTP: fetched at start, every `refresh`, and on an unknown `kid` at most
    /// once per `min_refresh`.
    JwksUrl {
        /// `http://` or `https://` URL.
        url: String,
        /// Regular refresh.
        #[serde(serialize_with = "ser_duration")]
        refresh: Duration,
        /// Least time between two refreshes caused by unknown `kid`s.
        #[serde(serialize_with = "ser_duration")]
        min_refresh: Duration,
        /// `https://` only: the PEM bundle of the CAs that may sign the server's certificate;
        /// `None`: the system's bundle.
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_file: Option<std::path::PathBuf>,
    },
    /// A JWKS file.
    JwksFile(std::path::PathBuf),
    /// A shared HMAC secret (HS256/384/512 only), from a file.
    SecretFile(std::path::PathBuf),
    /// A shared HMAC secret written in the config.
    #[serde(serialize_with = "ser_secret")]
    Secret(String),
}

fn ser_secret<S: Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

/// Where a credential is read. Serialized as the manifests write it (`{header, prefix}`,
/// `{cookie}`, `{query}`), which is what the contract reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A header (lowercase name) and the prefix its value starts with (`Bearer `), if any; the
    /// prefix is matched without regard to case.
    Header {
        /// Header name.
        name: String,
        /// Prefix, removed.
        prefix: Option<String>,
    },
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

impl Serialize for CredentialSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            CredentialSource::Header { name, prefix } => {
                m.serialize_entry("header", name)?;
                if let Some(p) = prefix {
                    m.serialize_entry("prefix", p)?;
                }
            }
            CredentialSource::Cookie(c) => m.serialize_entry("cookie", c)?,
            CredentialSource::Query(q) => m.serialize_entry("query", q)?,
        }
        m.end()
    }
}

/// `apiKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Where the key is read, in order.
    pub from: Vec<CredentialSource>,
    /// Inline keys: consumer and SHA-256 of the key (32 bytes).
    pub keys: Vec<ApiKeyEntry>,
    /// A file of more keys (`consumer sha256-hex` per line), watched.
    pub keys_file: Option<std::path::PathBuf>,
}

/// One API key: its consumer and the SHA-256 of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyEntry {
    /// Who uses it.
    pub consumer: String,
    /// SHA-256 of the key.
    #[serde(serialize_with = "ser_hex")]
    pub sha256: [u8; 32],
}

fn ser_hex<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    s.serialize_str(&hex)
}

/// `basicAuth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// The htpasswd file (bcrypt entries), watched.
    pub htpasswd_file: std::path::PathBuf,
    /// The realm in `WWW-Authenticate`.
    pub realm: String,
}
