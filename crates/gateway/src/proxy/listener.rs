//! Request flow, step 1: listeners accept connections and hand them to hyper (HTTP/1.1 and h2c on
//! one port, or TLS with ALPN first). Each listener drains its own connections when it is stopped,
//! so a reload that removes a listener, or SIGTERM, lets in-flight requests finish.

use super::handler::{handle, ConnInfo};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use gatehouse_config::{Listener, ListenerProtocol};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener applies to each new connection; replaced whole when a reload changes the
/// protocol, certificates or timeouts of a listener whose address stays the same.
struct Settings {
    scheme: &'static str,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
}

impl Settings {
    fn new(spec: &Listener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(spec.idle_timeout)
            .keep_alive(true);
        // HTTP/2 connections have no request-head timer to bound them; pings at the idle interval
        // find peers that vanished without closing.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(spec.idle_timeout))
            .keep_alive_timeout(Duration::from_secs(20));
        Settings {
            scheme: match spec.protocol {
                ListenerProtocol::HTTP => "http",
                ListenerProtocol::HTTPS => "https",
            },
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            builder,
        }
    }
}

/// A running listener.
pub struct ListenerHandle {
    /// The spec it runs with now.
    pub spec: Listener,
    /// The bound address (differs from the spec when it asked for port 0).
    pub local_addr: SocketAddr,
    settings: Arc<ArcSwap<Settings>>,
    stop: watch::Sender<Option<Duration>>,
    closed: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    /// Applies a new spec with the same address: new connections get the new protocol,
    /// certificates and timeouts; open connections keep theirs.
    pub fn update(&mut self, spec: Listener, tls: Option<Arc<rustls::ServerConfig>>) {
        self.settings.store(Arc::new(Settings::new(&spec, tls)));
        self.spec = spec;
    }

    /// Stops accepting, then waits up to `drain` for open connections to finish.
    pub fn stop(&self, drain: Duration) {
        let _ = self.stop.send(Some(drain));
    }

    /// Becomes true once the listening socket is closed (before the drain ends), so another
    /// listener may bind the address.
    pub fn socket_closed(&self) -> watch::Receiver<bool> {
        self.closed.clone()
    }

    /// Waits for the accept loop and its drain to end.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds a listener's socket (before it is started, so a reload can fail cleanly).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts the accept loop of a bound listener.
pub fn start(
    spec: Listener,
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    gauge: Gauge,
) -> std::io::Result<ListenerHandle> {
    let local_addr = tcp.local_addr()?;
    let settings = Arc::new(ArcSwap::from_pointee(Settings::new(&spec, tls)));
    let (stop_tx, mut stop_rx) = watch::channel(None);
    let (closed_tx, closed_rx) = watch::channel(false);
    let name = spec.id.to_string();
    let current = settings.clone();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let drain = loop {
            tokio::select! {
                changed = stop_rx.changed() => {
                    let drain = if changed.is_ok() { *stop_rx.borrow() } else { Some(Duration::ZERO) };
                    if let Some(d) = drain { break d; }
                }
                accepted = tcp.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(listener = %name, "accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let settings = current.load_full();
                    let info = Arc::new(ConnInfo::new(peer, settings.scheme));
                    let snapshot = snapshot.clone();
                    let gauge = gauge.clone();
                    gauge.inc();
                    match &settings.tls {
                        None => serve(&graceful, settings.builder.clone(), stream, info, snapshot, gauge),
                        Some(acceptor) => {
                            let acceptor = acceptor.clone();
                            let watcher = graceful.watcher();
                            tokio::spawn(async move {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => {
                                        let svc = service_fn(move |req| respond(&snapshot, &info, req));
                                        let conn = settings.builder.serve_connection(TokioIo::new(tls), svc).into_owned();
                                        let _ = watcher.watch(conn).await;
                                    }
                                    Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                                gauge.dec();
                            });
                        }
                    }
                }
            }
        };
        drop(tcp);
        let _ = closed_tx.send(true);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(listener = %name, "drain deadline passed; closing remaining connections");
        }
    });
    Ok(ListenerHandle {
        spec,
        local_addr,
        settings,
        stop: stop_tx,
        closed: closed_rx,
        task,
    })
}

type Svc = Arc<ConnInfo>;

fn respond(
    snapshot: &ArcSwap<Snapshot>,
    info: &Svc,
    req: http::Request<hyper::body::Incoming>,
) -> impl std::future::Future<Output = Result<http::Response<super::body::ResponseBody>, Infallible>>
       + Send
       + 'static {
    // The snapshot is loaded once per request and kept to its end: a reload never changes the
    // rules under a request in flight.
    let snap = snapshot.load_full();
    let info = info.clone();
    async move { Ok::<_, Infallible>(handle(snap, &info, req).await) }
}

fn serve<IO>(
    graceful: &GracefulShutdown,
    builder: auto::Builder<TokioExecutor>,
    io: IO,
    info: Svc,
    snapshot: Arc<ArcSwap<Snapshot>>,
    gauge: Gauge,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| respond(&snapshot, &info, req));
    let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
    let fut = graceful.watch(conn);
    tokio::spawn(async move {
        let _ = fut.await;
        gauge.dec();
    });
}
