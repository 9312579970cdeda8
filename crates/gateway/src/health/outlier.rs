//! Request flow, after an attempt: passive outlier detection. Each upstream result of a backend with
//! `outlierDetection` is recorded against its endpoint; `consecutiveErrors` failures in a row (5xx
//! answers, connect failures, resets, timeouts) eject the endpoint for `baseEjectionTime` times the
//! number of its ejections so far (capped at ten), while never more than `maxEjectionPercent` of
//! the backend is out at once. An ejection ends by itself when its time passes.

use crate::state::endpoint::EndpointRt;
use crate::state::{now_ms, BackendState};
use gatehouse_config::OutlierDetection;
use std::sync::atomic::Ordering;

/// Records one result; a success costs one relaxed load when there was no failure streak.
pub(crate) fn record(
    od: &OutlierDetection,
    backend: &BackendState,
    endpoint: &EndpointRt,
    failed: bool,
) {
    let ep = &endpoint.shared;
    if !failed {
        if ep.consecutive_failures.load(Ordering::Relaxed) != 0 {
            ep.consecutive_failures.store(0, Ordering::Relaxed);
        }
        return;
    }
    let n = ep.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if n < od.consecutive_errors {
        return;
    }
    let now = now_ms();
    if ep.ejected(now) {
        return;
    }
    let set = backend.current();
    let total = set.endpoints.len();
    let out = set
        .endpoints
        .iter()
        .filter(|e| e.shared.ejected(now))
        .count();
    // At least one endpoint may always be ejected when the percentage allows any at all.
    let allowed = ((total as u64 * u64::from(od.max_ejection_percent)) / 100)
        .max(u64::from(od.max_ejection_percent > 0));
    if out as u64 >= allowed {
        return;
    }
    let times = ep.ejections.fetch_add(1, Ordering::Relaxed) + 1;
    let duration = od.base_ejection_time * times.min(10);
    ep.ejected_until
        .store(now + duration.as_millis() as u64, Ordering::Relaxed);
    ep.consecutive_failures.store(0, Ordering::Relaxed);
    backend.count_ejection();
    tracing::warn!(
        backend = &*backend.id,
        endpoint = &*endpoint.address,
        "endpoint ejected for {duration:?} after {n} consecutive failures"
    );
    backend.refresh_availability();
}
