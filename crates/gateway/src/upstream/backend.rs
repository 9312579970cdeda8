//! Request flow, step 8: a backend at run time — its endpoints and the balancer that picks one.
//!
//! Endpoints sit behind an `ArcSwap` so that discovery (a later issue) can replace them through the
//! backend without rebuilding the route table. Per-endpoint state that must survive reloads (the
//! HTTP/2 connection, in-flight counts) lives in `EndpointShared`, reused by address across snapshots.

use arc_swap::{ArcSwap, ArcSwapOption};
use gatehouse_config::{Backend, BackendProtocol, LbPolicy};
use prometheus_client::metrics::counter::Counter;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// State of one upstream address that outlives a snapshot.
pub struct EndpointShared {
    /// Key of this endpoint's connections in the per-thread HTTP/1 pool.
    pub pool_key: u64,
    /// Requests in flight to it (for least-request balancing and `/backends`).
    pub in_flight: AtomicUsize,
    /// The multiplexed HTTP/2 connection, when the backend speaks HTTP/2.
    /// Read without a lock on every request to an HTTP/2 backend; replaced when it closes.
    pub h2: ArcSwapOption<hyper::client::conn::http2::SendRequest<crate::proxy::body::RequestBody>>,
}

/// One endpoint of a backend.
pub struct EndpointRt {
    /// `host:port` as configured.
    pub address: Arc<str>,
    /// Parsed address when the host is an IP literal; otherwise resolved at connect time.
    pub resolved: Option<SocketAddr>,
    /// Relative weight.
    pub weight: u32,
    /// State that survives reloads.
    pub shared: Arc<EndpointShared>,
}

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
    /// Current endpoints.
    pub endpoints: ArcSwap<EndpointSet>,
    /// Balancing policy.
    pub policy: LbPolicy,
    rr: AtomicUsize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle pooled connections older than this are not reused.
    pub idle_timeout: Duration,
    /// Connect failures.
    pub connect_errors: Counter,
}

impl BackendRt {
    /// Builds the runtime backend; `shared` returns the surviving state of an address.
    pub fn new(
        b: &Backend,
        shared: &mut impl FnMut(&str) -> Arc<EndpointShared>,
        connect_errors: Counter,
    ) -> Self {
        let endpoints = b
            .endpoints
            .iter()
            .map(|e| {
                Arc::new(EndpointRt {
                    address: e.address.as_str().into(),
                    resolved: e.address.parse().ok(),
                    weight: e.weight,
                    shared: shared(&e.address),
                })
            })
            .collect();
        BackendRt {
            id: b.id.to_string().into(),
            protocol: b.protocol,
            endpoints: ArcSwap::from_pointee(EndpointSet::new(endpoints)),
            policy: b.lb_policy,
            rr: AtomicUsize::new(fastrand::usize(..1024)),
            connect_timeout: b.connect_timeout,
            idle_timeout: b.idle_timeout,
            connect_errors,
        }
    }

    /// Picks an endpoint, or `None` when the backend has none.
    pub fn pick(&self) -> Option<Arc<EndpointRt>> {
        let set = self.endpoints.load();
        let eps = &set.endpoints;
        if eps.is_empty() {
            return None;
        }
        let idx = match self.policy {
            _ if eps.len() == 1 => 0,
            LbPolicy::RoundRobin | LbPolicy::ConsistentHash => {
                let n = self.rr.fetch_add(1, Ordering::Relaxed);
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
        Some(eps[idx].clone())
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
            shared: Arc::new(EndpointShared {
                pool_key: 0,
                in_flight: AtomicUsize::new(0),
                h2: ArcSwapOption::empty(),
            }),
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
