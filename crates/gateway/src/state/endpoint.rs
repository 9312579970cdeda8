//! Run-time state, per endpoint: what a request, the balancer, health checks and outlier detection
//! share about one address of one backend. Keyed by backend + address, it outlives reloads and
//! endpoint-set changes that keep the address.

use arc_swap::ArcSwapOption;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Source {
    /// `spec.endpoints` in the manifest.
    Static,
    /// A discovery provider.
    Dns,
    /// A watched endpoint file.
    File,
    /// etcd keys.
    Etcd,
    /// Kubernetes EndpointSlices.
    Kubernetes,
    /// The admin registration API.
    Registration,
}

/// What active health checks last concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Health {
    /// Not checked (no `healthCheck`) or not yet decided: used until proven unhealthy.
    Unknown = 0,
    /// Passed `healthyThreshold` checks in a row.
    Healthy = 1,
    /// Failed `unhealthyThreshold` checks in a row: not picked (unless in panic mode).
    Unhealthy = 2,
}

impl Health {
    /// The verdict stored as `h as u8`.
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }
}

/// State of one address of one backend that outlives a snapshot.
pub struct EndpointShared {
    /// Key of this endpoint's connections in the per-thread HTTP/1 pool.
    pub pool_key: u64,
    /// Requests in flight to it (for least-request balancing and `/backends`).
    pub in_flight: AtomicUsize,
    /// The multiplexed HTTP/2 connection, when the backend speaks HTTP/2.
    /// Read without a lock on every request to an HTTP/2 backend; replaced when it closes.
    pub h2: ArcSwapOption<hyper::client::conn::http2::SendRequest<crate::proxy::body::RequestBody>>,
    health: AtomicU8,
    /// Milliseconds on the state clock until which outlier detection keeps it out; 0 = not ejected.
    pub(crate) ejected_until: AtomicU64,
    /// Consecutive failures seen by passive outlier detection.
    pub(crate) consecutive_failures: AtomicU32,
    /// How many times it has been ejected (the ejection time grows with it).
    pub(crate) ejections: AtomicU32,
    /// When it last became healthy, for slow start (state clock ms; 0 = since it joined).
    pub(crate) healthy_since: AtomicU64,
}

impl EndpointShared {
    pub(crate) fn new(pool_key: u64) -> Self {
        EndpointShared {
            pool_key,
            in_flight: AtomicUsize::new(0),
            h2: ArcSwapOption::empty(),
            health: AtomicU8::new(Health::Unknown as u8),
            ejected_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            healthy_since: AtomicU64::new(0),
        }
    }

    /// The last health verdict.
    pub(crate) fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Records a health verdict; returns the previous one.
    pub(crate) fn set_health(&self, h: Health) -> Health {
        Health::from_u8(self.health.swap(h as u8, Ordering::Relaxed))
    }

    /// Starts its slow-start ramp now (it just joined, or just became healthy again).
    pub(crate) fn start_slow_start(&self) {
        self.healthy_since.store(super::now_ms(), Ordering::Relaxed);
    }

    /// Whether a request may go to it: not unhealthy and not ejected. Costs two relaxed loads, and
    /// a clock read only while an ejection is recorded.
    #[inline]
    pub(crate) fn available(&self) -> bool {
        self.health.load(Ordering::Relaxed) != Health::Unhealthy as u8
            && (self.ejected_until.load(Ordering::Relaxed) == 0 || !self.ejected(super::now_ms()))
    }

    /// Whether outlier detection keeps it out at `now_ms` (state clock).
    pub(crate) fn ejected(&self, now_ms: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now_ms < until
    }
}

/// One endpoint of a backend's current set.
pub struct EndpointRt {
    /// `host:port` as configured or discovered.
    pub address: Arc<str>,
    /// Parsed address when the host is an IP literal; otherwise resolved at connect time.
    pub resolved: Option<SocketAddr>,
    /// Relative weight.
    pub weight: u32,
    /// Identity of (backend, address) for consistent hashing and sticky cookies.
    pub key: u64,
    /// The backend's panic flag: when set, every endpoint takes traffic whatever its health.
    pub(crate) panic: Arc<std::sync::atomic::AtomicBool>,
    /// Where it came from.
    pub(crate) source: Source,
    /// State that survives reloads and set changes.
    pub shared: Arc<EndpointShared>,
}
