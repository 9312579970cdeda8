//! Exchanges that end cleanly when either side misbehaves, over raw sockets on both sides: a
//! broken or abandoned request body, an upstream response that stalls, is badly framed or carries
//! a status or coding the proxy cannot pass on, and an HTTP/1.0 upstream (a real
//! `python3 -m http.server`-style server) behind a keep-alive client.
//!
//! Each test says the exact bytes it sends and checks what the client got, what the upstream saw
//! (its connection closed, never pooled) and the access-log line.

use gatehouse_testkit::{wait_for, TestGateway};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A guard against a hung test, never a synchronisation: every wait below ends on an event.
const LIMIT: Duration = Duration::from_secs(10);

/// What the scripted upstream does once it has read a request head.
#[derive(Clone, Copy)]
enum Then {
    /// Writes the bytes and keeps the connection open for more requests.
    Reply(&'static [u8]),
    /// Writes the bytes and then holds the connection, reading (and discarding) what arrives.
    ReplyAndHold(&'static [u8]),
    /// Writes nothing; reads (and discards) what arrives until the peer closes.
    Hold,
}

/// A raw-socket upstream answering by the request path, counting connections and the ones the
/// gateway closed, and reporting each request head it read.
struct Scripted {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    heads: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

fn script(path: &str) -> Then {
    match path {
        "/hold" => Then::Hold,
        "/stall" => Then::ReplyAndHold(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello"),
        "/bad-chunk" => Then::ReplyAndHold(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzzz\r\n",
        ),
        "/status-600" => Then::Reply(b"HTTP/1.1 600 Odd\r\ncontent-length: 2\r\n\r\nok"),
        "/status-999" => Then::Reply(b"HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\nok"),
        "/length-list" => Then::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello"),
        "/length-twice" => {
            Then::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello")
        }
        "/length-differs" => Then::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello!"),
        "/gzip-chunked" => Then::Reply(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        "/gzip" => Then::ReplyAndHold(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nhello"),
        _ => Then::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    }
}

async fn scripted() -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_scripted(sock, tx.clone(), c.clone()));
        }
    });
    Scripted {
        addr,
        accepted,
        closed,
        heads: tokio::sync::Mutex::new(rx),
    }
}

async fn serve_scripted(
    mut sock: TcpStream,
    heads: mpsc::UnboundedSender<String>,
    closed: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    let mut holding = false;
    loop {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        match end {
            Some(end) if !holding => {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = heads.send(head);
                match script(&path) {
                    Then::Reply(b) => {
                        let _ = sock.write_all(b).await;
                    }
                    Then::ReplyAndHold(b) => {
                        let _ = sock.write_all(b).await;
                        holding = true;
                    }
                    Then::Hold => holding = true,
                }
            }
            _ => {
                let mut chunk = [0u8; 4096];
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(n) => {
                        if !holding {
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            }
        }
    }
}

impl Scripted {
    /// The next request head the upstream read.
    async fn head(&self) -> String {
        tokio::time::timeout(LIMIT, self.heads.lock().await.recv())
            .await
            .expect("the upstream receives a request")
            .expect("upstream alive")
    }

    async fn wait_closed(&self, n: usize) {
        let closed = self.closed.clone();
        wait_for("the gateway closes its upstream connections", || {
            let closed = closed.clone();
            async move { closed.load(Ordering::SeqCst) >= n }
        })
        .await;
    }
}

/// A gateway with one listener, one backend at `upstream` (with `backend_extra` added to its
/// spec) and the access log in a file.
async fn gateway(upstream: std::net::SocketAddr, backend_extra: &str) -> (TestGateway, Log) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {format: json, path: "LOG"}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]EXTRA}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
      timeout: 60s
"#
    .replace("LOG", &log.display().to_string())
    .replace("UPSTREAM", &upstream.to_string())
    .replace("EXTRA", backend_extra);
    let gw = TestGateway::start_in(dir, &yaml).await;
    (gw, Log(log))
}

struct Log(std::path::PathBuf);

impl Log {
    /// The access-log line of the request to `path`, once written.
    async fn line(&self, path: &str) -> serde_json::Value {
        let mut found = None;
        wait_for(&format!("an access-log line for {path}"), || {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["path"] == path);
            std::future::ready(found.is_some())
        })
        .await;
        found.expect("found")
    }
}

/// Reads one response head (through the blank line); returns it and the body bytes read with it.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return (head, buf[end + 4..].to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(LIMIT, s.read(&mut chunk))
            .await
            .expect("a response head arrives")
            .expect("read");
        assert!(n > 0, "closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until the gateway closes the connection (or resets it).
async fn read_to_close(s: &mut TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(LIMIT, s.read(&mut chunk))
            .await
            .expect("the gateway closes the connection")
        {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until `got` holds `want`.
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, want: &[u8]) {
    while !got.windows(want.len()).any(|w| w == want) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(LIMIT, s.read(&mut chunk))
            .await
            .expect("more of the response arrives")
            .expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(got));
        got.extend_from_slice(&chunk[..n]);
    }
}

fn status_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn a_malformed_request_body_is_400_at_once_and_its_upstream_connection_closes() {
    let up = scripted().await;
    let (_gw, log) = gateway(up.addr, "").await;
    let mut s = TcpStream::connect(_gw.addr("web").await).await.unwrap();
    // A valid first chunk, then a chunk-size line that is not hex.
    s.write_all(
        b"POST /hold HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzzz\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, body) = read_head(&mut s).await;
    assert_eq!(status_of(&head), "400", "{head}");
    // The rest of a broken body cannot be told from a next request: the connection ends.
    let body = read_to_close(&mut s, body).await;
    assert!(
        String::from_utf8_lossy(&body).contains("bad_request"),
        "{body:?}"
    );
    up.wait_closed(1).await;
    let line = log.line("/hold").await;
    assert_eq!(
        (line["status"].as_u64(), line["error"].as_str()),
        (Some(400), Some("bad_request"))
    );
    // The next request needs a new upstream connection: the broken one was not pooled.
    let mut s = TcpStream::connect(_gw.addr("web").await).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut s).await;
    assert_eq!(status_of(&head), "200", "{head}");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_hundred_malformed_bodies_at_once_hold_no_upstream_connection() {
    let up = scripted().await;
    let (gw, _log) = gateway(up.addr, "").await;
    let addr = gw.addr("web").await;
    // 100 requests of 80 bytes each: before, each held an upstream connection for the route
    // timeout, then got a 504.
    let clients = (0..100).map(|_| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /hold HTTP/1.1\r\nhost: t\r\nx-pad: 1234\r\ntransfer-encoding: chunked\r\n\r\nzzz\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_head(&mut s).await;
        status_of(&head).to_string()
    });
    let clients: Vec<_> = clients.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for c in clients {
        statuses.push(c.await.unwrap());
    }
    assert!(statuses.iter().all(|s| s == "400"), "{statuses:?}");
    let accepted = up.accepted.load(Ordering::SeqCst);
    up.wait_closed(accepted).await;
}

#[tokio::test]
async fn a_client_leaving_mid_body_aborts_the_upstream_request() {
    let up = scripted().await;
    let (gw, log) = gateway(up.addr, "").await;
    let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
    s.write_all(b"POST /hold HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    // Once the upstream has the request, the client goes away with 90 bytes unsent.
    up.head().await;
    drop(s);
    up.wait_closed(1).await;
    let line = log.line("/hold").await;
    assert_eq!(line["status"].as_u64(), Some(499), "{line}");
}

#[tokio::test]
async fn a_stalled_response_body_ends_after_the_backends_read_timeout() {
    let up = scripted().await;
    let (gw, log) = gateway(up.addr, ", timeouts: {read: 300ms}").await;
    let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
    let started = std::time::Instant::now();
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_head(&mut s).await;
    assert_eq!(status_of(&head), "200");
    // 5 of the 100 bytes promised, then the gateway gives up on the upstream and closes.
    let body = read_to_close(&mut s, body).await;
    assert_eq!(body, b"hello");
    assert!(started.elapsed() >= Duration::from_millis(300));
    up.wait_closed(1).await;
    let line = log.line("/stall").await;
    assert_eq!(line["error"].as_str(), Some("timeout"), "{line}");
    let metrics = gatehouse_testkit::Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("gatehouse_proxy_errors_total{route=\"default/r\",kind=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_stalled_body_is_logged_499() {
    let up = scripted().await;
    let (gw, log) = gateway(up.addr, "").await;
    let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, mut body) = read_head(&mut s).await;
    assert_eq!(status_of(&head), "200");
    read_until(&mut s, &mut body, b"hello").await;
    drop(s);
    up.wait_closed(1).await;
    let line = log.line("/stall").await;
    assert_eq!(line["status"].as_u64(), Some(499), "{line}");
}

#[tokio::test]
async fn a_malformed_chunked_response_body_is_logged_as_upstream_protocol() {
    let up = scripted().await;
    let (gw, log) = gateway(up.addr, "").await;
    let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
    s.write_all(b"GET /bad-chunk HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    // The head may or may not have been flushed before the body broke; either way the client's
    // chunked stream is cut before its last chunk, never mistaken for complete.
    let got = read_to_close(&mut s, Vec::new()).await;
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    up.wait_closed(1).await;
    let line = log.line("/bad-chunk").await;
    assert_eq!(line["error"].as_str(), Some("upstream_protocol"), "{line}");
}

#[tokio::test]
async fn statuses_outside_100_to_599_and_unknown_transfer_codings_are_502() {
    let up = scripted().await;
    let (gw, log) = gateway(up.addr, "").await;
    for path in [
        "/status-600",
        "/status-999",
        "/gzip-chunked",
        "/gzip",
        "/length-differs",
        // Repeated or listed lengths, even equal ones, are refused like conflicting ones.
        "/length-list",
        "/length-twice",
    ] {
        let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, mut body) = read_head(&mut s).await;
        assert_eq!(status_of(&head), "502", "{path}: {head}");
        read_until(&mut s, &mut body, b"}").await;
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("upstream_protocol"), "{path}: {text}");
        assert!(
            !text.contains(&up.addr.to_string()),
            "{path} leaks the upstream address: {text}"
        );
        let line = log.line(path).await;
        assert_eq!(line["error"].as_str(), Some("upstream_protocol"), "{path}");
    }
}

/// `python3 -m http.server`: its file handler (HTTP/1.0, answers with a length) serving `file`
/// from a temporary directory, plus `/nolength`, answered without a length (close-delimited) as
/// HTTP/1.0 CGI-style handlers do.
const PY_HTTP10: &str = r#"
import functools, http.server, sys

class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/nolength":
            return super().do_GET()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"hello from python\n")
    def log_message(self, *a):
        pass

class S(http.server.ThreadingHTTPServer):
    # The default backlog of 5 refuses connections under a burst.
    request_queue_size = 128

s = S(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Python {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    /// The served directory, removed when the server is dropped.
    _dir: tempfile::TempDir,
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_http10() -> Python {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "hello from python\n").unwrap();
    let mut child = std::process::Command::new("python3")
        .args(["-c", PY_HTTP10])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("python prints its port");
    let port: u16 = line.trim().parse().expect("a port");
    Python {
        child,
        addr: ([127, 0, 0, 1], port).into(),
        _dir: dir,
    }
}

#[tokio::test]
async fn an_http_1_0_upstream_does_not_downgrade_a_keep_alive_client() {
    let py = python_http10();
    let (gw, _log) = gateway(py.addr, "").await;
    let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
    // Three requests on one client connection: each answer is HTTP/1.1 and keeps it open.
    for path in ["/file", "/nolength", "/file"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, mut body) = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("connection: close"), "{path}: {head}");
        if path == "/nolength" {
            // Close-delimited upstream, chunked downstream.
            assert!(lower.contains("transfer-encoding: chunked"), "{head}");
            read_until(&mut s, &mut body, b"0\r\n\r\n").await;
            assert_eq!(body, b"12\r\nhello from python\n\r\n0\r\n\r\n");
        } else {
            read_until(&mut s, &mut body, b"python\n").await;
            assert_eq!(body, b"hello from python\n");
        }
    }
    // And curl, the client users have, reuses its connection.
    let url = gw.url("web").await;
    let args = [
        "-sv".to_string(),
        format!("{url}/nolength"),
        format!("{url}/file"),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl").args(&args).output()
    })
    .await
    .unwrap()
    .expect("curl runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from python\nhello from python\n"
    );
    assert_eq!(err.matches("< HTTP/1.1 200").count(), 2, "{err}");
    assert!(
        err.contains("Re-using existing connection") || err.contains("Reusing existing"),
        "{err}"
    );
}

#[tokio::test]
async fn a_stalled_http2_response_body_ends_after_the_read_timeout_too() {
    // The test upstream's `/gate` sends `first\n`, then waits for a release that never comes.
    let up = gatehouse_testkit::Upstream::start("h2").await;
    let (gw, log) = gateway(up.addr, ", protocol: HTTP2, timeouts: {read: 300ms}").await;
    let mut s = TcpStream::connect(gw.addr("web").await).await.unwrap();
    s.write_all(b"GET /gate HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = read_to_close(&mut s, body).await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("first\n") && !text.contains("rest"), "{text}");
    let line = log.line("/gate").await;
    assert_eq!(line["error"].as_str(), Some("timeout"), "{line}");
}
