//! Request flow, step 8: a backend at run time — its endpoints and the balancer that picks one.
//!
//! Endpoints sit behind an `ArcSwap` so that discovery (a later issue) can replace them through the
//! backend without rebuilding the route table. Per-endpoint state that must survive reloads (the
//! HTTP/2 connection, in-flight counts) lives in `EndpointShared`, reused by address across snapshots.

use super::balancer::{self, endpoint_key, hash_key, Balancer, Candidate};
use arc_swap::{ArcSwap, ArcSwapOption};
use gatehouse_config::{Backend, BackendProtocol, HashOn, LbPolicy, StickyCookie};
use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use std::net::{IpAddr, SocketAddr};
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
    /// Identity of (backend, address) for consistent hashing and sticky cookies (`endpoint_key`).
    pub key: u64,
    /// State that survives reloads.
    pub shared: Arc<EndpointShared>,
}

impl Candidate for Arc<EndpointRt> {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }
    fn available(&self) -> bool {
        // Health checks and outlier detection come with the endpoint-state layer.
        true
    }
    fn key(&self) -> u64 {
        self.key
    }
}

/// The endpoint set and its balancer; swapped whole.
pub struct EndpointSet {
    /// Endpoints.
    pub endpoints: Vec<Arc<EndpointRt>>,
    balancer: Balancer,
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
    /// Current endpoints.
    pub endpoints: ArcSwap<EndpointSet>,
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
                    key: endpoint_key(&b.id.to_string(), &e.address),
                    shared: shared(&e.address),
                })
            })
            .collect();
        BackendRt {
            id: b.id.to_string().into(),
            protocol: b.protocol,
            endpoints: ArcSwap::from_pointee(EndpointSet::new(endpoints, b.lb_policy)),
            policy: b.lb_policy,
            hash_on: b.hash_on.clone(),
            sticky: b.sticky.clone(),
            connect_timeout: b.connect_timeout,
            idle_timeout: b.idle_timeout,
            connect_errors,
        }
    }

    /// Picks an endpoint, or `None` when the backend has none. The request's hash key and sticky
    /// cookie are not wired yet (`balancer::hash_key`, `Balancer::find_pinned`): `ConsistentHash`
    /// falls back to round robin here.
    pub fn pick(&self) -> Option<Arc<EndpointRt>> {
        let set = self.endpoints.load();
        let idx = set.balancer.pick(&set.endpoints, None)?;
        Some(set.endpoints[idx].clone())
    }

    /// Picks for a request: the endpoint its affinity cookie names while that one is available,
    /// else by the policy over the request's hash key. Also returns the `Set-Cookie` value for the
    /// response when the backend is sticky and the request was not already pinned there.
    #[allow(
        dead_code,
        reason = "the request path calls it once the endpoint-state layer lands"
    )]
    pub(crate) fn pick_for(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        client: IpAddr,
    ) -> Option<(Arc<EndpointRt>, Option<HeaderValue>)> {
        let set = self.endpoints.load();
        let pinned = self
            .sticky
            .as_ref()
            .and_then(|s| balancer::pinned(s, headers));
        let idx = match pinned.and_then(|k| set.balancer.find_pinned(&set.endpoints, k)) {
            Some(i) => i,
            None => {
                let hash =
                    (self.hash_on.as_ref()).and_then(|on| hash_key(on, headers, query, client));
                set.balancer.pick(&set.endpoints, hash)?
            }
        };
        let ep = set.endpoints[idx].clone();
        let cookie = (self.sticky.as_ref())
            .filter(|_| pinned != Some(ep.key))
            .map(|s| balancer::set_cookie(s, ep.key));
        Some((ep, cookie))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: &str, weight: u32) -> Arc<EndpointRt> {
        Arc::new(EndpointRt {
            address: addr.into(),
            resolved: addr.parse().ok(),
            weight,
            key: endpoint_key("default/b", addr),
            shared: Arc::new(EndpointShared {
                pool_key: 0,
                in_flight: AtomicUsize::new(0),
                h2: ArcSwapOption::empty(),
            }),
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

    fn sticky_hashed_backend() -> BackendRt {
        let b = Backend {
            id: gatehouse_config::ObjectId {
                namespace: "default".into(),
                name: "users".into(),
            },
            protocol: BackendProtocol::HTTP1,
            endpoints: (1..=5)
                .map(|i| gatehouse_config::Endpoint {
                    address: format!("10.0.0.{i}:80"),
                    weight: 1,
                })
                .collect(),
            lb_policy: LbPolicy::ConsistentHash,
            hash_on: Some(HashOn::Header("x-user-id".into())),
            sticky: Some(StickyCookie {
                name: "gh-affinity".into(),
                ttl: Duration::from_secs(60),
            }),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
        };
        let mut shared = |_: &str| {
            Arc::new(EndpointShared {
                pool_key: 0,
                in_flight: AtomicUsize::new(0),
                h2: ArcSwapOption::empty(),
            })
        };
        BackendRt::new(&b, &mut shared, Counter::default())
    }

    #[test]
    fn pick_for_hashes_the_request_key_and_pins_with_a_cookie() {
        let backend = sticky_hashed_backend();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-user-id", HeaderValue::from_static("u-42"));
        let (first, cookie) = backend.pick_for(&headers, None, client).unwrap();
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
            .endpoints
            .load()
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
        assert_eq!(set_again, None);
        assert!(pair.starts_with("gh-affinity="));
    }
}
