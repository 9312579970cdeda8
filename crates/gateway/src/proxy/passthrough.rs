//! Connection flow of `TCP` and `TLS` (passthrough) listeners, after accept: choose the backend
//! (the listener's own, or for TLS the backend of the Route whose `hosts` match the ClientHello's
//! server name), pick an endpoint with the backend's balancer (health, ejections, slow start),
//! connect within its connect timeout, then hand both sockets to the tunnel. No HTTP is parsed
//! and TLS is never terminated: the bytes reach the endpoint exactly as the client sent them.

use super::conn::DrainToken;
use super::sni::{self, Hello};
use super::tunnel;
use crate::snapshot::Snapshot;
use crate::telemetry::stream_metrics::StreamResult;
use crate::upstream::backend::{BackendRt, EndpointRt};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a client may take to send its whole ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Endpoints tried, at most, when connecting fails (each pick is the balancer's own).
const CONNECT_TRIES: usize = 3;

/// What a passthrough listener does with each connection.
pub(crate) enum Mode {
    /// Every connection to this backend (`namespace/name`).
    Tcp(Arc<str>),
    /// By the server name of the ClientHello.
    Tls,
}

impl Mode {
    fn protocol(&self) -> &'static str {
        match self {
            Mode::Tcp(_) => "tcp",
            Mode::Tls => "tls",
        }
    }
}

/// One accepted connection of a passthrough listener.
pub(crate) struct Passthrough<'a> {
    /// The listener's name, for metrics and logs.
    pub(crate) listener: &'a str,
    pub(crate) mode: &'a Mode,
    /// Tunnel idle timeout (the listener's `timeouts.idle`).
    pub(crate) idle: Duration,
    pub(crate) peer: SocketAddr,
}

impl Passthrough<'_> {
    /// Serves the connection to its end; a drain past its deadline closes it.
    pub(crate) async fn serve(
        self,
        mut stream: TcpStream,
        snapshot: &ArcSwap<Snapshot>,
        mut token: DrainToken,
    ) {
        let run = async {
            // Read once: the tunnel holds no snapshot, so a long-lived connection never keeps an
            // old configuration alive.
            let snap = snapshot.load_full();
            let (backend, hello) = match self.choose(&snap, &mut stream).await {
                Ok(x) => x,
                Err(result) => return snap.metrics.streams.connection(self.listener, result),
            };
            let metrics = snap.metrics.clone();
            drop(snap);
            let Some((ep, upstream)) = connect(&backend, &metrics, self.listener).await else {
                return;
            };
            metrics
                .streams
                .connection(self.listener, StreamResult::Forwarded);
            ep.shared.in_flight.fetch_add(1, Ordering::Relaxed);
            let _in_flight = InFlight(ep.clone());
            let m = metrics.streams.tunnel(self.mode.protocol(), &backend.id);
            drop(backend);
            let mut upstream = upstream;
            if !hello.is_empty() && upstream.write_all(&hello).await.is_err() {
                return;
            }
            let out = tunnel::run(stream, upstream, self.idle, &m).await;
            tracing::debug!(
                listener = self.listener,
                peer = %self.peer,
                upstream = &*ep.address,
                sent = out.to_upstream,
                received = out.to_downstream,
                "tunnel ended: {:?}",
                out.end
            );
        };
        tokio::select! {
            () = run => {}
            () = token.cut() => {
                tracing::debug!(listener = self.listener, peer = %self.peer, "drain deadline passed; tunnel closed");
            }
        }
    }

    /// The backend for this connection, and the bytes already read from it (a ClientHello) that
    /// must reach the endpoint first.
    async fn choose(
        &self,
        snap: &Snapshot,
        stream: &mut TcpStream,
    ) -> Result<(Arc<BackendRt>, Vec<u8>), StreamResult> {
        match self.mode {
            Mode::Tcp(id) => {
                let found = (snap.backends)
                    .binary_search_by(|b| (*b.id).cmp(id))
                    .ok()
                    .and_then(|i| snap.backends.get(i));
                // Validation makes the backend exist; a missing one is answered like an empty one.
                found
                    .map(|b| (b.clone(), Vec::new()))
                    .ok_or(StreamResult::NoEndpoint)
            }
            Mode::Tls => {
                let (name, hello) = read_hello(stream).await?;
                let route = name.as_deref().and_then(|n| {
                    snap.router
                        .lookup_host(n, |target| !target.choices.is_empty())
                });
                let Some(entry) = route else {
                    tracing::debug!(listener = self.listener, peer = %self.peer, sni = ?name, "no route for the server name; closing");
                    return Err(StreamResult::NoRoute);
                };
                let choice = entry.target.pick().ok_or(StreamResult::NoRoute)?;
                Ok((choice.backend.clone(), hello))
            }
        }
    }
}

/// Reads the ClientHello, whole, within `HELLO_TIMEOUT`: its server name and every byte read.
async fn read_hello(stream: &mut TcpStream) -> Result<(Option<String>, Vec<u8>), StreamResult> {
    let read = async {
        let mut buf = Vec::with_capacity(2048);
        loop {
            // Records add 5 bytes each to the hello's length; a few more records' worth is allowed.
            if buf.len() > sni::MAX_HELLO + 1024 || stream.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
            match sni::parse(&buf) {
                Hello::Incomplete => continue,
                Hello::Complete(name) => return Some((name, buf)),
                Hello::Invalid(why) => {
                    tracing::debug!("not a TLS ClientHello: {why}");
                    return None;
                }
            }
        }
    };
    match tokio::time::timeout(HELLO_TIMEOUT, read).await {
        Ok(Some(x)) => Ok(x),
        _ => Err(StreamResult::BadClientHello),
    }
}

/// Connects to an endpoint of `backend`, trying another pick when one fails; records each result
/// for outlier detection. Counts the connection when none can be reached.
async fn connect(
    backend: &BackendRt,
    metrics: &crate::telemetry::metrics::Metrics,
    listener: &str,
) -> Option<(Arc<EndpointRt>, TcpStream)> {
    let tries = backend
        .state
        .endpoints
        .load()
        .endpoints
        .len()
        .clamp(1, CONNECT_TRIES);
    let mut result = StreamResult::NoEndpoint;
    for _ in 0..tries {
        let Some(ep) = backend.pick() else { break };
        let attempt = crate::upstream::client::connect(backend, &ep).await;
        if let Some(od) = &backend.outlier {
            crate::health::outlier::record(od, &backend.state, &ep, attempt.is_err());
        }
        match attempt {
            Ok(s) => return Some((ep, s)),
            Err(_) => result = StreamResult::ConnectFailed,
        }
    }
    metrics.streams.connection(listener, result);
    None
}

/// Counts a tunnel against its endpoint while it is open (least-request balancing, `/backends`).
struct InFlight(Arc<EndpointRt>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
