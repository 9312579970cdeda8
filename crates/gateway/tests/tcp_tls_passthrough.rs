//! `TCP` and `TLS` passthrough listeners end to end: real sockets, curl and `openssl s_server` as
//! the TLS peers (the gateway holds no certificate), a real rustls ClientHello sent in pieces, and
//! reloads with tunnels open.

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{Client, TestGateway};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server that greets each connection with its name and a newline, then echoes every byte
/// until the client half-closes, then closes.
async fn echo(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                s.write_all(format!("{name}\n").as_bytes()).await?;
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await?;
                w.shutdown().await
            });
        }
    });
    (addr, task)
}

/// Connects through the gateway, reads the greeting, sends `payload`, half-closes, and returns
/// the greeting and everything echoed.
async fn round_trip(gateway: SocketAddr, payload: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(gateway).await.unwrap();
    let mut greeting = Vec::new();
    while !greeting.ends_with(b"\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed before the greeting"
        );
        greeting.push(b[0]);
    }
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let recv = r.read_to_end(&mut echoed);
    let ((), read) = tokio::join!(send, recv);
    read.unwrap();
    (String::from_utf8(greeting).unwrap(), echoed)
}

async fn metrics(gw: &TestGateway) -> String {
    let url = format!("http://{}/metrics", gw.admin);
    Client::new().get(&url, &[]).await.unwrap().text()
}

/// A port nothing listens on.
fn dead_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_passthrough_balances_byte_exact_over_two_backends() {
    let (one, _a) = echo("one").await;
    let (two, _b) = echo("two").await;
    let yaml = fill(
        r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: db}
spec: {address: "127.0.0.1:0", protocol: TCP, backend: db}
---
kind: Listener
metadata: {name: gone}
spec: {address: "127.0.0.1:0", protocol: TCP, backend: nowhere}
---
kind: Backend
metadata: {name: db}
spec: {endpoints: ["{one}", "{two}"]}
---
kind: Backend
metadata: {name: nowhere}
spec:
  endpoints: ["{dead}"]
  timeouts: {connect: 1s}
"#,
        &[
            ("one", &one.to_string()),
            ("two", &two.to_string()),
            ("dead", &dead_port().to_string()),
        ],
    );
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.addr("db").await;
    // 1 MiB of every byte value, so a lost, added or changed byte shows.
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (greeting, echoed) = round_trip(addr, &payload).await;
        assert!(echoed == payload, "echo differs from what was sent");
        seen.push(greeting);
    }
    let ones = seen.iter().filter(|g| *g == "one\n").count();
    assert_eq!((ones, seen.len() - ones), (5, 5), "round robin: {seen:?}");

    // No endpoint can be reached: the client's connection is closed, and counted.
    let mut s = TcpStream::connect(gw.addr("gone").await).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");

    let m = metrics(&gw).await;
    for line in [
        r#"gatehouse_stream_connections_total{listener="default/db",result="forwarded"} 10"#,
        r#"gatehouse_stream_connections_total{listener="default/gone",result="connect_failed"} 1"#,
        r#"gatehouse_tunnel_bytes_total{protocol="tcp",backend="default/db",direction="upstream"} 10485760"#,
    ] {
        assert!(m.contains(line), "missing `{line}` in\n{m}");
    }
}

/// `openssl s_server -www` with `cert`, on a free port; stopped on drop. Its stdout stays open
/// (a closed pipe would kill it at its next log line).
struct SServer(
    Child,
    SocketAddr,
    #[allow(dead_code)] std::io::BufReader<std::process::ChildStdout>,
);

impl SServer {
    fn start(dir: &std::path::Path, name: &str) -> SServer {
        let mut child = Command::new("openssl")
            .args(["s_server", "-www", "-accept", "127.0.0.1:0"])
            .arg("-cert")
            .arg(dir.join(format!("{name}.pem")))
            .arg("-key")
            .arg(dir.join(format!("{name}-key.pem")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is installed");
        // Ready once it prints the address it accepts on.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "s_server exited");
            if let Some(a) = line.trim().strip_prefix("ACCEPT ") {
                break a.parse().unwrap();
            }
        };
        SServer(child, addr, out)
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// curl to `https://{host}:{port}/` resolved to the gateway, trusting only `ca`: exit status and
/// response body.
fn curl(host: &str, port: u16, ca: &std::path::Path) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl is installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_routes_by_sni_to_two_backends() {
    let dir = tempfile::tempdir().unwrap();
    for (name, host) in [("a", "a.test"), ("b", "*.b.test")] {
        let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
        std::fs::write(dir.path().join(format!("{name}.pem")), c.cert.pem()).unwrap();
        let key = c.key_pair.serialize_pem();
        std::fs::write(dir.path().join(format!("{name}-key.pem")), key).unwrap();
    }
    let a = SServer::start(dir.path(), "a");
    let b = SServer::start(dir.path(), "b");
    let yaml = fill(
        r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: edge}
spec: {address: "127.0.0.1:0", protocol: TLS}
---
kind: Backend
metadata: {name: a}
spec: {endpoints: ["{a}"]}
---
kind: Backend
metadata: {name: b}
spec: {endpoints: ["{b}"]}
---
kind: Route
metadata: {name: a}
spec:
  hosts: [a.test]
  rules: [{backends: [{backend: a}]}]
---
kind: Route
metadata: {name: b}
spec:
  hosts: ["*.b.test"]
  rules: [{backends: [{backend: b}]}]
"#,
        &[("a", &a.1.to_string()), ("b", &b.1.to_string())],
    );
    let gw = TestGateway::start(&yaml).await;
    let port = gw.addr("edge").await.port();
    let (ca_a, ca_b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    // Each name reaches the server holding its certificate: curl verifies it end to end, which
    // only works if the gateway did not terminate TLS.
    let (code, body) = tokio::task::spawn_blocking({
        let ca = ca_a.clone();
        move || curl("a.test", port, &ca)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "a.test: {body}");
    assert!(body.contains("s_server"), "{body}");
    let (code, body) = tokio::task::spawn_blocking({
        let ca = ca_b.clone();
        move || curl("x.b.test", port, &ca)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "x.b.test: {body}");
    // a.test's server presents a.test's certificate, never b's.
    let (code, _) = tokio::task::spawn_blocking(move || curl("a.test", port, &ca_b))
        .await
        .unwrap();
    assert_ne!(code, 0, "a.test must not verify against b's certificate");
    // A name no route has: the connection is closed during the handshake (curl: 35).
    let (code, _) = tokio::task::spawn_blocking(move || curl("c.test", port, &ca_a))
        .await
        .unwrap();
    assert_eq!(code, 35, "unknown name: handshake fails");

    let m = metrics(&gw).await;
    for line in [
        r#"gatehouse_stream_connections_total{listener="default/edge",result="forwarded"} 3"#,
        r#"gatehouse_stream_connections_total{listener="default/edge",result="no_route"} 1"#,
    ] {
        assert!(m.contains(line), "missing `{line}` in\n{m}");
    }
}

/// A real rustls ClientHello, written a few bytes at a time with a pause-free flush after each
/// piece, reaches the backend its SNI names byte for byte, followed by what the client sent
/// after it. Plain HTTP on the TLS port is closed and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_client_hello_is_routed_and_forwarded_byte_exact() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let recorder = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let _ = tx.send(got);
    });
    let yaml = fill(
        r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: edge}
spec: {address: "127.0.0.1:0", protocol: TLS}
---
kind: Backend
metadata: {name: rec}
spec: {endpoints: ["{rec}"]}
---
kind: Route
metadata: {name: frag}
spec:
  hosts: [frag.test]
  rules: [{backends: [{backend: rec}]}]
"#,
        &[("rec", &recorder.to_string())],
    );
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.addr("edge").await;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("FRAG.test").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100, "a ClientHello");

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for piece in hello.chunks(7) {
        s.write_all(piece).await.unwrap();
        s.flush().await.unwrap();
    }
    s.write_all(b"after the hello").await.unwrap();
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    let mut expected = hello.clone();
    expected.extend_from_slice(b"after the hello");
    assert!(got == expected, "the backend got other bytes than sent");

    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: frag.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), plain.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    let m = metrics(&gw).await;
    let line = r#"gatehouse_stream_connections_total{listener="default/edge",result="bad_client_hello"} 1"#;
    assert!(m.contains(line), "missing `{line}` in\n{m}");
}

/// Sends message `i` through the tunnel and reads its echo.
async fn ping(s: &mut TcpStream, i: usize) {
    let msg = format!("message {i:04}");
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg.as_bytes());
}

const RELOADABLE: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}, streamDrainTimeout: 3s}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP, timeouts: {idle: {idle}}}
---
kind: Backend
metadata: {name: db}
spec: {endpoints: ["{db}"]}
---
kind: Route
metadata: {name: r}
spec:
  rules: [{backends: [{backend: db}]}]
"#;

const DB_LISTENER: &str = r#"
---
kind: Listener
metadata: {name: db}
spec: {address: "127.0.0.1:0", protocol: TCP, backend: db}
"#;

/// Reloads that keep a TCP listener and its backend leave its open tunnel alone (20 of them, a
/// message through the tunnel after each, none lost); a reload that removes the listener lets
/// the tunnel run for `streamDrainTimeout`, then closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_survive_reloads_and_a_removed_listener_drains_after_its_grace() {
    let (db, _task) = echo("db").await;
    let db = db.to_string();
    let config = |idle: &str, with_db: bool| {
        let base = fill(RELOADABLE, &[("db", &db), ("idle", idle)]);
        if with_db {
            base + DB_LISTENER
        } else {
            base
        }
    };
    let gw = TestGateway::start(&config("60s", true)).await;
    let mut s = TcpStream::connect(gw.addr("db").await).await.unwrap();
    let mut greeting = [0u8; 3];
    s.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"db\n");
    for i in 0..20 {
        gw.write(&config(&format!("{}s", 30 + i), true));
        gw.gw.reload("test").await.expect("valid reload");
        ping(&mut s, i).await;
    }
    // Timed from before the reload, so the grace cannot have started earlier; a grace of seconds,
    // so a loaded machine still gets the ping below through within it.
    let removed = Instant::now();
    gw.write(&config("60s", false));
    gw.gw.reload("test").await.expect("valid reload");
    // Within the grace the tunnel still carries data.
    ping(&mut s, 99).await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await;
    let after = removed.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(after >= Duration::from_secs(3), "closed after {after:?}");
    assert!(after < Duration::from_secs(13), "closed after {after:?}");
}
