//! Run-time state, per backend: the current endpoint set and everything about the backend that
//! must outlive a reload — per-address endpoint state, balancer position, what discovery last
//! reported, and the tasks (discovery, health checks) that keep it current. Snapshots refer to it
//! by `Arc`; the `StateStore` decides at each reload whether a backend keeps it.

use super::endpoint::{EndpointRt, EndpointShared, Source};
use crate::discovery::{Discovered, Sink};
use crate::telemetry::upstream_metrics::BackendStateMetrics;
use crate::upstream::backend::EndpointSet;
use crate::upstream::balancer::endpoint_key;
use arc_swap::ArcSwap;
use gatehouse_config::{Backend, LbPolicy};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// What discovery last said, for `GET /backends`.
#[derive(Default)]
struct Status {
    /// When the endpoint set last changed (RFC 3339).
    last_update: Option<String>,
    /// The provider's last failure and when it happened; cleared by the next good update.
    last_error: Option<(String, String)>,
    /// Failures reported so far.
    errors: u64,
}

/// A task owned by a backend's state, stopped when the state is dropped.
pub(crate) struct OwnedTask(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whatever keeps a control-plane task alive: dropping it stops the task.
pub(crate) type TaskGuard = Box<dyn std::any::Any + Send + Sync>;

/// The state of one backend that outlives reloads.
pub struct BackendState {
    /// `namespace/name`.
    pub(crate) id: Arc<str>,
    /// Where the endpoints come from (`static`, `dns`, ...).
    pub(crate) provider: &'static str,
    /// The current endpoints; replaced whole by discovery, read once per request.
    pub(crate) endpoints: ArcSwap<EndpointSet>,
    /// The balancing policy the set's balancer was built for (it may change on a reload that
    /// keeps the endpoints).
    policy: Mutex<LbPolicy>,
    /// Per-address state, by address: reused when an address stays in the set.
    shared: Mutex<HashMap<Arc<str>, Arc<EndpointShared>>>,
    /// Source of unique pool keys (shared by the whole store).
    next_key: Arc<AtomicU64>,
    status: Mutex<Status>,
    /// Control-plane tasks by role (`health`, `outlier`, `discovery`), each with the spec it runs.
    tasks: Mutex<HashMap<&'static str, (String, TaskGuard)>>,
    /// The leases of a `registration` backend, for the admin API.
    pub(crate) registry: std::sync::OnceLock<Arc<crate::discovery::registration::Registry>>,
    /// Leases of the previous state's registry (a reload changed the ttl), for this state's.
    inherited_leases: Mutex<Vec<(String, Discovered, tokio::time::Instant)>>,
    /// Fewer endpoints available than `panic_threshold` percent: balance over all of them.
    pub(crate) panic: Arc<AtomicBool>,
    panic_threshold: AtomicU32,
    pub(crate) metrics: BackendStateMetrics,
    /// Circuit-breaker counts; carried over from the previous state, as live requests hold them.
    pub(crate) breaker: Arc<super::breaker::Breaker>,
    /// Retry budget window; carried over from the previous state.
    pub(crate) budget: Arc<super::budget::RetryBudget>,
}

impl BackendState {
    /// New state for `spec`, seeded with the per-address state of `previous` (same backend, same
    /// protocol) so that health and pooled connections of addresses that stay are kept.
    pub(crate) fn new(
        spec: &Backend,
        next_key: Arc<AtomicU64>,
        previous: Option<&BackendState>,
        metrics: BackendStateMetrics,
    ) -> Self {
        let seeded = previous
            .map(|p| p.shared.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        // A registration backend whose ttl changed keeps its leases: its members would otherwise
        // vanish when their lease was next due.
        let inherited = match (&spec.discovery, previous.and_then(|p| p.registry.get())) {
            (Some(gatehouse_config::Discovery::Registration { .. }), Some(r)) => r.leases(),
            _ => Vec::new(),
        };
        let state = BackendState {
            id: spec.id.to_string().into(),
            provider: spec.discovery.as_ref().map_or("static", provider_name),
            endpoints: ArcSwap::from_pointee(EndpointSet::new(Vec::new(), spec.lb_policy)),
            policy: Mutex::new(spec.lb_policy),
            shared: Mutex::new(seeded),
            next_key,
            status: Mutex::new(Status::default()),
            tasks: Mutex::new(HashMap::new()),
            registry: std::sync::OnceLock::new(),
            inherited_leases: Mutex::new(Vec::new()),
            panic: Arc::new(AtomicBool::new(false)),
            panic_threshold: AtomicU32::new(spec.panic_threshold),
            breaker: previous.map_or_else(
                || {
                    let (open, trips) = (&metrics.breaker_open, &metrics.breaker_trips);
                    Arc::new(super::breaker::Breaker::new(open.clone(), trips.clone()))
                },
                |p| p.breaker.clone(),
            ),
            budget: previous.map_or_else(Default::default, |p| p.budget.clone()),
            metrics,
        };
        let statics = spec.endpoints.iter().map(|e| {
            (
                Arc::<str>::from(e.address.as_str()),
                e.weight,
                Source::Static,
            )
        });
        // A discovery backend whose source changed serves the last set until its new provider
        // answers (a provider that fails keeps the last set too): no 503s in between. A
        // registration backend serves what its leases name, inherited or none (it publishes
        // only when they change).
        let carried: Vec<(Arc<str>, u32, Source)> = match (&spec.discovery, previous) {
            (Some(gatehouse_config::Discovery::Registration { .. }), _) => (inherited.iter())
                .map(|(_, e, _)| (e.address.to_string().into(), e.weight, Source::Registration))
                .collect(),
            (Some(_), Some(p)) => (p.current().endpoints.iter())
                .map(|e| (e.address.clone(), e.weight, e.source))
                .collect(),
            _ => Vec::new(),
        };
        state.replace(statics.chain(carried));
        *state
            .inherited_leases
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = inherited;
        state
    }

    /// The leases inherited from the previous state, once, for this state's registry.
    pub(crate) fn take_inherited_leases(&self) -> Vec<(String, Discovered, tokio::time::Instant)> {
        std::mem::take(
            &mut *self
                .inherited_leases
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// The current endpoint set (for tests and the admin API; requests load it in place).
    pub fn current(&self) -> Arc<EndpointSet> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoint set; per-address state is kept for addresses that stay and
    /// forgotten for those that leave.
    fn replace(&self, endpoints: impl Iterator<Item = (Arc<str>, u32, Source)>) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        // Endpoints that join a set already serving traffic ramp up under slow start.
        let joining = !self.endpoints.load().endpoints.is_empty();
        let mut kept = HashMap::with_capacity(shared.len());
        let list: Vec<Arc<EndpointRt>> = endpoints
            .map(|(address, weight, source)| {
                let s = shared
                    .remove(&address)
                    .or_else(|| kept.get(&address).cloned())
                    .unwrap_or_else(|| {
                        let s = EndpointShared::new(self.next_key.fetch_add(1, Ordering::Relaxed));
                        if joining {
                            s.start_slow_start();
                        }
                        Arc::new(s)
                    });
                kept.insert(address.clone(), s.clone());
                Arc::new(EndpointRt {
                    resolved: address.parse().ok(),
                    key: endpoint_key(&self.id, &address),
                    panic: self.panic.clone(),
                    address,
                    weight: weight.max(1),
                    source,
                    shared: s,
                })
            })
            .collect();
        *shared = kept;
        drop(shared);
        let policy = *self.policy.lock().unwrap_or_else(|e| e.into_inner());
        self.endpoints
            .store(Arc::new(EndpointSet::new(list, policy)));
        self.refresh_availability();
    }

    /// Runs `task` in the role `role` unless a task for the same `spec` already runs there (a
    /// reload that does not change a health check keeps its checker and its streaks); `None`
    /// stops the role's task.
    pub(crate) fn ensure_task(
        &self,
        role: &'static str,
        spec: Option<String>,
        task: impl FnOnce() -> TaskGuard,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        match spec {
            None => {
                tasks.remove(role);
            }
            Some(spec) if tasks.get(role).is_some_and(|(s, _)| *s == spec) => {}
            Some(spec) => {
                tasks.insert(role, (spec, task()));
            }
        }
    }

    /// Rebuilds the balancer when a reload changed the policy but kept the endpoints.
    pub(crate) fn set_policy(&self, policy: LbPolicy) {
        let mut current = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        if *current != policy {
            *current = policy;
            let endpoints = self.endpoints.load().endpoints.clone();
            self.endpoints
                .store(Arc::new(EndpointSet::new(endpoints, policy)));
        }
    }

    /// Applies a new panic threshold (it may change without the endpoint source changing).
    pub(crate) fn set_panic_threshold(&self, percent: u32) {
        self.panic_threshold.store(percent, Ordering::Relaxed);
        self.refresh_availability();
    }

    /// Recounts the available endpoints after a health verdict, an ejection (or its end) or a new
    /// set, and decides panic mode: below the threshold, requests go to every endpoint rather than
    /// overload the few left (or fail when none is left).
    pub(crate) fn refresh_availability(&self) {
        let set = self.endpoints.load();
        let now = super::now_ms();
        let total = set.endpoints.len() as u64;
        let available = set
            .endpoints
            .iter()
            .filter(|e| {
                e.shared.health() != super::endpoint::Health::Unhealthy && !e.shared.ejected(now)
            })
            .count() as u64;
        let threshold = u64::from(self.panic_threshold.load(Ordering::Relaxed));
        let panic = threshold > 0 && total > 0 && available * 100 < threshold * total;
        if self.panic.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                tracing::warn!(
                    backend = &*self.id,
                    available,
                    total,
                    "panic mode: balancing over every endpoint"
                );
            } else {
                tracing::info!(backend = &*self.id, available, total, "panic mode over");
            }
        }
        self.metrics.available.set(available as i64);
    }

    /// Counts an active health check result.
    pub(crate) fn count_check(&self, ok: bool) {
        if ok {
            self.metrics.checks_ok.inc();
        } else {
            self.metrics.checks_failed.inc();
        }
    }

    /// Counts an outlier ejection.
    pub(crate) fn count_ejection(&self) {
        self.metrics.ejections.inc();
    }

    /// A sink for a discovery provider of this backend; it holds the state weakly, so a provider
    /// never keeps a removed backend alive.
    pub(crate) fn sink(self: &Arc<Self>, source: Source) -> Arc<dyn Sink> {
        Arc::new(StateSink {
            state: Arc::downgrade(self),
            source,
        })
    }

    /// `GET /backends` view of this backend's state.
    pub(crate) fn describe(&self, now_ms: u64) -> Value {
        let set = self.endpoints.load();
        let endpoints: Vec<Value> = set
            .endpoints
            .iter()
            .map(|e| {
                let s = &e.shared;
                json!({
                    "address": &*e.address,
                    "weight": e.weight,
                    "source": e.source,
                    "health": s.health(),
                    "ejected": s.ejected(now_ms),
                    "inFlight": s.in_flight.load(Ordering::Relaxed),
                })
            })
            .collect();
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "provider": self.provider,
            "lastUpdate": status.last_update,
            "lastError": status.last_error.as_ref().map(|(m, at)| json!({"message": m, "at": at})),
            "discoveryErrors": status.errors,
            "panic": self.panic.load(Ordering::Relaxed),
            "circuitBreaker": self.breaker.describe(),
            "endpoints": endpoints,
        })
    }
}

/// The name `GET /backends` shows for a provider.
fn provider_name(d: &gatehouse_config::Discovery) -> &'static str {
    use gatehouse_config::Discovery as D;
    match d {
        D::Dns { .. } => "dns",
        D::Srv { .. } => "dns-srv",
        D::File { .. } => "file",
        D::Etcd { .. } => "etcd",
        D::Kubernetes { .. } => "kubernetes",
        D::Registration { .. } => "registration",
    }
}

/// The endpoint source a discovery provider's endpoints carry.
pub(crate) fn source_of(d: &gatehouse_config::Discovery) -> Source {
    use gatehouse_config::Discovery as D;
    match d {
        D::Dns { .. } | D::Srv { .. } => Source::Dns,
        D::File { .. } => Source::File,
        D::Etcd { .. } => Source::Etcd,
        D::Kubernetes { .. } => Source::Kubernetes,
        D::Registration { .. } => Source::Registration,
    }
}

/// The discovery side of a backend's state.
struct StateSink {
    state: Weak<BackendState>,
    source: Source,
}

impl Sink for StateSink {
    fn update(&self, endpoints: Vec<Discovered>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let source = self.source;
        state.replace(
            endpoints
                .into_iter()
                .map(|d| (Arc::from(d.address.to_string()), d.weight, source)),
        );
        state.metrics.discovery_updates.inc();
        let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_update = Some(crate::gateway::now());
        status.last_error = None;
        tracing::info!(backend = &*state.id, "endpoints updated by discovery");
    }

    fn failed(&self, error: String) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        tracing::warn!(
            backend = &*state.id,
            "discovery failed, keeping the last endpoints: {error}"
        );
        state.metrics.discovery_errors.inc();
        let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
        status.errors += 1;
        status.last_error = Some((error, crate::gateway::now()));
    }
}
