//! Config flow, step 4 (output, policies at the edge): the validated `externalAuth`, `cors` and
//! `ipFilter` sections of a Policy, as the gateway compiles them into a rule's chain (ip filter →
//! cors → auth).

use ipnet::IpNet;
use serde::{Serialize, Serializer};
use std::time::Duration;

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::units::DisplayDuration(*d))
}

fn ser_nets<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|n| n.to_string()))
}

/// `externalAuth`: an HTTP service decides about each request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuth {
    /// The service's `http://` URL (host:port literal); the request goes to its path.
    pub url: String,
    /// How long to wait for the service's answer.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Request header fields sent to the service (lower case); their values are the credential
    /// the decision cache is keyed by.
    pub headers: Vec<String>,
    /// Header fields of the service's 2xx answer copied onto the upstream request (lower case).
    pub upstream_headers: Vec<String>,
    /// Decision cache, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<AuthCache>,
    /// What to do when the service cannot be asked or fails (5xx, timeout).
    pub failure_mode: FailureMode,
    /// The request body is sent too, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<AuthBody>,
}

/// `externalAuth.body`: how much of the request body the service is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthBody {
    /// The most bytes sent (and held back from the upstream until the service has decided).
    #[serde(serialize_with = "ser_size")]
    pub max_size: usize,
    /// A longer body: its first `max_size` bytes are sent, marked partial (`true`), or the
    /// request is refused with 413 (`false`, the default).
    pub allow_partial: bool,
}

fn ser_size<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// `externalAuth.cache`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCache {
    /// How long a decision is reused.
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
    /// The most decisions kept.
    pub max_entries: usize,
}

/// `externalAuth.failureMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureMode {
    /// Let the request through.
    Allow,
    /// Answer 403 (the default).
    Deny,
}

/// `cors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Exact origins (`scheme://host[:port]`, lower case), or `*` (any origin).
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for (upper case).
    pub allow_methods: Vec<String>,
    /// Request header fields a preflight may ask for (lower case); `*` for any.
    pub allow_headers: Vec<String>,
    /// Response header fields scripts may read (lower case).
    pub expose_headers: Vec<String>,
    /// Whether credentials (cookies, `Authorization`) may be sent; never with `*` origins.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight's answer.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// `ipFilter`: by the client's address (behind `trustedProxies`); deny wins over allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpFilter {
    /// When not empty, only these networks may pass.
    #[serde(serialize_with = "ser_nets")]
    pub allow: Vec<IpNet>,
    /// These networks never pass.
    #[serde(serialize_with = "ser_nets")]
    pub deny: Vec<IpNet>,
}
