//! Request flow, step 1b: one downstream connection after accept — served by hyper, closed when
//! idle, drained when its listener stops.
//!
//! The idle timeout is kept per connection, not per request: a timer ticks a few times per idle
//! period and closes the connection once no request has started or been in flight for a whole
//! period. That bounds idle keep-alive connections and request heads that trickle in (slowloris)
//! alike, never cuts a request in flight, and costs nothing per request — hyper's own
//! header-read timer allocates and registers a timer for every request, ~6% of a small proxied
//! request's CPU.

use super::handler::{handle, ConnInfo};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

/// How many times per idle period a connection checks whether it has been idle.
const IDLE_TICKS: u32 = 4;

/// The drain signal of one accept loop and the wait for its connections to end.
pub struct Drain {
    signal: watch::Sender<bool>,
    alive: Option<mpsc::Sender<()>>,
    gone: mpsc::Receiver<()>,
}

/// Held by each connection: sees the drain signal, and its drop counts the connection as ended.
pub struct DrainToken {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Default for Drain {
    /// A drain with no connections yet.
    fn default() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Drain {
            signal: watch::channel(false).0,
            alive: Some(alive),
            gone,
        }
    }
}

impl Drain {
    /// A token for a new connection.
    pub fn token(&self) -> DrainToken {
        DrainToken {
            signal: self.signal.subscribe(),
            _alive: self
                .alive
                .clone()
                .expect("tokens are taken before the drain"),
        }
    }

    /// Asks every connection to finish what it is doing and close, then waits until all have.
    pub async fn shutdown(mut self) {
        let _ = self.signal.send(true);
        self.alive = None;
        // Every token holds a sender; `recv` returns `None` once the last one is dropped.
        let _ = self.gone.recv().await;
    }
}

/// Counts a request as in flight on its connection until the response (body included) is done.
pub struct InFlight(Arc<ConnInfo>);

impl InFlight {
    fn new(info: &Arc<ConnInfo>) -> Self {
        info.requests.fetch_add(1, Ordering::Relaxed);
        info.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(info.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn respond(
    snapshot: &ArcSwap<Snapshot>,
    info: &Arc<ConnInfo>,
    req: http::Request<hyper::body::Incoming>,
) -> impl std::future::Future<Output = Result<http::Response<super::body::ResponseBody>, Infallible>>
       + Send
       + 'static {
    // The snapshot is loaded once per request and kept to its end: a reload never changes the
    // rules under a request in flight.
    let snap = snapshot.load_full();
    let guard = InFlight::new(info);
    async move {
        let mut resp = handle(snap, &guard.0, req).await;
        resp.body_mut().hold(guard);
        Ok::<_, Infallible>(resp)
    }
}

/// Serves one connection (plain, or after its TLS handshake) until it closes, stays idle for
/// `idle`, or is drained.
pub async fn serve<IO>(
    token: DrainToken,
    builder: &auto::Builder<TokioExecutor>,
    idle: Duration,
    io: IO,
    info: Arc<ConnInfo>,
    snapshot: Arc<ArcSwap<Snapshot>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_info = info.clone();
    let svc = service_fn(move |req| respond(&snapshot, &conn_info, req));
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), svc));
    let mut signal = token.signal;
    let mut drained = pin!(async move {
        let _ = signal.wait_for(|d| *d).await;
    });
    let period = (idle / IDLE_TICKS).max(Duration::from_millis(5));
    let mut tick = pin!(tokio::time::sleep(period));
    let mut quiet = 0;
    let mut seen = 0;
    let idle_close = loop {
        tokio::select! {
            biased;
            _ = conn.as_mut() => return,
            _ = drained.as_mut() => break false,
            _ = tick.as_mut() => {
                let requests = info.requests.load(Ordering::Relaxed);
                if requests == seen && info.in_flight.load(Ordering::Relaxed) == 0 {
                    quiet += 1;
                    if quiet >= IDLE_TICKS {
                        break true;
                    }
                } else {
                    quiet = 0;
                    seen = requests;
                }
                tick.as_mut().reset(tokio::time::Instant::now() + period);
            }
        }
    };
    // HTTP/1: closes now if between requests, after the current response otherwise.
    // HTTP/2: GOAWAY, then the open streams finish.
    conn.as_mut().graceful_shutdown();
    if idle_close {
        // Nothing is in flight, but a request head may be half read (hyper then waits for the
        // rest): the connection gets one more tick, then is dropped.
        let _ = tokio::time::timeout(period, conn).await;
    } else {
        let _ = conn.await;
    }
}
