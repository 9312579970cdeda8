//! Control plane telemetry: what health checks, outlier detection and discovery do to each
//! backend's endpoints. Handles are resolved once per backend state, never per request.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    backend: String,
    result: &'static str,
}

/// The upstream-state metric families.
#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    available: Family<BackendLabels, Gauge>,
    checks: Family<CheckLabels, Counter>,
    ejections: Family<BackendLabels, Counter>,
    updates: Family<BackendLabels, Counter>,
    errors: Family<BackendLabels, Counter>,
    breaker_open: Family<BackendLabels, Gauge>,
    breaker_trips: Family<BackendLabels, Counter>,
    budget_exhausted: Family<BackendLabels, Counter>,
}

/// The handles of one backend.
pub(crate) struct BackendStateMetrics {
    /// Endpoints a request may be sent to now (healthy or unknown, and not ejected).
    pub(crate) available: Gauge,
    pub(crate) checks_ok: Counter,
    pub(crate) checks_failed: Counter,
    pub(crate) ejections: Counter,
    pub(crate) discovery_updates: Counter,
    pub(crate) discovery_errors: Counter,
    /// 1 while the circuit breaker refuses requests.
    pub(crate) breaker_open: Gauge,
    /// Times the circuit breaker opened.
    pub(crate) breaker_trips: Counter,
    /// Retries the retry budget refused.
    pub(crate) budget_exhausted: Counter,
}

impl UpstreamMetrics {
    /// Registers the families in `registry` (prefixed `gatehouse_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = UpstreamMetrics {
            available: Family::default(),
            checks: Family::default(),
            ejections: Family::default(),
            updates: Family::default(),
            errors: Family::default(),
            breaker_open: Family::default(),
            breaker_trips: Family::default(),
            budget_exhausted: Family::default(),
        };
        registry.register(
            "available_endpoints",
            "Endpoints of a backend that requests may go to now (not unhealthy, not ejected)",
            m.available.clone(),
        );
        registry.register(
            "health_checks",
            "Active health check results, by backend and result",
            m.checks.clone(),
        );
        registry.register(
            "outlier_ejections",
            "Endpoints ejected by passive outlier detection, by backend",
            m.ejections.clone(),
        );
        registry.register(
            "discovery_updates",
            "Endpoint sets received from discovery, by backend",
            m.updates.clone(),
        );
        registry.register(
            "discovery_errors",
            "Discovery failures, by backend",
            m.errors.clone(),
        );
        registry.register(
            "circuit_breaker_open",
            "1 while a backend's circuit breaker refuses requests, by backend",
            m.breaker_open.clone(),
        );
        registry.register(
            "circuit_breaker_trips",
            "Times a backend's circuit breaker opened, by backend",
            m.breaker_trips.clone(),
        );
        registry.register(
            "retry_budget_exhausted",
            "Retries refused because the backend's retry budget was spent, by backend",
            m.budget_exhausted.clone(),
        );
        m
    }

    /// Drops the series of a backend that a reload removed, so that dashboards do not show its
    /// last values for ever (handles still held by its dying state update nothing visible).
    pub(crate) fn forget(&self, backend: &str) {
        let b = BackendLabels {
            backend: backend.to_string(),
        };
        self.available.remove(&b);
        self.ejections.remove(&b);
        self.updates.remove(&b);
        self.errors.remove(&b);
        self.breaker_open.remove(&b);
        self.breaker_trips.remove(&b);
        self.budget_exhausted.remove(&b);
        for result in ["healthy", "unhealthy"] {
            self.checks.remove(&CheckLabels {
                backend: backend.to_string(),
                result,
            });
        }
    }

    /// The handles of `backend`.
    pub(crate) fn backend(&self, backend: &str) -> BackendStateMetrics {
        let b = || BackendLabels {
            backend: backend.to_string(),
        };
        let check = |result| CheckLabels {
            backend: backend.to_string(),
            result,
        };
        // One statement per handle: `get_or_create` returns a read guard, and a second call on the
        // same family within one expression would wait for it forever.
        let available = self.available.get_or_create(&b()).clone();
        let checks_ok = self.checks.get_or_create(&check("healthy")).clone();
        let checks_failed = self.checks.get_or_create(&check("unhealthy")).clone();
        let ejections = self.ejections.get_or_create(&b()).clone();
        let discovery_updates = self.updates.get_or_create(&b()).clone();
        let discovery_errors = self.errors.get_or_create(&b()).clone();
        let breaker_open = self.breaker_open.get_or_create(&b()).clone();
        let breaker_trips = self.breaker_trips.get_or_create(&b()).clone();
        let budget_exhausted = self.budget_exhausted.get_or_create(&b()).clone();
        BackendStateMetrics {
            breaker_open,
            breaker_trips,
            budget_exhausted,
            available,
            checks_ok,
            checks_failed,
            ejections,
            discovery_updates,
            discovery_errors,
        }
    }
}
