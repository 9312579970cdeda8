//! Config flow, step 4 (traffic policy): a rule's `retry` and a backend's `circuitBreaker`,
//! checked and turned into the model with their defaults.

use super::{values, V};
use crate::error::hint;
use crate::loader::Ctx;
use crate::model::{Backoff, CircuitBreaker, Retry, RetryBudget, RetryOn};
use crate::raw;
use std::time::Duration;

/// The named retry conditions.
const CONDITIONS: [&str; 9] = [
    "connect-failure",
    "refused-stream",
    "reset",
    "gateway-error",
    "cancelled",
    "deadline-exceeded",
    "resource-exhausted",
    "internal",
    "unavailable",
];

/// Retry conditions when `on` is not given: the failures where the upstream cannot have acted on
/// the request (no connection, a refused stream) or answered nothing (a reset).
const DEFAULT_ON: [&str; 3] = ["connect-failure", "refused-stream", "reset"];

/// Methods retried by default once a request has left: the idempotent ones (RFC 9110 §9.2.2).
const IDEMPOTENT: [&str; 6] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

/// More attempts than this turn one request into a storm of its own.
const MAX_ATTEMPTS: u32 = 10;

/// The validated `retry` of the rule at `at`.
pub(super) fn retry(v: &mut V, ctx: &Ctx, at: &str, spec: &raw::RetrySpec) -> Retry {
    let at = format!("{at}.retry");
    let attempts = spec.attempts.unwrap_or(2);
    if !(1..=MAX_ATTEMPTS).contains(&attempts) {
        v.errors.push(ctx.error(
            &format!("{at}.attempts"),
            format!("attempts must be from 1 to {MAX_ATTEMPTS} (the first attempt included)"),
        ));
    }
    let default_on: Vec<String> = DEFAULT_ON.iter().map(|s| s.to_string()).collect();
    let on = retry_on(v, ctx, &at, spec.on.as_ref().unwrap_or(&default_on));
    let methods = match &spec.methods {
        None => IDEMPOTENT.iter().map(|m| m.to_string()).collect(),
        Some(list) => (list.iter().enumerate())
            .filter_map(|(i, m)| match values::standard_method(m) {
                Ok(m) => Some(m),
                Err(e) => {
                    v.errors.push(ctx.error(&format!("{at}.methods[{i}]"), e));
                    None
                }
            })
            .collect(),
    };
    let per_try_timeout = spec.per_try_timeout.as_ref().map(|t| {
        let path = format!("{at}.perTryTimeout");
        let d = v.duration(ctx, &path, Some(t), Duration::from_secs(1));
        if d.is_zero() {
            v.errors
                .push(ctx.error(&path, "perTryTimeout must be above 0"));
        }
        d
    });
    let backoff = backoff(v, ctx, &at, spec.backoff.as_ref());
    let b = spec.budget.clone().unwrap_or_default();
    let budget = RetryBudget {
        percent: v.percent(ctx, &format!("{at}.budget.percent"), b.percent.as_ref(), 20),
        min_per_second: b.min_per_second.unwrap_or(10),
    };
    let max_body_size = v.size(
        ctx,
        &format!("{at}.maxBodySize"),
        spec.max_body_size.as_ref(),
        64 * 1024,
    );
    Retry {
        attempts: attempts.clamp(1, MAX_ATTEMPTS),
        on,
        methods,
        per_try_timeout,
        backoff,
        budget,
        max_body_size,
    }
}

fn retry_on(v: &mut V, ctx: &Ctx, at: &str, list: &[String]) -> RetryOn {
    let mut on = RetryOn::default();
    for (i, c) in list.iter().enumerate() {
        match c.as_str() {
            "connect-failure" => on.connect_failure = true,
            "refused-stream" => on.refused_stream = true,
            "reset" => on.reset = true,
            "gateway-error" => on.gateway_error = true,
            s if crate::model::GRPC_RETRY_CODES.iter().any(|(n, _)| *n == s) => {
                let code = crate::model::GRPC_RETRY_CODES.iter().find(|(n, _)| *n == s);
                on.grpc_statuses.extend(code.map(|(_, c)| *c));
            }
            s if s.bytes().all(|b| b.is_ascii_digit()) => match s.parse::<u16>() {
                Ok(n) if (500..=599).contains(&n) => on.statuses.push(n),
                _ => v.errors.push(ctx.error(
                    &format!("{at}.on[{i}]"),
                    format!("status `{s}` cannot be retried: list 5xx statuses such as \"503\""),
                )),
            },
            s => v.errors.push(ctx.error(
                &format!("{at}.on[{i}]"),
                format!(
                    "unknown retry condition `{s}`{}; expected one of {} or a 5xx status such as \"503\"",
                    hint(s, CONDITIONS),
                    CONDITIONS.map(|c| format!("`{c}`")).join(", ")
                ),
            )),
        }
    }
    on
}

fn backoff(v: &mut V, ctx: &Ctx, at: &str, spec: Option<&raw::BackoffSpec>) -> Backoff {
    let spec = spec.cloned().unwrap_or_default();
    let base_path = format!("{at}.backoff.base");
    let base = v.duration(
        ctx,
        &base_path,
        spec.base.as_ref(),
        Duration::from_millis(25),
    );
    let max = v.duration(
        ctx,
        &format!("{at}.backoff.max"),
        spec.max.as_ref(),
        (base * 10).max(Duration::from_millis(250)),
    );
    if base.is_zero() {
        v.errors
            .push(ctx.error(&base_path, "the backoff base must be above 0"));
    } else if max < base {
        v.errors.push(ctx.error(
            &format!("{at}.backoff.max"),
            "the backoff max must be at least its base",
        ));
    }
    Backoff { base, max }
}

/// The validated `circuitBreaker` of a backend; every limit defaults as Envoy's do.
pub(super) fn circuit_breaker(
    v: &mut V,
    ctx: &Ctx,
    spec: Option<&raw::CircuitBreakerSpec>,
) -> Option<CircuitBreaker> {
    let spec = spec?;
    let mut limit = |name: &str, value: Option<u32>, default: u32| {
        let n = value.unwrap_or(default);
        if n == 0 {
            v.errors.push(ctx.error(
                &format!("spec.circuitBreaker.{name}"),
                format!("{name} must be at least 1"),
            ));
        }
        n.max(1)
    };
    Some(CircuitBreaker {
        max_connections: limit("maxConnections", spec.max_connections, 1024),
        max_pending_requests: limit("maxPendingRequests", spec.max_pending_requests, 1024),
        max_requests: limit("maxRequests", spec.max_requests, 1024),
        max_retries: limit("maxRetries", spec.max_retries, 3),
    })
}
