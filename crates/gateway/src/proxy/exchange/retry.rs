//! Request flow, forwarding (retries): the attempts of an exchange whose rule has a `retry`
//! policy. An attempt that fails in a way the policy names is tried again — on another endpoint
//! where there is one, after an exponential backoff with full jitter — while attempts, the
//! whole-request timeout, the backend's retry budget and its circuit breaker allow, and only when
//! the request can be sent again whole (its body kept for replay, its method repeatable once any
//! of it left). A response handed to the client is never retried: the loop ends with it.

use super::Exchange;
use crate::body::replay::ReplaySource;
use crate::error::{Cause, ErrorKind, ProxyError, Side};
use crate::proxy::body::{Completion, RequestBody};
use crate::proxy::forward::Extra;
use crate::state::breaker::Limit;
use crate::telemetry::metrics::RequestMetrics;
use crate::upstream::backend::{BackendRt, EndpointRt};
use crate::upstream::client::{Head, UpstreamBody};
use gatehouse_config::{Backoff, Retry, RetryOn};
use http::header::HeaderValue;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body::Body;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Sent on every upstream request of a retrying rule: which attempt this is, from 1. Written
/// as an `Extra` field (no insert into the head's map, no allocation): values for every attempt
/// count validation allows (at most 10). A client's own copy is removed by `prepare`, which
/// finds it in its one pass over the header names.
pub(super) const X_GATEHOUSE_ATTEMPTS: &str = "x-gatehouse-attempts";
static ATTEMPT_VALUES: [HeaderValue; 10] = [
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
    HeaderValue::from_static("4"),
    HeaderValue::from_static("5"),
    HeaderValue::from_static("6"),
    HeaderValue::from_static("7"),
    HeaderValue::from_static("8"),
    HeaderValue::from_static("9"),
    HeaderValue::from_static("10"),
];

/// The `Extra` slot of `x-gatehouse-attempts` for attempt `n` (from 1).
pub(super) fn attempt_field(n: u32) -> Option<(&'static str, &'static HeaderValue)> {
    let value = ATTEMPT_VALUES.get((n as usize).wrapping_sub(1))?;
    Some((X_GATEHOUSE_ATTEMPTS, value))
}

/// An exchange's attempts against one backend.
#[derive(Clone, Copy)]
pub(super) struct Leg<'a> {
    pub(super) ex: &'a Exchange<'a>,
    pub(super) policy: &'a Retry,
    pub(super) backend: &'a BackendRt,
    pub(super) metrics: &'a RequestMetrics,
    /// The fields written into the upstream head, the first attempt's number among them.
    pub(super) extra: &'a Extra<'a>,
}

/// How the request body is sent again.
pub(super) enum Replay {
    /// No body: every attempt sends none.
    Empty,
    /// Kept (up to `maxBodySize`) as it streams.
    Kept(ReplaySource),
    /// Too large to keep: streamed once (by the first attempt), not retried.
    Once,
}

impl Replay {
    /// The first attempt's body, and how later attempts get theirs. Nothing is kept for a
    /// request without a body (the common GET): the first attempt sends it as it came.
    fn start(body: RequestBody, max: usize) -> (RequestBody, Replay) {
        if body.is_end_stream() {
            (body, Replay::Empty)
        } else if body.size_hint().lower() > max as u64 {
            (body, Replay::Once)
        } else {
            let source = ReplaySource::new(body, max);
            (RequestBody::replay(source.reader()), Replay::Kept(source))
        }
    }

    fn body(&self) -> RequestBody {
        match self {
            Replay::Kept(source) => RequestBody::replay(source.reader()),
            Replay::Empty | Replay::Once => RequestBody::empty(),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            Replay::Empty => true,
            Replay::Kept(source) => source.replayable(),
            Replay::Once => false,
        }
    }
}

/// An attempt's outcome.
pub(super) type Outcome = Result<Response<UpstreamBody>, ProxyError>;

impl Leg<'_> {
    /// Before the first attempt: counts the request in the budget, and returns the first
    /// attempt's body with how later attempts get theirs. The first attempt is awaited by the
    /// exchange itself, as on a rule without retries (the head lent, never copied); a body is
    /// kept only when there is one, and `retry`'s state is boxed, made only when a retry is
    /// wanted: a retry that never happens costs the budget's count and a few checks.
    pub(super) fn start(&self, body: RequestBody, done: &mut Completion) -> (RequestBody, Replay) {
        self.backend.state.budget.request_at(self.ex.start);
        if let Some(l) = done.log.as_mut() {
            l.attempts = Some(1);
        }
        Replay::start(body, self.policy.max_body_size)
    }

    /// Whether the first attempt's `result` is final: the policy does not want it tried again,
    /// or the request cannot be sent again whole.
    pub(super) fn settled(&self, result: &Outcome, parts: &Parts, replay: &Replay) -> bool {
        self.policy.attempts <= 1 || !self.wanted(result, parts, replay)
    }

    /// The attempts after the first, which failed in a way the policy names: each waits its
    /// backoff, goes to another endpoint where there is one, and is tried while attempts, the
    /// budget and the breaker allow. The last outcome and the endpoint it came from; `done`
    /// follows the endpoint in flight and records the number of attempts for the access log.
    pub(super) async fn retry(
        self,
        parts: &Parts,
        replay: Replay,
        mut result: Outcome,
        mut ep: Arc<EndpointRt>,
        done: &mut Completion,
    ) -> (Outcome, Arc<EndpointRt>) {
        let policy = self.policy;
        // The running retry's unit of the breaker's `maxRetries`, given back with its outcome.
        let mut _retrying = None;
        let mut n = 1;
        loop {
            // The retry's unit of `maxRetries`, held until its outcome is known; taken before
            // the budget, so that a retry the breaker refuses spends none of it.
            let Ok(slot) = self.backend.breaker_slot(Limit::Retries) else {
                return (result, ep);
            };
            let Some(wait) = self.next_wait(n) else {
                return (result, ep);
            };
            _retrying = slot;
            drop(result);
            self.metrics.retry();
            tokio::time::sleep(wait).await;
            if let Some(next) = self.other_endpoint(&ep) {
                ep.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                next.shared.in_flight.fetch_add(1, Ordering::Relaxed);
                done.in_flight = Some(next.shared.clone());
                ep = next;
            }
            n += 1;
            if let Some(l) = done.log.as_mut() {
                l.attempts = Some(n);
            }
            let mut extra = *self.extra;
            extra.0[4] = attempt_field(n);
            // The head is lent, not copied: the HTTP/1.1 codec writes it from a reference.
            let head = Head::Kept(parts);
            result = (self.ex)
                .attempt(
                    self.backend,
                    &ep,
                    head,
                    replay.body(),
                    &extra,
                    policy.per_try_timeout,
                )
                .await;
            if n >= policy.attempts || !self.wanted(&result, parts, &replay) {
                return (result, ep);
            }
        }
    }

    /// Whether the policy wants `result` tried again and the request can be sent again whole.
    /// The cheap conditions first: a success usually ends it at the status check.
    fn wanted(&self, result: &Outcome, parts: &Parts, replay: &Replay) -> bool {
        let on = &self.policy.on;
        let method_ok = || (self.policy.methods.iter()).any(|m| m == parts.method.as_str());
        match result {
            Ok(r) => {
                ((status_wanted(on, r.status()) && method_ok()) || grpc_wanted(on, r.headers()))
                    && replay.replayable()
            }
            Err(e) => error_wanted(on, e) && e.may_retry(method_ok(), replay.replayable()),
        }
    }

    /// The wait before retry `n` (from 1), if the budget grants it and it ends before the
    /// whole-request timeout.
    fn next_wait(&self, n: u32) -> Option<Duration> {
        let wait = backoff(n, &self.policy.backoff);
        let whole = self.ex.timeout;
        if !whole.is_zero() && self.ex.start.elapsed() + wait >= whole {
            return None;
        }
        let budget = &self.policy.budget;
        if !(self.backend.state.budget).try_retry(budget.percent, budget.min_per_second) {
            self.backend.state.metrics.budget_exhausted.inc();
            return None;
        }
        Some(wait)
    }

    /// Another available endpoint than `ep`, where the backend has one (a few picks; the
    /// balancer's order makes the next pick differ for round robin at once).
    fn other_endpoint(&self, ep: &EndpointRt) -> Option<Arc<EndpointRt>> {
        (0..4)
            .filter_map(|_| self.backend.pick())
            .find(|next| next.key != ep.key)
    }
}

/// Whether the policy retries an upstream response with `status`.
fn status_wanted(on: &RetryOn, status: StatusCode) -> bool {
    let s = status.as_u16();
    on.statuses.contains(&s) || (on.gateway_error && (502..=504).contains(&s))
}

/// Whether the policy names the gRPC status of a trailers-only answer (`grpc-status` among the
/// response headers: the call failed before any message, and nothing went to the client yet).
/// Every gRPC call is a POST, so `methods` does not apply: the conditions name gRPC statuses a
/// server gives when it did not carry the call out. No lookup unless the policy names one.
fn grpc_wanted(on: &RetryOn, headers: &http::HeaderMap) -> bool {
    if on.grpc_statuses.is_empty() {
        return false;
    }
    let code = headers.get("grpc-status").map(|v| v.as_bytes());
    let code = code.and_then(|b| std::str::from_utf8(b).ok()?.parse::<u8>().ok());
    code.is_some_and(|c| on.grpc_statuses.contains(&c))
}

/// Whether the policy names the failure `e`; `gateway-error` covers every upstream failure the
/// proxy answers with 502 or 504 itself.
fn error_wanted(on: &RetryOn, e: &ProxyError) -> bool {
    match e.cause {
        Cause::Connect => on.connect_failure || on.gateway_error,
        Cause::RefusedStream => on.refused_stream || on.gateway_error,
        Cause::Reset => on.reset || on.gateway_error,
        Cause::PerTryTimeout => on.reset || on.gateway_error,
        Cause::Other => {
            on.gateway_error
                && e.side == Side::Upstream
                && matches!(e.kind, ErrorKind::UpstreamProtocol | ErrorKind::Timeout)
        }
    }
}

/// The wait before retry `n` (from 1): uniformly random below `min(max, base * 2^(n-1))` — full
/// jitter, so that clients that failed together do not come back together.
pub(crate) fn backoff(n: u32, b: &Backoff) -> Duration {
    let ceiling = b
        .base
        .saturating_mul(1u32 << n.saturating_sub(1).min(20))
        .min(b.max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(..nanos.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_exponentially_up_to_max_with_full_jitter() {
        let b = Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        };
        for (n, ceiling) in [(1, 25), (2, 50), (3, 100), (4, 200), (5, 250), (30, 250)] {
            let waits: Vec<Duration> = (0..400).map(|_| backoff(n, &b)).collect();
            let top = Duration::from_millis(ceiling);
            assert!(waits.iter().all(|w| *w < top), "retry {n} above {top:?}");
            // Full jitter: the waits spread over the whole range, down to near zero.
            assert!(waits.iter().any(|w| *w < top / 10), "retry {n}");
            assert!(waits.iter().any(|w| *w > top * 9 / 10), "retry {n}");
        }
        // On the paused clock a retry waits its backoff, no more than the timer's 1 ms grain.
        let start = tokio::time::Instant::now();
        let wait = backoff(3, &b);
        tokio::time::sleep(wait).await;
        let waited = start.elapsed();
        assert!(
            waited >= wait && waited <= wait + Duration::from_millis(1),
            "{waited:?}"
        );
    }

    #[test]
    fn grpc_conditions_name_trailers_only_statuses() {
        let on = RetryOn {
            grpc_statuses: vec![14],
            ..RetryOn::default()
        };
        let mut h = http::HeaderMap::new();
        assert!(!grpc_wanted(&on, &h), "no grpc-status: a normal answer");
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert!(grpc_wanted(&on, &h));
        h.insert("grpc-status", HeaderValue::from_static("8"));
        assert!(!grpc_wanted(&on, &h));
        assert!(!grpc_wanted(&RetryOn::default(), &h));
    }

    #[test]
    fn conditions_name_failures_and_statuses() {
        let on = RetryOn {
            connect_failure: true,
            statuses: vec![503],
            ..RetryOn::default()
        };
        let connect = ProxyError::new(ErrorKind::UpstreamConnect, "x");
        assert!(error_wanted(&on, &connect));
        let reset = ProxyError::new(ErrorKind::UpstreamProtocol, "x").because(Cause::Reset);
        assert!(!error_wanted(&on, &reset));
        assert!(status_wanted(&on, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!status_wanted(&on, StatusCode::BAD_GATEWAY));
        let gw = RetryOn {
            gateway_error: true,
            ..RetryOn::default()
        };
        assert!(error_wanted(&gw, &reset));
        assert!(status_wanted(&gw, StatusCode::GATEWAY_TIMEOUT));
        assert!(!status_wanted(&gw, StatusCode::INTERNAL_SERVER_ERROR));
        let client = ProxyError::new(ErrorKind::ClientClosed, "x");
        assert!(!error_wanted(&gw, &client));
    }
}
