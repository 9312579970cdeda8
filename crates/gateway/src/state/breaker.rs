//! Run-time state, per backend (circuit breaking): the counts a backend's `circuitBreaker` limits
//! — connections, requests waiting for one, requests and retries in flight — kept in
//! `BackendState` so that they outlive reloads. Checked before the balancer picks an endpoint; a
//! limit reached refuses the request at once (`circuit_open`, 503) instead of queueing it.

use gatehouse_config::CircuitBreaker;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// What a slot counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Upstream connections open.
    Connections,
    /// Requests waiting for a connection (connecting).
    Pending,
    /// Requests in flight.
    Requests,
    /// Retries in flight.
    Retries,
}

impl Limit {
    /// The config field that sets it.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Limit::Connections => "maxConnections",
            Limit::Pending => "maxPendingRequests",
            Limit::Requests => "maxRequests",
            Limit::Retries => "maxRetries",
        }
    }

    fn of(self, l: &CircuitBreaker) -> u32 {
        match self {
            Limit::Connections => l.max_connections,
            Limit::Pending => l.max_pending_requests,
            Limit::Requests => l.max_requests,
            Limit::Retries => l.max_retries,
        }
    }
}

/// The counts of one backend. The breaker is open while requests are being refused: from a
/// refusal until the next admission.
#[derive(Default)]
pub(crate) struct Breaker {
    counts: [AtomicU32; 4],
    open: AtomicBool,
    trips: AtomicU64,
    refused: AtomicU64,
    /// `gatehouse_circuit_breaker_open{backend}` and `gatehouse_circuit_breaker_trips_total`.
    metrics: Option<(Gauge, Counter)>,
}

/// One unit of a limit, given back when dropped.
pub(crate) struct Slot {
    breaker: Arc<Breaker>,
    limit: Limit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.breaker.counts[self.limit as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    /// A breaker reporting to `open` (1 while open) and `trips`.
    pub(crate) fn new(open: Gauge, trips: Counter) -> Self {
        Breaker {
            metrics: Some((open, trips)),
            ..Default::default()
        }
    }

    /// A slot of `limit`, or `None` (the breaker trips) when `limits` are reached.
    pub(crate) fn acquire(self: &Arc<Self>, limits: &CircuitBreaker, limit: Limit) -> Option<Slot> {
        let count = &self.counts[limit as usize];
        let max = limit.of(limits);
        let admitted = count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            if self.open.load(Ordering::Relaxed) && self.open.swap(false, Ordering::Relaxed) {
                if let Some((g, _)) = &self.metrics {
                    g.set(0);
                }
            }
            return Some(Slot {
                breaker: self.clone(),
                limit,
            });
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        if !self.open.swap(true, Ordering::Relaxed) {
            self.trips.fetch_add(1, Ordering::Relaxed);
            if let Some((g, c)) = &self.metrics {
                g.set(1);
                c.inc();
            }
        }
        None
    }

    /// Current count of `limit`.
    pub(crate) fn count(&self, limit: Limit) -> u32 {
        self.counts[limit as usize].load(Ordering::Acquire)
    }

    /// `GET /backends` view.
    pub(crate) fn describe(&self) -> Value {
        json!({
            "open": self.open.load(Ordering::Relaxed),
            "trips": self.trips.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "connections": self.count(Limit::Connections),
            "pendingRequests": self.count(Limit::Pending),
            "requests": self.count(Limit::Requests),
            "retries": self.count(Limit::Retries),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_at_its_limit_and_closes_when_a_slot_frees() {
        let limits = CircuitBreaker {
            max_connections: 1,
            max_pending_requests: 1,
            max_requests: 2,
            max_retries: 1,
        };
        let b = Arc::new(Breaker::default());
        let one = b.acquire(&limits, Limit::Requests).unwrap();
        let _two = b.acquire(&limits, Limit::Requests).unwrap();
        assert!(b.acquire(&limits, Limit::Requests).is_none());
        assert!(b.acquire(&limits, Limit::Requests).is_none());
        let d = b.describe();
        assert_eq!(
            (d["open"].as_bool(), d["trips"].as_u64()),
            (Some(true), Some(1))
        );
        assert_eq!(d["refused"], 2);
        // Other limits count apart.
        assert!(b.acquire(&limits, Limit::Retries).is_some());
        drop(one);
        assert!(b.acquire(&limits, Limit::Requests).is_some());
        assert_eq!(b.describe()["open"], false);
        assert_eq!(
            b.count(Limit::Requests),
            1,
            "the dropped slots gave their units back"
        );
    }
}
