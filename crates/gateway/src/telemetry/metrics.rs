//! Request flow, first and last step: Prometheus metrics.
//!
//! Label sets are resolved once per snapshot (per route/backend pair) and the handles kept in the
//! compiled rule, so the hot path does atomic increments, never a label lookup or a string.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    route: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    backend: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// Every metric family of the process. Lives across reloads.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    connect_errors: Family<BackendLabels, Counter>,
    active_connections: Family<ListenerLabels, Gauge>,
    connections_rejected: Family<ListenerLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    proxy_errors: Family<ErrorLabels, Counter>,
    config_info: Family<VersionLabels, Gauge>,
    retries: Family<PairLabels, Counter>,
    tls_reload_errors: Family<ListenerLabels, Counter>,
    /// Health, ejection and discovery families.
    pub(crate) upstream: super::upstream_metrics::UpstreamMetrics,
    /// Passed-through connection and tunnel families.
    pub(crate) streams: super::stream_metrics::StreamMetrics,
    /// Rate limit families.
    pub(crate) policy: super::policy_metrics::PolicyMetrics,
    /// Rollout families.
    pub(crate) rollout: super::rollout::RolloutMetrics,
    /// Mirror (shadow traffic) family.
    pub(crate) mirror: super::mirror_metrics::MirrorMetrics,
    /// Final gRPC statuses of gRPC calls.
    grpc: super::grpc_metrics::GrpcMetrics,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Handles for one (route, backend) pair: a counter per status class, the route's histogram, and
/// the route's proxy-error counters for failures found after the response head went out (a
/// stalled or broken upstream body, a client that left), resolved on first use.
#[derive(Clone)]
pub struct RequestMetrics {
    // Series are created on first use, not when a snapshot is built: `/metrics` shows no series
    // that never had a value, and a config with thousands of routes holds no idle ones.
    by_class: [std::sync::OnceLock<Counter>; 5],
    duration: std::sync::OnceLock<Histogram>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    backend: String,
    late_errors: Family<ErrorLabels, Counter>,
    route: String,
    late_counters: LazyCounters,
    retries: Family<PairLabels, Counter>,
    retry_counter: std::sync::OnceLock<Counter>,
    grpc: super::grpc_metrics::GrpcCounters,
    /// The sample a Rollout's analysis reads, on the rule a Rollout drives only.
    pub(crate) rollout: Option<Arc<super::rollout::Sample>>,
}

/// One counter per error kind, each resolved on first use. The array itself is allocated on the
/// first error: most routes never see one, and the empty slots inline cost 16 bytes a kind a handle,
/// three handles a rule, at 10,000 rules.
#[derive(Clone, Default)]
struct LazyCounters(
    std::sync::OnceLock<Box<[std::sync::OnceLock<Counter>; crate::error::ErrorKind::COUNT]>>,
);

impl LazyCounters {
    /// The counter of `kind`, made by `make` on its first use.
    fn get(&self, kind: crate::error::ErrorKind, make: impl FnOnce() -> Counter) -> &Counter {
        self.0.get_or_init(Default::default)[kind as usize].get_or_init(make)
    }
}

impl RequestMetrics {
    /// Counts a finished request.
    #[inline]
    pub fn record(&self, status: u16, seconds: f64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: self.route.clone(),
                        backend: self.backend.clone(),
                        status_class: CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        self.duration
            .get_or_init(|| {
                self.durations
                    .get_or_create(&RouteLabels {
                        route: self.route.clone(),
                    })
                    .clone()
            })
            .observe(seconds);
        if let Some(sample) = &self.rollout {
            sample.record(status, seconds);
        }
    }

    /// Counts a retry (an attempt after the first) to this route's backend.
    pub(crate) fn retry(&self) {
        self.retry_counter
            .get_or_init(|| {
                self.retries
                    .get_or_create(&PairLabels {
                        route: self.route.clone(),
                        backend: self.backend.clone(),
                    })
                    .clone()
            })
            .inc();
    }

    /// Counts a gRPC call that ended with `code` (its `grpc-status` value).
    pub(crate) fn grpc_status(&self, code: &[u8]) {
        self.grpc.inc(&self.route, &self.backend, code);
    }

    /// Counts a failure that cut a response body short.
    pub(crate) fn late_error(&self, kind: crate::error::ErrorKind) {
        self.late_counters
            .get(kind, || {
                self.late_errors
                    .get_or_create(&ErrorLabels {
                        route: self.route.clone(),
                        kind: kind.as_str(),
                    })
                    .clone()
            })
            .inc();
    }
}

/// The proxy-error counters of one route, each resolved on its first use, so an error response
/// (a 404 flood, say) costs one atomic increment rather than a label lookup.
pub struct ErrorCounters {
    route: String,
    counters: LazyCounters,
}

impl ErrorCounters {
    /// Counters for `route` (`none` for requests no route matched).
    pub fn new(route: &str) -> Self {
        ErrorCounters {
            route: route.to_string(),
            counters: Default::default(),
        }
    }

    /// Counts one error of `kind`.
    pub fn inc(&self, metrics: &Metrics, kind: crate::error::ErrorKind) {
        self.counters
            .get(kind, || metrics.proxy_errors(&self.route, kind))
            .inc();
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Metrics {
    /// Registers every family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let connect_errors = Family::<BackendLabels, Counter>::default();
        let active_connections = Family::<ListenerLabels, Gauge>::default();
        let connections_rejected = Family::<ListenerLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let proxy_errors = Family::<ErrorLabels, Counter>::default();
        let config_info = Family::<VersionLabels, Gauge>::default();
        let retries = Family::<PairLabels, Counter>::default();
        let tls_reload_errors = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "tls_reload_errors",
            "Certificate or key files of a listener that changed but could not be loaded (the old certificate stays), by listener",
            tls_reload_errors.clone(),
        );
        registry.register(
            "retries",
            "Attempts after the first a request made, by route and backend",
            retries.clone(),
        );
        registry.register(
            "requests",
            "Requests served, by route, backend and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request received to response body sent, by route",
            duration.clone(),
        );
        registry.register(
            "upstream_connect_errors",
            "Failed connection attempts to upstream endpoints, by backend",
            connect_errors.clone(),
        );
        registry.register(
            "active_connections",
            "Downstream connections open now, by listener",
            active_connections.clone(),
        );
        registry.register(
            "connections_rejected",
            "Downstream connections closed at accept because the listener was at limits.maxConnections",
            connections_rejected.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        registry.register(
            "proxy_errors",
            "Errors the proxy answered itself, by route and kind",
            proxy_errors.clone(),
        );
        registry.register(
            "config_info",
            "The configuration version being served (value 1)",
            config_info.clone(),
        );
        let upstream = super::upstream_metrics::UpstreamMetrics::register(&mut registry);
        let streams = super::stream_metrics::StreamMetrics::register(&mut registry);
        let policy = super::policy_metrics::PolicyMetrics::register(&mut registry);
        let rollout = super::rollout::RolloutMetrics::register(&mut registry);
        let mirror = super::mirror_metrics::MirrorMetrics::register(&mut registry);
        let grpc = super::grpc_metrics::GrpcMetrics::register(&mut registry);
        Arc::new(Metrics {
            policy,
            rollout,
            mirror,
            grpc,
            upstream,
            streams,
            registry,
            requests,
            duration,
            connect_errors,
            active_connections,
            connections_rejected,
            reloads,
            proxy_errors,
            config_info,
            retries,
            tls_reload_errors,
        })
    }

    /// Handles for a route/backend pair; resolved at snapshot build time.
    pub fn request_metrics(&self, route: &str, backend: &str) -> RequestMetrics {
        RequestMetrics {
            by_class: Default::default(),
            duration: Default::default(),
            requests: self.requests.clone(),
            durations: self.duration.clone(),
            backend: backend.to_string(),
            late_errors: self.proxy_errors.clone(),
            route: route.to_string(),
            late_counters: Default::default(),
            retries: self.retries.clone(),
            retry_counter: Default::default(),
            grpc: self.grpc.counters(),
            rollout: None,
        }
    }

    /// The connect-error counter of a backend.
    pub fn connect_errors(&self, backend: &str) -> Counter {
        self.connect_errors
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
            })
            .clone()
    }

    /// The active-connection gauge of a listener.
    pub fn active_connections(&self, listener: &str) -> Gauge {
        self.active_connections
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .clone()
    }

    /// The counter of connections a listener refused at its connection limit.
    pub fn connections_rejected(&self, listener: &str) -> Counter {
        self.connections_rejected
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .clone()
    }

    /// The counter of failed certificate reloads of a listener.
    pub(crate) fn tls_reload_errors(&self, listener: &str) -> Counter {
        self.tls_reload_errors
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .clone()
    }

    /// The counter of a proxy error kind on a route (`none` when no route matched).
    pub fn proxy_errors(&self, route: &str, kind: crate::error::ErrorKind) -> Counter {
        self.proxy_errors
            .get_or_create(&ErrorLabels {
                route: route.to_string(),
                kind: kind.as_str(),
            })
            .clone()
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Marks `version` as the one served.
    pub fn set_version(&self, old: Option<&str>, version: &str) {
        if let Some(old) = old {
            self.config_info.remove(&VersionLabels {
                version: old.to_string(),
            });
        }
        self.config_info
            .get_or_create(&VersionLabels {
                version: version.to_string(),
            })
            .set(1);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
