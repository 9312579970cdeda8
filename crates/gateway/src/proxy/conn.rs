//! Request flow, step 1b: one downstream connection after accept — its protocol told apart
//! (ALPN, or the HTTP/2 preface on cleartext), served by hyper, closed when idle, drained when its
//! listener stops, and cut when the drain deadline passes (its requests then logged as cut).
//!
//! Each protocol gets its own service: HTTP/2 streams run as tasks of their own, so their request
//! futures are boxed (a small pointer to move into the task); HTTP/1 requests run inside the
//! connection's task and are not.
//!
//! The idle timeout is kept per connection, not per request: a watcher task ticks a few times per
//! idle period and closes the connection once no request has started or been in flight for a whole
//! period. That bounds idle keep-alive connections and request heads that trickle in (slowloris)
//! alike, never cuts a request in flight, and costs nothing per request — hyper's own
//! header-read timer allocates and registers a timer for every request, ~6% of a small proxied
//! request's CPU.

use super::handler::{handle, ConnInfo};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

/// How many times per idle period a connection checks whether it has been idle.
const IDLE_TICKS: u32 = 4;

/// The drain signal of one accept loop and the wait for its connections to end.
pub struct Drain {
    signal: watch::Sender<u8>,
    alive: Option<mpsc::Sender<()>>,
    gone: mpsc::Receiver<()>,
}

/// Held by each connection: sees the drain signal, and its drop counts the connection as ended.
pub struct DrainToken {
    signal: watch::Receiver<u8>,
    _alive: mpsc::Sender<()>,
}

impl DrainToken {
    /// Returns once the drain deadline has passed: for a tunnel, which cannot be asked to finish
    /// early, the moment to close.
    pub(crate) async fn cut(&mut self) {
        let _ = self.signal.wait_for(|d| *d == CUTTING).await;
    }

    /// The listener's drain signal and a share of this connection's liveness, for tunnels that
    /// outlive their connection's HTTP.
    pub(crate) fn listener(&self) -> super::streams::ListenerDrain {
        super::streams::ListenerDrain::new(self.signal.clone(), self._alive.clone())
    }
}

/// Drain signal values: serve; finish what is in flight and close; close now (deadline passed).
const SERVING: u8 = 0;
pub(crate) const DRAINING: u8 = 1;
pub(crate) const CUTTING: u8 = 2;

impl Default for Drain {
    /// A drain with no connections yet.
    fn default() -> Self {
        let (alive, gone) = mpsc::channel(1);
        Drain {
            signal: watch::channel(SERVING).0,
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

    /// Asks every connection to finish what it is doing and close, and waits until all have, for
    /// up to `deadline`. Then closes those still open, so each request cut off is recorded (access
    /// log line with error `shutdown`) before the process exits. Returns whether any was cut.
    pub async fn shutdown(mut self, deadline: Duration) -> bool {
        let _ = self.signal.send(DRAINING);
        self.alive = None;
        // Every token holds a sender; `recv` returns `None` once the last one is dropped.
        if tokio::time::timeout(deadline, self.gone.recv())
            .await
            .is_ok()
        {
            return false;
        }
        let _ = self.signal.send(CUTTING);
        // HTTP/2 streams run as tasks of their own: they drop their requests after their
        // connection is gone, on this same worker thread, within a few scheduler turns.
        let _scope = CutScope::enter();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.gone.recv()).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        true
    }
}

thread_local! {
    /// How many cuts are under way on this thread (a drain's, and each connection's own while
    /// it is dropped; they nest).
    static CUTS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether requests ending now on this thread are being cut off by a drain deadline (shutdown, or
/// a listener retired by a reload). Read when an exchange is recorded, to log why it ended.
pub(crate) fn cutting() -> bool {
    CUTS.with(|c| c.get() > 0)
}

/// Counts this thread as cutting connections while it lives (once `enter`ed).
struct CutScope(bool);

impl CutScope {
    fn enter() -> Self {
        let mut s = CutScope(false);
        s.set();
        s
    }

    fn idle() -> Self {
        CutScope(false)
    }

    fn set(&mut self) {
        if !self.0 {
            CUTS.with(|c| c.set(c.get() + 1));
            self.0 = true;
        }
    }
}

impl Drop for CutScope {
    fn drop(&mut self) {
        if self.0 {
            CUTS.with(|c| c.set(c.get() - 1));
        }
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
    max_uri: usize,
    req: http::Request<hyper::body::Incoming>,
) -> impl std::future::Future<Output = Result<http::Response<super::body::ResponseBody>, Infallible>>
       + Send
       + 'static {
    // The snapshot is loaded once per request and kept to its end: a reload never changes the
    // rules under a request in flight.
    let snap = snapshot.load_full();
    let guard = InFlight::new(info);
    // hyper bounds the target only at 64 KiB (HTTP/1) or by the header list (HTTP/2).
    let too_long = req
        .uri()
        .path_and_query()
        .is_some_and(|p| p.as_str().len() > max_uri);
    // One header lookup: a gRPC client must get gateway-made errors as gRPC statuses. Applied
    // here rather than by a wrapper around `handle`, whose large future would be moved once more.
    // HTTP/1.1 requests other than POSTs (gRPC-Web's) skip the lookup.
    let grpc = super::grpc::client(&req);
    async move {
        let mut resp = if too_long {
            uri_too_long(&req, max_uri)
        } else {
            handle(snap, &guard.0, req, grpc.is_some()).await
        };
        if let Some(client) = grpc {
            resp = super::grpc::render_error(resp, client);
        }
        // A response that opens a tunnel hands over a place for the guard that lives as long as
        // the tunnel; others hold it in their body. (Responses carry no extensions otherwise:
        // an empty check.)
        match resp.extensions_mut().remove::<super::upgrade::Busy>() {
            Some(busy) => busy.hold(guard),
            None => resp.body_mut().hold(guard),
        }
        Ok::<_, Infallible>(resp)
    }
}

/// An HTTP/2 response future, boxed (h2 moves it into a spawned stream task).
type H2Response = Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<super::body::ResponseBody>, Infallible>,
            > + Send,
    >,
>;

/// `respond` for an HTTP/2 request, after the check of its header list's size (HTTP/1.1 heads are
/// bounded by hyper's parser).
fn h2_respond(
    snapshot: &ArcSwap<Snapshot>,
    info: &Arc<ConnInfo>,
    max_uri: usize,
    max_list: usize,
    req: http::Request<hyper::body::Incoming>,
) -> H2Response {
    let size = super::h2_header_limit::header_list_size(&req);
    if size > max_list {
        let resp = super::h2_header_limit::too_large(&snapshot.load(), &req, size, max_list);
        return Box::pin(std::future::ready(Ok(resp)));
    }
    Box::pin(respond(snapshot, info, max_uri, req))
}

/// The 414 answer to a request target past the listener's `maxUriLength`. Made here, before
/// routing: the target is not looked at, logged or forwarded.
#[cold]
fn uri_too_long(
    req: &http::Request<hyper::body::Incoming>,
    max: usize,
) -> http::Response<super::body::ResponseBody> {
    let rid = super::handler::request_id(req);
    let err = crate::error::ProxyError::new(
        crate::error::ErrorKind::UriTooLong,
        format!("the request target is longer than this listener's limit of {max} bytes"),
    );
    let (mut parts, body) = err.to_response(&rid).into_parts();
    parts
        .headers
        .insert(http::HeaderName::from_static("x-request-id"), rid);
    http::Response::from_parts(parts, super::body::ResponseBody::full(body, None))
}

/// The HTTP/2 connection preface starts with these bytes; no HTTP/1 request does.
const H2_PREFACE_START: &[u8] = b"PRI ";

/// Whether a cleartext connection speaks HTTP/2 (prior knowledge), from its first bytes, which
/// stay unread. `None`: the peer closed or failed first.
pub async fn sniff_h2(stream: &tokio::net::TcpStream) -> Option<bool> {
    let mut buf = [0u8; 4];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE_START[..n] {
            return Some(false);
        }
        if n == H2_PREFACE_START.len() {
            return Some(true);
        }
        // A preface split across packets: peeking again at once would see the same bytes.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How a connection is served, per protocol.
pub struct Protocols {
    /// HTTP/1.1.
    pub h1: http1::Builder,
    /// HTTP/2.
    pub h2: http2::Builder<TokioExecutor>,
    /// Longest request target (path and query) served; longer ones get 414.
    pub max_uri: usize,
    /// Largest HTTP/2 header list served (`limits.maxRequestHeadersSize`); larger ones get the
    /// JSON 431 (`h2_header_limit.rs`).
    pub max_header_list: usize,
}

/// A hyper connection that can be asked to finish and close.
trait Graceful: Future {
    fn shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::Connection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for http1::UpgradeableConnection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for http2::Connection<I, S, TokioExecutor>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Future: Send + 'static,
    S::ResBody: http_body::Body + Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves one connection (plain, or after its TLS handshake) until it closes, stays idle for
/// `idle`, or is drained.
pub async fn serve<IO>(
    token: DrainToken,
    protocols: &Protocols,
    h2: bool,
    idle: Duration,
    io: IO,
    info: Arc<ConnInfo>,
    snapshot: Arc<ArcSwap<Snapshot>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut info = info;
    if let Some(i) = Arc::get_mut(&mut info) {
        // For upgraded tunnels, which leave the connection (and its token) behind.
        i.drain = Some(token.listener());
    }
    let conn_info = info.clone();
    let max_uri = protocols.max_uri;
    if h2 {
        let max_list = protocols.max_header_list;
        let svc = service_fn(move |req| h2_respond(&snapshot, &conn_info, max_uri, max_list, req));
        let conn = protocols.h2.serve_connection(TokioIo::new(io), svc);
        drive(conn, token, idle, &info).await;
    } else {
        // hyper's own answers to heads it refuses become JSON errors (`parse_error.rs`).
        let io = super::parse_error::JsonParseErrors::new(io, info.clone(), snapshot.clone());
        let svc = service_fn(move |req| respond(&snapshot, &conn_info, max_uri, req));
        // With upgrades: a 101 hands the connection to the request's tunnel (`upgrade.rs`).
        let conn = protocols
            .h1
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        drive(conn, token, idle, &info).await;
    }
}

/// What the watcher of a connection asks of it.
const RUN: u8 = 0;
const FINISH: u8 = 1;
const CLOSE: u8 = 2;
/// Close now, cutting what is in flight (drain deadline).
const CUT_NOW: u8 = 3;

/// Shared between a connection and its watcher.
struct Control {
    /// `RUN`, `FINISH` (graceful shutdown), `CLOSE` (drop it now) or `CUT_NOW` (drop it now,
    /// with requests in flight).
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Control {
    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        // Left registered: FINISH is followed by CLOSE, which must wake the task too.
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.wake_by_ref();
        }
    }
}

/// The connection future, obeying its watcher. Checking the watcher costs one atomic load per
/// poll; the timers and the drain signal live in the watcher's own task, so they are not polled
/// every time the connection wakes up.
struct Watched<'a, C> {
    conn: Pin<&'a mut C>,
    control: &'a Control,
    finishing: bool,
    /// The waker last handed to the watcher.
    woken_by: Option<Waker>,
}

impl<C: Graceful> Future for Watched<'_, C> {
    /// Whether the connection was cut at a drain deadline.
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let state = self.control.state.load(Ordering::Acquire);
        if state >= CLOSE {
            return Poll::Ready(state == CUT_NOW);
        }
        // The lock is taken only when the task's waker changes (for one connection's task it
        // does not), not on every poll.
        if !self
            .woken_by
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *self.control.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
            self.woken_by = Some(waker);
        }
        if state == FINISH && !self.finishing {
            self.finishing = true;
            self.conn.as_mut().shutdown();
        }
        self.conn.as_mut().poll(cx).map(|_| false)
    }
}

async fn drive<C: Graceful>(conn: C, token: DrainToken, idle: Duration, info: &Arc<ConnInfo>) {
    // Declared before the connection, so dropped after it: requests the connection drops when
    // cut are recorded as cut.
    let mut scope = CutScope::idle();
    let conn = pin!(conn);
    let control = Arc::new(Control {
        state: AtomicU8::new(RUN),
        waker: Mutex::new(None),
    });
    let watcher = tokio::spawn(watch(control.clone(), token.signal, idle, info.clone()));
    let cut = Watched {
        conn,
        control: &control,
        finishing: false,
        woken_by: None,
    }
    .await;
    watcher.abort();
    if cut {
        scope.set();
    }
}

/// Watches one connection: asks it to finish when its listener drains, or when it has been idle
/// (no request started or in flight) for `idle`; then, if it was idle, closes it one tick later
/// (a request head may be half read, and hyper would wait for the rest).
async fn watch(
    control: Arc<Control>,
    mut drain: watch::Receiver<u8>,
    idle: Duration,
    info: Arc<ConnInfo>,
) {
    let period = (idle / IDLE_TICKS).max(Duration::from_millis(5));
    let mut quiet = 0;
    let mut seen = 0;
    let drained = loop {
        tokio::select! {
            // HTTP/1: closes now if between requests, after the current response otherwise.
            // HTTP/2: GOAWAY, then the open streams finish.
            _ = drain.wait_for(|d| *d >= DRAINING) => break true,
            _ = tokio::time::sleep(period) => {
                let requests = info.requests.load(Ordering::Relaxed);
                if requests == seen && info.in_flight.load(Ordering::Relaxed) == 0 {
                    quiet += 1;
                    if quiet >= IDLE_TICKS {
                        break false;
                    }
                } else {
                    quiet = 0;
                    seen = requests;
                }
            }
        }
    };
    control.set(FINISH);
    if drained {
        // Past the drain deadline: close, cutting what is still in flight.
        let _ = drain.wait_for(|d| *d == CUTTING).await;
        control.set(CUT_NOW);
        return;
    }
    tokio::time::sleep(period).await;
    control.set(CLOSE);
}
