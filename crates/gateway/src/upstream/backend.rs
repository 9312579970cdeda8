//! Request flow, step 8: a backend as one snapshot sees it — its settings from the config, and its
//! run-time state (`state::BackendState`: the endpoint set discovery and health keep current, which
//! outlives reloads) — and the balancer that picks an endpoint from that set.

use gatehouse_config::{Backend, BackendProtocol, LbPolicy};
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use crate::state::endpoint::{EndpointRt, EndpointShared};

/// The endpoint set and the precomputed balancing schedule; swapped whole.
pub struct EndpointSet {
    /// Endpoints.
    pub endpoints: Vec<Arc<EndpointRt>>,
    /// Smooth weighted round-robin order, as indexes into `endpoints`.
    schedule: Vec<u32>,
    /// Cumulative weights, for weighted random.
    cumulative: Vec<u64>,
}

impl EndpointSet {
    /// Builds the set and its schedules.
    pub fn new(endpoints: Vec<Arc<EndpointRt>>) -> Self {
        let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
        let mut cumulative = Vec::with_capacity(endpoints.len());
        let mut acc = 0;
        for e in &endpoints {
            acc += u64::from(e.weight);
            cumulative.push(acc);
        }
        // Smooth WRR (as nginx): spreads heavy endpoints instead of sending them bursts. The cycle is
        // capped; beyond that, proportions are kept approximately.
        let len = total.min(4096) as usize;
        let scale = if total > 4096 {
            4096.0 / total as f64
        } else {
            1.0
        };
        let weights: Vec<i64> = endpoints
            .iter()
            .map(|e| ((f64::from(e.weight) * scale).round() as i64).max(1))
            .collect();
        let sum: i64 = weights.iter().sum();
        let mut current = vec![0i64; endpoints.len()];
        let mut schedule = Vec::with_capacity(len);
        for _ in 0..sum {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += weights[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= sum;
            schedule.push(best as u32);
        }
        EndpointSet {
            endpoints,
            schedule,
            cumulative,
        }
    }
}

/// A backend at run time.
pub struct BackendRt {
    /// `namespace/name`.
    pub id: Arc<str>,
    /// Upstream protocol.
    pub protocol: BackendProtocol,
    /// Run-time state: the current endpoints and what outlives reloads.
    pub state: Arc<crate::state::BackendState>,
    /// Balancing policy.
    pub policy: LbPolicy,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle pooled connections older than this are not reused.
    pub idle_timeout: Duration,
    /// Longest gap between bytes of a response body; zero: none.
    pub read_timeout: Duration,
    /// Connect failures.
    pub connect_errors: Counter,
    /// Passive outlier detection, when configured.
    pub(crate) outlier: Option<gatehouse_config::OutlierDetection>,
    /// Slow-start window in state-clock milliseconds, when configured.
    slow_start_ms: Option<u64>,
}

impl BackendRt {
    /// The snapshot's view of backend `b`, over its run-time state.
    pub fn new(
        b: &Backend,
        state: Arc<crate::state::BackendState>,
        connect_errors: Counter,
    ) -> Self {
        BackendRt {
            id: b.id.to_string().into(),
            protocol: b.protocol,
            state,
            policy: b.lb_policy,
            connect_timeout: b.connect_timeout,
            idle_timeout: b.idle_timeout,
            read_timeout: b.read_timeout,
            connect_errors,
            outlier: b.outlier_detection.clone(),
            slow_start_ms: b.slow_start.map(|d| d.as_millis().max(1) as u64),
        }
    }

    /// Picks an endpoint, or `None` when the backend has none.
    pub fn pick(&self) -> Option<Arc<EndpointRt>> {
        let set = self.state.endpoints.load();
        let eps = &set.endpoints;
        if eps.is_empty() {
            return None;
        }
        let idx = match self.policy {
            _ if eps.len() == 1 => 0,
            LbPolicy::RoundRobin => {
                let n = self.state.rr.fetch_add(1, Ordering::Relaxed);
                set.schedule[n % set.schedule.len()] as usize
            }
            LbPolicy::Random => weighted_random(&set.cumulative),
            LbPolicy::LeastRequest => {
                // Power of two choices, weighted: compare in-flight per unit of weight.
                let a = weighted_random(&set.cumulative);
                let b = weighted_random(&set.cumulative);
                let load = |i: usize| {
                    eps[i].shared.in_flight.load(Ordering::Relaxed) as f64
                        / f64::from(eps[i].weight)
                };
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        let ep = &eps[idx];
        if self.state.panic.load(Ordering::Relaxed) || (ep.shared.available() && !self.slowed(ep)) {
            return Some(ep.clone());
        }
        // Rare: the choice is unhealthy, ejected or ramping up. Walk on to the next endpoint
        // that may take it; ramping endpoints are skipped only in the first pass.
        let n = eps.len();
        let next = (1..n)
            .map(|k| &eps[(idx + k) % n])
            .find(|e| e.shared.available() && !self.slowed(e))
            .or_else(|| eps.iter().find(|e| e.shared.available()));
        next.cloned()
    }

    /// Whether slow start turns this pick of `ep` away: an endpoint `t` into its ramp of length
    /// `w` takes a pick with probability `t / w` (at least 10%).
    fn slowed(&self, ep: &EndpointRt) -> bool {
        let Some(window) = self.slow_start_ms else {
            return false;
        };
        let since = ep.shared.healthy_since.load(Ordering::Relaxed);
        if since == 0 {
            return false;
        }
        let elapsed = crate::state::now_ms().saturating_sub(since);
        elapsed < window && fastrand::u64(..window) >= elapsed.max(window / 10)
    }
}

fn weighted_random(cumulative: &[u64]) -> usize {
    let total = *cumulative.last().unwrap_or(&1);
    let x = fastrand::u64(..total.max(1));
    cumulative.partition_point(|&c| c <= x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: &str, weight: u32) -> Arc<EndpointRt> {
        Arc::new(EndpointRt {
            address: addr.into(),
            resolved: addr.parse().ok(),
            weight,
            source: crate::state::endpoint::Source::Static,
            shared: Arc::new(EndpointShared::new(0)),
        })
    }

    #[test]
    fn smooth_weighted_round_robin_keeps_proportions_and_spreads() {
        let set = EndpointSet::new(vec![ep("a:1", 5), ep("b:1", 1), ep("c:1", 1)]);
        assert_eq!(set.schedule.len(), 7);
        assert_eq!(set.schedule.iter().filter(|&&i| i == 0).count(), 5);
        // nginx's example sequence for 5/1/1: a a b a c a a
        assert_eq!(set.schedule, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_random_respects_weights() {
        let cumulative = [1, 4];
        let hits = (0..4000)
            .filter(|_| weighted_random(&cumulative) == 1)
            .count();
        assert!((2700..3300).contains(&hits), "{hits}");
    }
}
