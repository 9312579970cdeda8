//! Request flow, step 8: a backend as one snapshot sees it — its settings from the config, and its
//! run-time state (`state::BackendState`: the endpoint set discovery and health keep current, which
//! outlives reloads) — and the pick of an endpoint from that set by the balancer, honouring health,
//! ejections, panic mode, slow start, consistent hashing and sticky cookies.

use super::balancer::{self, hash_key, Balancer, Candidate};
use crate::error::{ErrorKind, ProxyError};
use crate::state::breaker::{Limit, Slot};
use gatehouse_config::{Backend, BackendProtocol, HashOn, LbPolicy, StickyCookie};
use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use crate::state::endpoint::{EndpointRt, EndpointShared};

impl Candidate for Arc<EndpointRt> {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }
    fn available(&self) -> bool {
        // In panic mode every endpoint takes traffic, whatever its health.
        self.panic.load(Ordering::Relaxed) || self.shared.available()
    }
    fn key(&self) -> u64 {
        self.key
    }
}

/// The endpoint set and its balancer; swapped whole.
pub struct EndpointSet {
    /// Endpoints.
    pub endpoints: Vec<Arc<EndpointRt>>,
    pub(crate) balancer: Balancer,
}

impl EndpointSet {
    /// Builds the set and its balancer.
    pub fn new(endpoints: Vec<Arc<EndpointRt>>, policy: LbPolicy) -> Self {
        let balancer = Balancer::new(&policy, &endpoints);
        EndpointSet {
            endpoints,
            balancer,
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
    /// The request key of `ConsistentHash`.
    pub(crate) hash_on: Option<HashOn>,
    /// Cookie-based affinity.
    pub(crate) sticky: Option<StickyCookie>,
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
    /// Circuit-breaker limits, when configured (the counts are in `state.breaker`).
    pub(crate) breaker: Option<gatehouse_config::CircuitBreaker>,
    /// TLS to the endpoints (`tls`), when configured.
    pub(crate) tls: Option<Arc<super::transport::TlsConnect>>,
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
            hash_on: b.hash_on.clone(),
            sticky: b.sticky.clone(),
            connect_timeout: b.connect_timeout,
            idle_timeout: b.idle_timeout,
            read_timeout: b.read_timeout,
            connect_errors,
            outlier: b.outlier_detection.clone(),
            slow_start_ms: b.slow_start.map(|d| d.as_millis().max(1) as u64),
            breaker: b.circuit_breaker,
            tls: None,
        }
    }

    /// The same backend with its upstream TLS settings read (CA bundle, client certificate);
    /// the error names the backend and the file.
    pub(crate) fn with_tls(mut self, b: &Backend) -> Result<Self, String> {
        if let Some(t) = &b.tls {
            let connect = super::transport::TlsConnect::new(t, b.protocol)
                .map_err(|e| format!("Backend {}: {e}", b.id))?;
            self.tls = Some(Arc::new(connect));
        }
        Ok(self)
    }

    /// A unit of the circuit breaker's `limit`: `None` when the backend has no breaker, a
    /// `circuit_open` error when the limit is reached.
    pub(crate) fn breaker_slot(&self, limit: Limit) -> Result<Option<Slot>, ProxyError> {
        let Some(limits) = &self.breaker else {
            return Ok(None);
        };
        match self.state.breaker.acquire(limits, limit) {
            Some(slot) => Ok(Some(slot)),
            None => Err(ProxyError::new(
                ErrorKind::CircuitOpen,
                format!(
                    "backend {} is overloaded: its circuit breaker is open ({} reached)",
                    self.id,
                    limit.field()
                ),
            )),
        }
    }

    /// Picks an endpoint with no request key (round robin for `ConsistentHash`), or `None` when
    /// none is available.
    pub fn pick(&self) -> Option<Arc<EndpointRt>> {
        let set = self.state.endpoints.load();
        let idx = set.balancer.pick(&set.endpoints, None)?;
        self.ramp(&set, idx)
    }

    /// Picks for a request: the endpoint its affinity cookie names while that one is available,
    /// else by the policy over the request's hash key. Also says whether the response must set
    /// the affinity cookie (`affinity_cookie`): the backend is sticky and the request was not
    /// already pinned there (a pinned endpoint that went away is replaced and the cookie
    /// rewritten). A flag rather than the header value: it is kept across the upstream exchange,
    /// in every request's future.
    pub(crate) fn pick_for(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        client: IpAddr,
    ) -> Option<(Arc<EndpointRt>, bool)> {
        if self.sticky.is_none() && self.hash_on.is_none() {
            return self.pick().map(|ep| (ep, false));
        }
        let set = self.state.endpoints.load();
        let pinned = self
            .sticky
            .as_ref()
            .and_then(|s| balancer::pinned(s, headers));
        let ep = match pinned.and_then(|k| set.balancer.find_pinned(&set.endpoints, k)) {
            Some(i) => set.endpoints[i].clone(),
            None => {
                let hash =
                    (self.hash_on.as_ref()).and_then(|on| hash_key(on, headers, query, client));
                let idx = set.balancer.pick(&set.endpoints, hash)?;
                // A hashed key keeps its endpoint; slow start applies to unkeyed picks only.
                if hash.is_some() {
                    set.endpoints[idx].clone()
                } else {
                    self.ramp(&set, idx)?
                }
            }
        };
        let set_cookie = self.sticky.is_some() && pinned != Some(ep.key);
        Some((ep, set_cookie))
    }

    /// The `Set-Cookie` value that pins a client to `ep`, for a sticky backend.
    pub(crate) fn affinity_cookie(&self, ep: &EndpointRt) -> Option<HeaderValue> {
        (self.sticky.as_ref()).map(|s| balancer::set_cookie(s, ep.key))
    }

    /// The balancer's choice `idx`, unless slow start turns it away: then the balancer chooses
    /// again (a few times), so the turned-away share is spread by weight over the others rather
    /// than handed to the endpoint listed after it; the choice itself when every try is ramping.
    fn ramp(&self, set: &EndpointSet, idx: usize) -> Option<Arc<EndpointRt>> {
        let eps = &set.endpoints;
        if self.slow_start_ms.is_none() || !self.slowed(&eps[idx]) {
            return Some(eps[idx].clone());
        }
        (0..4)
            .filter_map(|_| set.balancer.pick(eps, None))
            .find(|&i| i != idx && !self.slowed(&eps[i]))
            .map_or_else(|| Some(eps[idx].clone()), |i| Some(eps[i].clone()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::endpoint::Source;
    use crate::upstream::balancer::endpoint_key;
    use std::sync::atomic::AtomicBool;

    fn ep(addr: &str, weight: u32) -> Arc<EndpointRt> {
        Arc::new(EndpointRt {
            address: addr.into(),
            resolved: addr.parse().ok(),
            weight,
            key: endpoint_key("default/b", addr),
            panic: Arc::new(AtomicBool::new(false)),
            source: Source::Static,
            shared: Arc::new(EndpointShared::new(0)),
        })
    }

    #[test]
    fn endpoint_set_balances_by_weight() {
        let set = EndpointSet::new(
            vec![ep("a:1", 5), ep("b:1", 1), ep("c:1", 1)],
            LbPolicy::RoundRobin,
        );
        let mut count = [0; 3];
        for _ in 0..70 {
            count[set.balancer.pick(&set.endpoints, None).unwrap()] += 1;
        }
        assert_eq!(count, [50, 10, 10]);
    }

    #[test]
    fn panic_mode_makes_unhealthy_endpoints_candidates_again() {
        let e = ep("a:1", 1);
        e.shared
            .set_health(crate::state::endpoint::Health::Unhealthy);
        assert!(!e.available());
        e.panic.store(true, Ordering::Relaxed);
        assert!(e.available());
    }

    fn sticky_hashed_backend() -> BackendRt {
        backend_of(LbPolicy::ConsistentHash, 5, None)
    }

    fn backend_of(policy: LbPolicy, n: usize, slow_start: Option<Duration>) -> BackendRt {
        let sticky = policy == LbPolicy::ConsistentHash;
        let b = Backend {
            id: gatehouse_config::ObjectId {
                namespace: "default".into(),
                name: "users".into(),
            },
            protocol: BackendProtocol::HTTP1,
            endpoints: (1..=n)
                .map(|i| gatehouse_config::Endpoint {
                    address: format!("10.0.0.{i}:80"),
                    weight: 1,
                })
                .collect(),
            lb_policy: policy,
            hash_on: sticky.then(|| HashOn::Header("x-user-id".into())),
            sticky: sticky.then(|| StickyCookie {
                name: "gh-affinity".into(),
                ttl: Duration::from_secs(60),
            }),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            health_check: None,
            outlier_detection: None,
            panic_threshold: 50,
            slow_start,
            discovery: None,
            circuit_breaker: None,
            tls: None,
        };
        let metrics = crate::telemetry::metrics::Metrics::new();
        let state = crate::state::BackendState::new(
            &b,
            Default::default(),
            None,
            metrics.upstream.backend("default/users"),
        );
        BackendRt::new(&b, Arc::new(state), Counter::default())
    }

    #[test]
    fn slow_start_admits_a_joining_endpoint_for_a_tenth_of_its_picks_at_first() {
        let mut backend = sticky_hashed_backend();
        backend.slow_start_ms = Some(60_000);
        let e = ep("a:1", 1);
        assert!(
            !backend.slowed(&e),
            "an endpoint that never restarted is not ramping"
        );
        e.shared.start_slow_start();
        let turned_away = (0..2000).filter(|_| backend.slowed(&e)).count();
        assert!((1700..1900).contains(&turned_away), "{turned_away} of 2000");
        backend.slow_start_ms = None;
        assert!(!backend.slowed(&e), "no ramp without `slowStart`");
    }

    #[test]
    fn slow_start_spreads_the_turned_away_share_over_the_others() {
        let backend = backend_of(LbPolicy::RoundRobin, 3, Some(Duration::from_secs(60)));
        // The third endpoint has just come back: it takes about a tenth of its picks.
        backend.state.current().endpoints[2]
            .shared
            .start_slow_start();
        let mut count = [0usize; 3];
        for _ in 0..3000 {
            let ep = backend.pick().unwrap();
            count[ep.address.as_bytes()[7] as usize - b'1' as usize] += 1;
        }
        // Not the first endpoint (listed after it) taking all it turns away.
        let (a, b) = (count[0] as f64, count[1] as f64);
        assert!((a / (a + b) - 0.5).abs() < 0.05, "{count:?}");
        assert!(count[2] < 300, "{count:?}");
    }

    #[test]
    fn pick_for_hashes_the_request_key_and_pins_with_a_cookie() {
        let backend = sticky_hashed_backend();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-user-id", HeaderValue::from_static("u-42"));
        let (first, set) = backend.pick_for(&headers, None, client).unwrap();
        let cookie = set.then(|| backend.affinity_cookie(&first)).flatten();
        for _ in 0..10 {
            let (again, _) = backend.pick_for(&headers, None, client).unwrap();
            assert_eq!(again.address, first.address);
        }
        // The cookie names the endpoint; sent back, it wins over the hash and is not set again.
        let cookie = cookie.expect("a sticky backend sets its cookie");
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let other = backend
            .state
            .current()
            .endpoints
            .iter()
            .find(|e| e.key != first.key)
            .unwrap()
            .clone();
        let mut pinned = headers.clone();
        let value = format!("gh-affinity={}", balancer::sticky_value(other.key));
        pinned.insert(http::header::COOKIE, HeaderValue::try_from(value).unwrap());
        let (chosen, set_again) = backend.pick_for(&pinned, None, client).unwrap();
        assert_eq!(chosen.address, other.address);
        assert!(!set_again);
        assert!(pair.starts_with("gh-affinity="));

        // A pinned endpoint that goes unhealthy is replaced and the cookie rewritten.
        other
            .shared
            .set_health(crate::state::endpoint::Health::Unhealthy);
        let (moved, rewritten) = backend.pick_for(&pinned, None, client).unwrap();
        assert_ne!(moved.address, other.address);
        assert!(rewritten);
    }
}
