//! Config flow, written back (traffic policy): a rule's `retry` and a backend's `circuitBreaker`
//! as manifest fields, for `GET /config`.

use super::duration;
use crate::model::{CircuitBreaker, Retry};
use serde_json::{json, Value};

/// A size the way the manifests write it: `64KiB`, `1MiB`, or bytes.
fn size(n: usize) -> String {
    match n {
        0 => "0".into(),
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => n.to_string(),
    }
}

/// `retry`, every default spelled out.
pub(super) fn retry(r: &Retry) -> Value {
    let mut on: Vec<String> = [
        (r.on.connect_failure, "connect-failure"),
        (r.on.refused_stream, "refused-stream"),
        (r.on.reset, "reset"),
        (r.on.gateway_error, "gateway-error"),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_string())
    .collect();
    on.extend(r.on.statuses.iter().map(u16::to_string));
    on.extend(
        (crate::model::GRPC_RETRY_CODES.iter())
            .filter(|(_, c)| r.on.grpc_statuses.contains(c))
            .map(|(n, _)| n.to_string()),
    );
    let mut v = json!({
        "attempts": r.attempts,
        "on": on,
        "methods": r.methods,
        "backoff": {"base": duration(r.backoff.base), "max": duration(r.backoff.max)},
        "budget": {"percent": format!("{}%", r.budget.percent), "minPerSecond": r.budget.min_per_second},
        "maxBodySize": size(r.max_body_size),
    });
    if let Some(t) = r.per_try_timeout {
        v["perTryTimeout"] = duration(t);
    }
    v
}

/// `circuitBreaker`.
pub(super) fn circuit_breaker(c: &CircuitBreaker) -> Value {
    json!({
        "maxConnections": c.max_connections,
        "maxPendingRequests": c.max_pending_requests,
        "maxRequests": c.max_requests,
        "maxRetries": c.max_retries,
    })
}
