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
