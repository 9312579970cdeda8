//! Request flow, policy chain telemetry: requests refused by rate limits and failures of the
//! rate limit store. Handles are resolved once per compiled rule, never per request.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutePolicyLabels {
    route: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

/// The policy metric families.
#[derive(Clone)]
pub(crate) struct PolicyMetrics {
    rate_limited: Family<RoutePolicyLabels, Counter>,
    store_errors: Family<PolicyLabels, Counter>,
}

impl PolicyMetrics {
    /// Registers the families in `registry` (prefixed `gatehouse_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = PolicyMetrics {
            rate_limited: Family::default(),
            store_errors: Family::default(),
        };
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by route and policy",
            m.rate_limited.clone(),
        );
        registry.register(
            "rate_limit_store_errors",
            "Global rate limit decisions Redis could not make in time (onStoreError decided), by policy",
            m.store_errors.clone(),
        );
        m
    }

    /// `gatehouse_rate_limited_total{route, policy}`.
    pub(crate) fn rate_limited(&self, route: &str, policy: &str) -> Counter {
        let labels = RoutePolicyLabels {
            route: route.to_string(),
            policy: policy.to_string(),
        };
        self.rate_limited.get_or_create(&labels).clone()
    }

    /// `gatehouse_rate_limit_store_errors_total{policy}`.
    pub(crate) fn store_errors(&self, policy: &str) -> Counter {
        let labels = PolicyLabels {
            policy: policy.to_string(),
        };
        self.store_errors.get_or_create(&labels).clone()
    }
}
