//! Config flow at run time, the registration provider: endpoints join a backend through the admin
//! API (`PUT /backends/{ns}/{name}/endpoints/{id}`) with a lease of the backend's
//! `registration.ttl`, renewed by the next PUT; `DELETE` leaves at once and an expired lease
//! removes the endpoint. This is how a developer's laptop or a function joins a backend.

use super::{Discovered, Sink};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The leases of one backend.
pub(crate) struct Registry {
    ttl: Duration,
    leases: Mutex<BTreeMap<String, (Discovered, Instant)>>,
    sink: Arc<dyn Sink>,
}

impl Registry {
    /// An empty registry reporting to `sink`.
    pub(crate) fn new(ttl: Duration, sink: Arc<dyn Sink>) -> Self {
        Registry {
            ttl,
            leases: Mutex::new(BTreeMap::new()),
            sink,
        }
    }

    /// The lease length.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Creates or renews the lease of `id`; true when it is new.
    pub(crate) fn register(&self, id: &str, address: SocketAddr, weight: u32) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = Discovered {
            address,
            weight: weight.max(1),
        };
        let expires = Instant::now() + self.ttl;
        let changed = leases.get(id).is_none_or(|(e, _)| *e != endpoint);
        let new = !leases.contains_key(id);
        leases.insert(id.to_string(), (endpoint, expires));
        if changed {
            self.publish(&leases);
        }
        new
    }

    /// Ends the lease of `id`; false when there was none.
    pub(crate) fn deregister(&self, id: &str) -> bool {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let found = leases.remove(id).is_some();
        if found {
            self.publish(&leases);
        }
        found
    }

    /// Drops expired leases; when they expire is the next thing to wait for.
    pub(crate) fn expire(&self) -> Option<Instant> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let before = leases.len();
        leases.retain(|id, (_, expires)| {
            let keep = *expires > now;
            if !keep {
                tracing::info!(id = id.as_str(), "registration lease expired");
            }
            keep
        });
        if leases.len() != before {
            self.publish(&leases);
        }
        leases.values().map(|(_, e)| *e).min()
    }

    /// Every lease with its expiry, for the registry of a backend's next state.
    pub(crate) fn leases(&self) -> Vec<(String, Discovered, Instant)> {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        (leases.iter())
            .map(|(id, (e, expires))| (id.clone(), e.clone(), *expires))
            .collect()
    }

    /// Takes over the leases of the previous registry of the backend (a reload changed its ttl):
    /// each keeps its expiry, cut to the new ttl from now. Their endpoints are already in the set.
    pub(crate) fn adopt(&self, previous: Vec<(String, Discovered, Instant)>) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let latest = Instant::now() + self.ttl;
        for (id, endpoint, expires) in previous {
            leases.insert(id, (endpoint, expires.min(latest)));
        }
    }

    fn publish(&self, leases: &BTreeMap<String, (Discovered, Instant)>) {
        self.sink
            .update(leases.values().map(|(e, _)| e.clone()).collect());
    }
}

/// Expires leases until the registry is gone.
pub(crate) async fn run(registry: std::sync::Weak<Registry>) {
    loop {
        let (next, ttl) = match registry.upgrade() {
            Some(r) => (r.expire(), r.ttl()),
            None => return,
        };
        let until = next.unwrap_or_else(|| Instant::now() + ttl);
        tokio::time::sleep_until(until).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(Mutex<Vec<Vec<Discovered>>>);

    impl Sink for Record {
        fn update(&self, endpoints: Vec<Discovered>) {
            self.0.lock().unwrap().push(endpoints);
        }
        fn failed(&self, _: String) {}
    }

    #[tokio::test(start_paused = true)]
    async fn leases_are_renewed_by_put_and_expire_without() {
        let record = Arc::new(Record::default());
        let registry = Arc::new(Registry::new(Duration::from_secs(30), record.clone()));
        tokio::spawn(run(Arc::downgrade(&registry)));
        let a: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:9002".parse().unwrap();
        assert!(registry.register("laptop", a, 1));
        assert!(registry.register("fn-1", b, 2));
        assert!(!registry.register("laptop", a, 1), "a renewal is not new");
        assert_eq!(
            record.0.lock().unwrap().len(),
            2,
            "a renewal publishes nothing"
        );

        tokio::time::sleep(Duration::from_secs(20)).await;
        registry.register("laptop", a, 1);
        tokio::time::sleep(Duration::from_secs(15)).await;
        // fn-1 was not renewed: gone after 30 s; the laptop renewed at 20 s: still there.
        let last = record.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            last,
            vec![Discovered {
                address: a,
                weight: 1
            }]
        );

        assert!(registry.deregister("laptop"));
        assert!(!registry.deregister("laptop"));
        assert!(record.0.lock().unwrap().last().unwrap().is_empty());
    }
}
