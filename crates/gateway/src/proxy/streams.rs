//! Config flow meets long-lived streams (upgraded tunnels such as WebSockets): a reload that
//! keeps a stream's route and backend leaves it alone; one that removes either lets the stream run
//! on for the Gateway's `streamDrainTimeout`, then closes it. A tunnel also watches its listener's
//! drain (the HTTP connection it came from is gone, and with it the connection's drain): when a
//! reload retires the listener, the tunnel gets the same grace. Streams hold no snapshot (an old
//! configuration is never kept alive by them); the registry, carried from snapshot to snapshot,
//! tells them what each reload kept. Costs nothing until a stream is open: a reload with no stream
//! watching computes nothing.

use crate::snapshot::Snapshot;
use gatehouse_config::Action;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The reload signal for open streams, shared by every snapshot of one gateway.
pub(crate) struct Streams {
    tx: watch::Sender<Option<Arc<Kept>>>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            tx: watch::channel(None).0,
        }
    }
}

/// What a reload kept: every (route, backend) pair a rule still forwards along, and the grace of
/// streams on any other.
struct Kept {
    pairs: HashSet<(Arc<str>, Arc<str>)>,
    grace: Duration,
}

impl Streams {
    /// Tells open streams that `snap` is now live.
    pub(crate) fn reloaded(&self, snap: &Snapshot) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut pairs = HashSet::new();
        for route in &snap.config.routes {
            let name: Arc<str> = route.id.to_string().into();
            for rule in &route.rules {
                if let Action::Forward(list) = &rule.action {
                    for wb in list {
                        pairs.insert((name.clone(), Arc::from(wb.backend.to_string())));
                    }
                }
            }
        }
        let grace = snap.config.gateway.stream_drain_timeout;
        self.tx.send_replace(Some(Arc::new(Kept { pairs, grace })));
    }

    /// A watch for one stream along `route` to `backend`.
    pub(crate) fn watch(&self, route: &Arc<str>, backend: &Arc<str>) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
            key: (route.clone(), backend.clone()),
            listener: None,
        }
    }
}

/// The drain signal of the listener a connection came from (see `conn.rs`), and a share of the
/// connection's liveness: a tunnel that outlives its connection's HTTP keeps the listener's drain
/// (a reload retiring it, or shutdown) waiting for it, until the drain's deadline cuts it.
#[derive(Clone)]
pub(crate) struct ListenerDrain {
    signal: watch::Receiver<u8>,
    _alive: mpsc::Sender<()>,
}

impl ListenerDrain {
    pub(super) fn new(signal: watch::Receiver<u8>, alive: mpsc::Sender<()>) -> Self {
        ListenerDrain {
            signal,
            _alive: alive,
        }
    }

    /// Returns once the listener drains, or is gone.
    async fn draining(&mut self) {
        let _ = (self.signal)
            .wait_for(|d| *d >= super::conn::DRAINING)
            .await;
    }

    /// Returns once the drain's deadline has passed (or the listener is gone).
    async fn cutting(&mut self) {
        let _ = (self.signal).wait_for(|d| *d >= super::conn::CUTTING).await;
    }
}

/// One open stream's view of reloads.
pub(crate) struct Watch {
    rx: watch::Receiver<Option<Arc<Kept>>>,
    key: (Arc<str>, Arc<str>),
    /// The listener's drain, and the grace to use when no reload has said otherwise.
    listener: Option<(ListenerDrain, Duration)>,
}

impl Watch {
    /// Also ends the stream after the grace once its listener drains (a reload retired it).
    pub(crate) fn on_listener(mut self, drain: Option<&ListenerDrain>, grace: Duration) -> Self {
        self.listener = drain.map(|d| (d.clone(), grace));
        self
    }

    /// Runs `stream` to its end, or, once a reload has removed its route or backend (or retired
    /// its listener), for at most the grace period.
    pub(crate) async fn run(mut self, stream: impl Future<Output = ()>) {
        tokio::pin!(stream);
        let listener = async {
            match self.listener.as_mut() {
                Some((drain, grace)) => {
                    drain.draining().await;
                    *grace
                }
                None => std::future::pending().await,
            }
        };
        let (grace, why) = tokio::select! {
            () = &mut stream => return,
            grace = removed(&mut self.rx, &self.key) => (grace, "route or backend"),
            // The grace of the reload that retired the listener, when there was one.
            grace = listener => (self.rx.borrow().as_ref().map_or(grace, |k| k.grace), "listener"),
        };
        tracing::debug!(
            route = &*self.key.0,
            backend = &*self.key.1,
            "a reload removed this stream's {why}; closing it after {grace:?}"
        );
        // The drain's deadline (shutdown's `drainTimeout`) ends it even within its grace.
        let cut = async {
            match self.listener.as_mut() {
                Some((drain, _)) => drain.cutting().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(grace, stream) => {}
            () = cut => {}
        }
    }

    /// A future that completes at the end of the grace after a reload removed the stream's
    /// route or backend (for bodies, which poll it rather than run inside it).
    pub(crate) fn deadline(mut self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(async move {
            let grace = removed(&mut self.rx, &self.key).await;
            tracing::debug!(
                route = &*self.key.0,
                backend = &*self.key.1,
                "a reload removed this gRPC stream's route or backend; ending it after {grace:?}"
            );
            tokio::time::sleep(grace).await;
        })
    }
}

/// Returns, with the grace period, once a reload has removed the stream's route or backend.
async fn removed(
    rx: &mut watch::Receiver<Option<Arc<Kept>>>,
    key: &(Arc<str>, Arc<str>),
) -> Duration {
    loop {
        if rx.changed().await.is_err() {
            // The gateway is gone; the runtime's shutdown ends the stream.
            return std::future::pending().await;
        }
        let kept = rx.borrow_and_update().clone();
        if let Some(k) = kept.filter(|k| !k.pairs.contains(key)) {
            return k.grace;
        }
    }
}
