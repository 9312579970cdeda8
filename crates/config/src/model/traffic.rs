//! Config flow, the validated model (traffic policy): a rule's retry policy and a backend's
//! circuit breaker, with every default filled in.

use super::{ser_duration, ser_opt_duration};
use serde::Serialize;
use std::time::Duration;

/// A rule's retry policy (`retry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Which failures are tried again.
    pub on: RetryOn,
    /// Methods that may be retried once the request has left; any method may be retried when
    /// nothing of it was sent. Default: the idempotent methods of RFC 9110 §9.2.2.
    pub methods: Vec<String>,
    /// Time allowed for one attempt's response head; none: only the rule's `timeout`.
    #[serde(serialize_with = "ser_opt_duration")]
    pub per_try_timeout: Option<Duration>,
    /// Exponential backoff between attempts, with full jitter.
    pub backoff: Backoff,
    /// The retry budget of each backend the rule sends to.
    pub budget: RetryBudget,
    /// Request bodies up to this size are kept for replay; larger ones are not retried.
    pub max_body_size: usize,
}

/// Retry conditions (`retry.on`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryOn {
    /// The upstream could not be connected to (`connect-failure`).
    pub connect_failure: bool,
    /// An HTTP/2 upstream refused the stream (`refused-stream`).
    pub refused_stream: bool,
    /// The upstream closed or reset the connection before answering (`reset`).
    pub reset: bool,
    /// 502, 503 or 504 from the upstream, or any failure that would answer one (`gateway-error`).
    pub gateway_error: bool,
    /// Upstream response statuses tried again (`"503"`).
    pub statuses: Vec<u16>,
    /// gRPC statuses of trailers-only upstream answers tried again (`unavailable`), by code.
    pub grpc_statuses: Vec<u8>,
}

/// The gRPC statuses a retry may name, by their `retry.on` names (Envoy's `retry_on` set).
pub const GRPC_RETRY_CODES: [(&str, u8); 5] = [
    ("cancelled", 1),
    ("deadline-exceeded", 4),
    ("resource-exhausted", 8),
    ("internal", 13),
    ("unavailable", 14),
];

/// `retry.backoff`: attempt `n` (from 1) waits a random time in `[0, min(max, base * 2^(n-1)))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// The first retry's ceiling.
    #[serde(serialize_with = "ser_duration")]
    pub base: Duration,
    /// The largest ceiling.
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
}

/// `retry.budget`: retries may be at most `percent` of recent requests plus `min_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Retries as a share of recent requests, 0-100.
    pub percent: u32,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u32,
}

/// A backend's circuit breaker (`circuitBreaker`): limits past which requests are refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Upstream connections open at once.
    pub max_connections: u32,
    /// Requests waiting for a connection at once.
    pub max_pending_requests: u32,
    /// Requests in flight at once.
    pub max_requests: u32,
    /// Retries in flight at once.
    pub max_retries: u32,
}
