//! Request flow, step 1: listeners accept connections and hand them to hyper (HTTP/1.1 and h2c on
//! one port, or TLS with ALPN first). Each listener drains its own connections when it is stopped,
//! so a reload that removes a listener, or SIGTERM, lets in-flight requests finish.

use super::client_cert::ClientCert;
use super::conn::{serve, sniff_h2, Drain, DrainToken, Protocols};
use super::handler::ConnInfo;
use super::passthrough::{Mode, Passthrough};
use super::tls;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use gatehouse_config::{Listener, ListenerProtocol};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener applies to each new connection; replaced whole when a reload changes the
/// protocol, certificates or timeouts of a listener whose address stays the same.
struct Settings {
    scheme: &'static str,
    tls: Option<tokio_rustls::TlsAcceptor>,
    protocols: Protocols,
    idle: Duration,
    escaped_slashes: gatehouse_config::EscapedSlashes,
    max_connections: i64,
    /// `TCP`/`TLS` listeners: connections are passed through, not served as HTTP.
    stream: Option<Mode>,
}

impl Settings {
    fn new(spec: &Listener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        // No header-read timer: the idle timeout is kept per connection (see `conn`).
        let limits = &spec.limits;
        let mut h1 = http1::Builder::new();
        // A request head past the limit gets hyper's 431. The read buffer is capped at the same
        // size (hyper's default, ~400 KiB, let 1,000 connections sending unfinished heads hold
        // 400 MB); bodies stream through it in reads of that size at most.
        h1.header_read_timeout(None)
            .keep_alive(true)
            .max_header_size(limits.max_request_headers_size)
            .max_buf_size(limits.max_request_headers_size.max(8192));
        // Pings at the idle interval also find HTTP/2 peers that vanished without closing.
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(spec.idle_timeout))
            .keep_alive_timeout(Duration::from_secs(20))
            // A decoded header list past the limit gets the gateway's JSON 431
            // (`h2_header_limit.rs`); h2 refuses by itself, with a bare 431, past the ceiling.
            .max_header_list_size(super::h2_header_limit::ceiling(
                limits.max_request_headers_size,
            ))
            // RFC 8441: WebSockets over HTTP/2 (extended CONNECT), see `upgrade.rs`.
            .enable_connect_protocol();
        Settings {
            scheme: match spec.protocol {
                ListenerProtocol::HTTP => "http",
                ListenerProtocol::HTTPS => "https",
                ListenerProtocol::TCP => "tcp",
                ListenerProtocol::TLS => "tls",
            },
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            protocols: Protocols {
                h1,
                h2,
                max_uri: limits.max_uri_length,
                max_header_list: limits.max_request_headers_size,
            },
            idle: spec.idle_timeout,
            escaped_slashes: spec.escaped_slashes,
            max_connections: i64::from(limits.max_connections),
            stream: match spec.protocol {
                ListenerProtocol::TCP => {
                    let backend = spec.backend.as_ref().map(|b| b.to_string());
                    Some(Mode::Tcp(backend.unwrap_or_default().into()))
                }
                ListenerProtocol::TLS => Some(Mode::Tls),
                _ => None,
            },
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
    tasks: Vec<JoinHandle<()>>,
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

    /// Waits for every accept loop and its drain to end.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The sockets of one listener: one per worker, sharing the address (SO_REUSEPORT) so the kernel
/// spreads connections over the workers and each worker accepts on its own.
pub struct Bound {
    /// The bound address (the port is resolved when the spec asked for port 0).
    pub local_addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

/// Binds a listener's sockets, before it is started, so a reload can fail cleanly.
///
/// SO_REUSEPORT would also let another process of the same user — a second Gatehouse — bind the
/// address and silently take half the connections. So the address is first bound alone, without
/// the option, which fails if anyone holds it (its socket closed at once: a bound socket that never
/// listened leaves nothing behind); and once the group is listening, the kernel's table of
/// listening sockets is checked for a stranger that joined in between. The accept path is
/// unchanged: each worker still accepts on its own socket.
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Bound> {
    let shared = workers > 1;
    if shared && addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let bound = bind_group(addr, workers)?;
    if shared && strangers_in_group(&bound.sockets) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "address already in use by another process",
        ));
    }
    Ok(bound)
}

fn bind_group(addr: SocketAddr, workers: usize) -> std::io::Result<Bound> {
    let mut sockets = Vec::with_capacity(workers);
    let mut actual = addr;
    for _ in 0..workers.max(1) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        // Only shared when there are several workers: a single socket keeps "address in use"
        // errors against any other holder of the port.
        if workers > 1 {
            socket.set_reuseport(true)?;
        }
        socket.set_nodelay(true)?;
        socket.bind(actual)?;
        let listener = socket.listen(4096)?;
        actual = listener.local_addr()?;
        sockets.push(listener.into_std()?);
    }
    Ok(Bound {
        local_addr: actual,
        sockets,
    })
}

/// Whether a socket that is not one of `ours` listens on exactly their address: it shares their
/// SO_REUSEPORT group. Read from /proc/net/tcp{,6}, which lists listening sockets before any
/// other, so only that first part is read. `false` where the table cannot be read.
fn strangers_in_group(ours: &[std::net::TcpListener]) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::io::BufRead;
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let inodes: Vec<String> = ours
            .iter()
            .filter_map(|s| std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd())).ok())
            .map(|m| m.ino().to_string())
            .collect();
        let v6 = ours
            .first()
            .and_then(|s| s.local_addr().ok())
            .is_some_and(|a| a.is_ipv6());
        let table = if v6 {
            "/proc/net/tcp6"
        } else {
            "/proc/net/tcp"
        };
        let Ok(file) = std::fs::File::open(table) else {
            return false;
        };
        // Fields: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        let mut ours_at = None;
        let mut others = Vec::new();
        for line in std::io::BufReader::new(file).lines().skip(1) {
            let Ok(line) = line else { break };
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                break; // past the listening sockets
            }
            if inodes.iter().any(|i| i == f[9]) {
                ours_at = Some(f[1].to_string());
            } else {
                others.push(f[1].to_string());
            }
        }
        ours_at.is_some_and(|a| others.contains(&a))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = ours;
        false
    }
}

/// Starts one accept loop per socket, each on its worker's runtime.
pub fn start(
    spec: Listener,
    bound: Bound,
    tls: Option<Arc<rustls::ServerConfig>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    gauge: Gauge,
    rejected: Counter,
    workers: &[tokio::runtime::Handle],
) -> std::io::Result<ListenerHandle> {
    let settings = Arc::new(ArcSwap::from_pointee(Settings::new(&spec, tls)));
    let (stop_tx, stop_rx) = watch::channel(None);
    let (closed_tx, closed_rx) = watch::channel(false);
    let open = Arc::new((
        std::sync::atomic::AtomicUsize::new(bound.sockets.len()),
        closed_tx,
    ));
    let name: Arc<str> = spec.id.to_string().into();
    let mut tasks = Vec::with_capacity(bound.sockets.len());
    for (i, socket) in bound.sockets.into_iter().enumerate() {
        let worker = &workers[i % workers.len().max(1)];
        let accept = AcceptLoop {
            name: name.clone(),
            settings: settings.clone(),
            snapshot: snapshot.clone(),
            gauge: gauge.clone(),
            rejected: rejected.clone(),
            stop: stop_rx.clone(),
            open: open.clone(),
        };
        tasks.push(worker.spawn(accept.run(socket)));
    }
    Ok(ListenerHandle {
        spec,
        local_addr: bound.local_addr,
        settings,
        stop: stop_tx,
        closed: closed_rx,
        tasks,
    })
}

/// One worker's accept loop of a listener.
struct AcceptLoop {
    name: Arc<str>,
    settings: Arc<ArcSwap<Settings>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    gauge: Gauge,
    rejected: Counter,
    stop: watch::Receiver<Option<Duration>>,
    /// Sockets of this listener still open, and the signal sent when none is.
    open: Arc<(std::sync::atomic::AtomicUsize, watch::Sender<bool>)>,
}

impl AcceptLoop {
    async fn run(mut self, socket: std::net::TcpListener) {
        // Registered here, on the worker's own runtime, so its connections are served there.
        let tcp = match TcpListener::from_std(socket) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(listener = %self.name, "cannot register the listening socket: {e}");
                None
            }
        };
        let connections = Drain::default();
        let drain = match &tcp {
            Some(tcp) => self.accept(tcp, &connections).await,
            None => Duration::ZERO,
        };
        drop(tcp);
        if self
            .open
            .0
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            let _ = self.open.1.send(true);
        }
        if connections.shutdown(drain).await {
            tracing::warn!(listener = %self.name, "drain deadline passed; remaining connections closed");
        }
    }

    /// Accepts until stopped; returns how long to drain.
    async fn accept(&mut self, tcp: &TcpListener, connections: &Drain) -> Duration {
        loop {
            tokio::select! {
                changed = self.stop.changed() => {
                    let drain = if changed.is_ok() { *self.stop.borrow() } else { Some(Duration::ZERO) };
                    if let Some(d) = drain {
                        return d;
                    }
                }
                accepted = tcp.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(listener = %self.name, "accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let settings = self.settings.load_full();
                    // The gauge is the listener's count of open connections (all workers): the
                    // add that counts a connection also checks the limit, so it costs nothing more.
                    if self.gauge.inc() >= settings.max_connections {
                        self.gauge.dec();
                        self.rejected.inc();
                        tracing::debug!(listener = %self.name, %peer, "at maxConnections; closing");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let conn = Accepted {
                        listener: self.name.clone(),
                        info: Arc::new(ConnInfo::new(peer, settings.scheme, settings.escaped_slashes)),
                        settings,
                        snapshot: self.snapshot.clone(),
                        token: connections.token(),
                    };
                    let gauge = self.gauge.clone();
                    tokio::spawn(async move {
                        conn.serve(stream).await;
                        gauge.dec();
                    });
                }
            }
        }
    }
}

/// A connection just accepted, with what it is served with.
struct Accepted {
    listener: Arc<str>,
    settings: Arc<Settings>,
    info: Arc<ConnInfo>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    token: DrainToken,
}

impl Accepted {
    async fn serve(self, stream: TcpStream) {
        let Accepted {
            listener,
            settings,
            mut info,
            snapshot,
            token,
        } = self;
        let (protocols, idle, peer) = (&settings.protocols, settings.idle, info.peer);
        if let Some(mode) = &settings.stream {
            let conn = Passthrough {
                listener: &listener,
                mode,
                idle,
                peer,
            };
            return conn.serve(stream, &snapshot, token).await;
        }
        let Some(acceptor) = &settings.tls else {
            // Bounded by the idle timeout: a client that connects and says nothing is closed
            // like an idle one.
            if let Ok(Some(h2)) = tokio::time::timeout(idle, sniff_h2(&stream)).await {
                serve(token, protocols, h2, idle, stream, info, snapshot).await;
            }
            return;
        };
        let handshake = async {
            let mut stream = stream;
            if !tls::starts_with_handshake(&mut stream).await {
                return None;
            }
            Some(acceptor.accept(stream).await)
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Some(Ok(tls))) => {
                // Over TLS, HTTP/2 is negotiated by ALPN (RFC 9113 §3.2).
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                // Only listeners with `clientAuth` ask for (and verify) a client certificate.
                if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    if let Some(info) = Arc::get_mut(&mut info) {
                        info.client_cert = ClientCert::from_der(leaf);
                    }
                }
                serve(token, protocols, h2, idle, tls, info, snapshot).await;
            }
            Ok(None) => tracing::debug!(%peer, "plain HTTP on a TLS port; answered 400"),
            Ok(Some(Err(e))) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The race `bind` closes: another process joins between the free-port check and the group's
    /// bind. Simulated by a socket of the same group that is not ours.
    #[tokio::test]
    async fn a_stranger_in_the_socket_group_is_found() {
        let alone = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        assert!(!strangers_in_group(&alone.sockets));
        let stranger = bind_group(alone.local_addr, 1);
        assert!(
            stranger.is_err(),
            "a socket without SO_REUSEPORT cannot join"
        );
        let joined = bind_group(alone.local_addr, 2).unwrap();
        assert!(strangers_in_group(&joined.sockets));
        assert!(strangers_in_group(&alone.sockets));
    }
}
