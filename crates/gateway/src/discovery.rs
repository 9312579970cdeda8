//! Config flow, at run time: discovery providers keep one backend's endpoint set current without a
//! reload. Each provider runs as a task on the control runtime (never on a worker that serves
//! traffic) and reports whole endpoint sets to a `Sink`; the backend's state turns them into a new
//! endpoint set, swapped in without touching requests in flight or the route table.
//!
//! A provider that fails keeps nothing itself: it reports the failure to the sink (which keeps the
//! last known endpoints and shows the error in `GET /backends`) and retries with backoff.
//!
//! `spawn` starts the provider a backend's `discovery` names; the returned `Provider` stops it
//! when dropped, so a reload that removes or changes the backend's discovery drops the old one.

use gatehouse_config::Discovery;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod dns;
mod etcd;
pub(crate) mod file;
mod kubernetes;
pub(crate) mod registration;
pub(crate) mod static_names;

/// One endpoint as a provider found it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Discovered {
    /// Where to connect.
    pub address: SocketAddr,
    /// Relative weight (at least 1).
    pub weight: u32,
}

/// Where a provider sends what it finds. Implemented by the backend state; tests record calls.
pub trait Sink: Send + Sync + 'static {
    /// Replaces the provider's whole endpoint set. Called on every change (not on every poll when
    /// nothing changed).
    fn update(&self, endpoints: Vec<Discovered>);
    /// Reports that the provider failed; the last set stays in use. Called once per state change
    /// (not on every retry of the same failure).
    fn failed(&self, error: String);
}

/// A running provider. Dropping it stops the provider (its task is aborted).
#[derive(Debug)]
pub struct Provider {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the provider that `discovery` names on the current tokio runtime (the control runtime:
/// providers do blocking-free but chatty work that must not share a worker with traffic). It
/// reports to `sink` until the returned `Provider` is dropped. `None` for `registration`, whose
/// endpoints arrive through the admin API rather than from a provider.
pub fn spawn(discovery: &Discovery, sink: Arc<dyn Sink>) -> Option<Provider> {
    let task = match discovery.clone() {
        Discovery::Dns {
            name,
            port,
            resolver,
            ttl,
        } => tokio::spawn(dns::run(
            dns::Query::Address { name, port },
            resolver,
            ttl,
            sink,
        )),
        Discovery::Srv {
            name,
            resolver,
            ttl,
        } => tokio::spawn(dns::run(dns::Query::Srv { name }, resolver, ttl, sink)),
        Discovery::File { path } => tokio::spawn(file::run(path, sink)),
        Discovery::Etcd { endpoints, prefix } => tokio::spawn(etcd::run(endpoints, prefix, sink)),
        Discovery::Kubernetes {
            service,
            port,
            namespace,
        } => {
            let target = kubernetes::Target {
                service,
                port,
                namespace,
            };
            tokio::spawn(kubernetes::run(None, target, sink))
        }
        Discovery::Registration { .. } => return None,
    };
    Some(Provider { task })
}

/// A provider's view of what it told the sink, so that it reports changes only: `update` when
/// the set differs (or after a failure, to say it recovered), `failed` when the error differs.
pub(crate) struct Reporter {
    sink: Arc<dyn Sink>,
    last: Option<Vec<Discovered>>,
    failure: Option<String>,
}

impl Reporter {
    pub(crate) fn new(sink: Arc<dyn Sink>) -> Self {
        Reporter {
            sink,
            last: None,
            failure: None,
        }
    }

    /// Reports `set` (in any order) if it is news.
    pub(crate) fn update(&mut self, mut set: Vec<Discovered>) {
        set.sort();
        set.dedup();
        let recovered = self.failure.take().is_some();
        if !recovered && self.last.as_ref() == Some(&set) {
            return;
        }
        self.last = Some(set.clone());
        self.sink.update(set);
    }

    /// Reports `error` unless it is the failure already reported.
    pub(crate) fn failed(&mut self, error: String) {
        if self.failure.as_deref() != Some(error.as_str()) {
            tracing::warn!("discovery: {error}");
            self.sink.failed(error.clone());
            self.failure = Some(error);
        }
    }

    /// Reports `set`, and `problem` beside it when part of the source was unusable (entries
    /// skipped): the set is still the best known, the problem still worth showing.
    pub(crate) fn update_with(&mut self, mut set: Vec<Discovered>, problem: Option<String>) {
        let Some(problem) = problem else {
            return self.update(set);
        };
        set.sort();
        set.dedup();
        if self.failure.as_deref() == Some(problem.as_str()) && self.last.as_ref() == Some(&set) {
            return;
        }
        self.failure = None;
        self.update(set);
        self.failed(problem);
    }
}

/// Exponential backoff between retries of a failing source: 200ms doubling to 30s, with up to a
/// quarter of jitter so replicas that lost the same server do not come back in lockstep.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const BASE: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(30);

    pub(crate) fn new() -> Self {
        Backoff { next: Self::BASE }
    }

    /// Back to the shortest delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = Self::BASE;
    }

    /// The delay before the next retry.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(Self::CAP);
        d + d.mul_f64(fastrand::f64() / 4.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Calls(Mutex<Vec<String>>);

    impl Sink for Calls {
        fn update(&self, endpoints: Vec<Discovered>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("update {}", endpoints.len()));
        }
        fn failed(&self, error: String) {
            self.0.lock().unwrap().push(format!("failed {error}"));
        }
    }

    fn at(port: u16) -> Discovered {
        Discovered {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
        }
    }

    #[test]
    fn reporter_tells_changes_only() {
        let calls = Arc::new(Calls::default());
        let mut r = Reporter::new(calls.clone());
        r.update(vec![at(2), at(1)]);
        r.update(vec![at(1), at(2)]);
        r.failed("down".into());
        r.failed("down".into());
        r.update(vec![at(1), at(2)]);
        r.update(vec![at(1)]);
        assert_eq!(
            *calls.0.lock().unwrap(),
            ["update 2", "failed down", "update 2", "update 1"]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= Backoff::BASE && first <= Backoff::BASE * 5 / 4);
        for _ in 0..20 {
            b.next_delay();
        }
        assert!(b.next_delay() <= Backoff::CAP * 5 / 4);
        b.reset();
        assert!(b.next_delay() <= Backoff::BASE * 5 / 4);
    }
}
