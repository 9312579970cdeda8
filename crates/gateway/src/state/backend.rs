//! Run-time state, per backend: the current endpoint set and everything about the backend that
//! must outlive a reload — per-address endpoint state, balancer position, what discovery last
//! reported, and the tasks (discovery, health checks) that keep it current. Snapshots refer to it
//! by `Arc`; the `StateStore` decides at each reload whether a backend keeps it.

use super::endpoint::{EndpointRt, EndpointShared, Source};
use crate::discovery::{Discovered, Sink};
use crate::upstream::backend::EndpointSet;
use arc_swap::ArcSwap;
use gatehouse_config::Backend;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

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
pub(crate) struct OwnedTask(tokio::task::JoinHandle<()>);

impl Drop for OwnedTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The state of one backend that outlives reloads.
pub struct BackendState {
    /// `namespace/name`.
    pub(crate) id: Arc<str>,
    /// Where the endpoints come from (`static`, `dns`, ...).
    pub(crate) provider: &'static str,
    /// The current endpoints; replaced whole by discovery, read once per request.
    pub(crate) endpoints: ArcSwap<EndpointSet>,
    /// Round-robin position, kept across reloads so a reload does not restart the cycle.
    pub(crate) rr: AtomicUsize,
    /// Per-address state, by address: reused when an address stays in the set.
    shared: Mutex<HashMap<Arc<str>, Arc<EndpointShared>>>,
    /// Source of unique pool keys (shared by the whole store).
    next_key: Arc<AtomicU64>,
    status: Mutex<Status>,
    tasks: Mutex<Vec<OwnedTask>>,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl BackendState {
    /// New state for `spec`, seeded with the per-address state of `previous` (same backend, same
    /// protocol) so that health and pooled connections of addresses that stay are kept.
    pub(crate) fn new(
        spec: &Backend,
        next_key: Arc<AtomicU64>,
        previous: Option<&BackendState>,
    ) -> Self {
        let seeded = previous
            .map(|p| p.shared.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        let state = BackendState {
            id: spec.id.to_string().into(),
            provider: "static",
            endpoints: ArcSwap::from_pointee(EndpointSet::new(Vec::new())),
            rr: AtomicUsize::new(fastrand::usize(..1024)),
            shared: Mutex::new(seeded),
            next_key,
            status: Mutex::new(Status::default()),
            tasks: Mutex::new(Vec::new()),
        };
        let statics = spec.endpoints.iter().map(|e| {
            (
                Arc::<str>::from(e.address.as_str()),
                e.weight,
                Source::Static,
            )
        });
        state.replace(statics);
        state
    }

    /// The current endpoint set (for tests and the admin API; requests load it in place).
    pub fn current(&self) -> Arc<EndpointSet> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoint set; per-address state is kept for addresses that stay and
    /// forgotten for those that leave.
    fn replace(&self, endpoints: impl Iterator<Item = (Arc<str>, u32, Source)>) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = HashMap::with_capacity(shared.len());
        let list: Vec<Arc<EndpointRt>> = endpoints
            .map(|(address, weight, source)| {
                let s = shared
                    .remove(&address)
                    .or_else(|| kept.get(&address).cloned())
                    .unwrap_or_else(|| {
                        Arc::new(EndpointShared::new(
                            self.next_key.fetch_add(1, Ordering::Relaxed),
                        ))
                    });
                kept.insert(address.clone(), s.clone());
                Arc::new(EndpointRt {
                    resolved: address.parse().ok(),
                    address,
                    weight: weight.max(1),
                    source,
                    shared: s,
                })
            })
            .collect();
        *shared = kept;
        drop(shared);
        self.endpoints.store(Arc::new(EndpointSet::new(list)));
    }

    /// Hands a task to this state: it stops when the state goes.
    pub(crate) fn own(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(OwnedTask(task));
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
            "endpoints": endpoints,
        })
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
        let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_update = Some(now());
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
        let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
        status.errors += 1;
        status.last_error = Some((error, now()));
    }
}
