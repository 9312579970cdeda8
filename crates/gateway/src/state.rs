//! Config flow, after validation: the run-time state that outlives reloads, keyed by object id.
//! Snapshots refer to it by `Arc` and own none of it. A reload is a diff: every backend whose
//! endpoint source (protocol, static endpoints, discovery) is unchanged keeps its state — endpoint
//! set, health, ejections, balancer position, discovery tasks — whatever else changed around it;
//! a backend whose source changed gets new state seeded with the per-address state of the old one.

pub(crate) mod auth_cache;
pub(crate) mod backend;
pub(crate) mod breaker;
pub(crate) mod budget;
pub(crate) mod endpoint;
pub(crate) mod policy;
pub(crate) mod rollout;

use crate::discovery::registration::{self, Registry};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::upstream_metrics::UpstreamMetrics;
pub use backend::BackendState;
use backend::OwnedTask;
use gatehouse_config::{Backend, Config, ObjectId};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Milliseconds on the state clock (monotonic, since the first call in this process). Ejection
/// deadlines and slow-start times are kept in it so that they fit in an atomic.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Starts at 1 so that 0 can mean "never" in atomics.
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Whether two versions of a backend draw their endpoints from the same place.
fn same_source(a: &Backend, b: &Backend) -> bool {
    a.protocol == b.protocol && a.endpoints == b.endpoints && a.discovery == b.discovery
}

/// The states a new config will use, decided but not yet in force (a reload can still fail).
pub struct StatePlan {
    backends: HashMap<ObjectId, (Backend, Arc<BackendState>)>,
    metrics: UpstreamMetrics,
    /// Rate limit buckets and the Redis store.
    pub(crate) policies: policy::PolicyPlan,
    /// Rollout states.
    pub(crate) rollouts: rollout::RolloutPlan,
}

impl StatePlan {
    /// The state of a backend of the planned config.
    pub fn backend(&self, id: &ObjectId) -> Option<&Arc<BackendState>> {
        self.backends.get(id).map(|(_, s)| s)
    }
}

/// Every backend's state, as of the config in force.
#[derive(Default)]
pub struct StateStore {
    backends: Mutex<HashMap<ObjectId, (Backend, Arc<BackendState>)>>,
    next_key: Arc<AtomicU64>,
    policies: policy::PolicyStore,
    /// Rollout states, by Rollout id.
    pub(crate) rollouts: rollout::RolloutStore,
}

impl StateStore {
    /// Decides which state each backend of `config` uses: the current one when its source is
    /// unchanged, otherwise new state. Nothing changes until `commit`.
    pub fn plan(&self, config: &Config, metrics: &Metrics) -> StatePlan {
        let current = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let fresh = |previous| {
                    let m = metrics.upstream.backend(&b.id.to_string());
                    Arc::new(BackendState::new(b, self.next_key.clone(), previous, m))
                };
                let state = match current.get(&b.id) {
                    Some((old, state)) if same_source(old, b) => state.clone(),
                    Some((old, state)) if old.protocol == b.protocol => fresh(Some(&**state)),
                    _ => fresh(None),
                };
                (b.id.clone(), (b.clone(), state))
            })
            .collect();
        StatePlan {
            backends,
            metrics: metrics.upstream.clone(),
            policies: self.policies.plan(config),
            rollouts: self.rollouts.plan(config, metrics),
        }
    }

    /// Puts a plan in force: removed backends' state is released (their tasks stop once no
    /// snapshot refers to them any more) and their metric series dropped.
    pub fn commit(&self, plan: &StatePlan) {
        let mut current = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let removed: Vec<ObjectId> = (current.keys())
            .filter(|id| !plan.backends.contains_key(*id))
            .cloned()
            .collect();
        *current = plan.backends.clone();
        drop(current);
        self.policies.commit(&plan.policies);
        self.rollouts.commit(&plan.rollouts);
        for id in removed {
            plan.metrics.forget(&id.to_string());
        }
        for (spec, state) in plan.backends.values() {
            state.set_policy(spec.lb_policy);
            state.set_panic_threshold(spec.panic_threshold);
            start_tasks(spec, state);
        }
    }
}

/// Starts (or keeps, or stops) the control-plane tasks `spec` asks for on the control runtime.
fn start_tasks(spec: &Backend, state: &Arc<BackendState>) {
    let control = crate::runtime::control();
    let health = spec.health_check.clone();
    // The TLS settings are part of the checker's identity: changing them restarts it.
    let key = health.as_ref().map(|h| format!("{h:?}{:?}", spec.tls));
    state.ensure_task("health", key, || {
        let (weak, protocol) = (Arc::downgrade(state), spec.protocol);
        let h = health.clone().expect("a spec when a task is asked for");
        let tls = crate::upstream::transport::TlsConnect::for_checks(spec);
        Box::new(OwnedTask(
            control.spawn(crate::health::active::run(weak, h, protocol, tls)),
        ))
    });
    // The source is part of the state's identity, so a running provider is never replaced here.
    if spec.discovery.is_none() && crate::discovery::static_names::has_names(&spec.endpoints) {
        state.ensure_task("discovery", Some(String::new()), || {
            let sink = state.sink(endpoint::Source::Static);
            let task = crate::discovery::static_names::run(spec.endpoints.clone(), sink);
            Box::new(OwnedTask(control.spawn(task)))
        });
    }
    if let Some(d) = &spec.discovery {
        state.ensure_task("discovery", Some(String::new()), || {
            let sink = state.sink(backend::source_of(d));
            let _entered = control.enter();
            match d {
                gatehouse_config::Discovery::Registration { ttl } => {
                    let registry = Arc::new(Registry::new(*ttl, sink));
                    registry.adopt(state.take_inherited_leases());
                    let task = control.spawn(registration::run(Arc::downgrade(&registry)));
                    let _ = state.registry.set(registry);
                    Box::new(OwnedTask(task))
                }
                other => Box::new(crate::discovery::spawn(other, sink)),
            }
        });
    }
    // Ejections end by the clock, not by an event: a sweep notices and recounts availability.
    let sweep = spec.outlier_detection.as_ref().map(|_| String::new());
    state.ensure_task("outlier", sweep, || {
        let weak = Arc::downgrade(state);
        Box::new(OwnedTask(control.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { return };
                state.refresh_availability();
            }
        })))
    });
}
