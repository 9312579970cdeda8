//! Request limits over real sockets: a policy's `requestLimits.maxBodySize` refuses a declared
//! `Content-Length` over it at once and cuts a chunked body that streams past it (413, JSON); the
//! listener's URI limit answers 414 in the same JSON shape.

use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::{TestGateway, Upstream};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(upstream: SocketAddr) -> String {
    let route = r#"
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Policy
metadata: {name: small-bodies}
spec:
  requestLimits: {maxBodySize: 64KiB}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /limited}}
      backends: [{backend: up}]
      policies: [small-bodies]
    - backends: [{backend: up}]
"#;
    format!(
        "{GATEWAY_AND_WEB}{}",
        route.replace("UPSTREAM", &upstream.to_string())
    )
}

/// Writes `head`, then `body` in pieces (ignoring a write the gateway refused by closing), and
/// reads the answer until the gateway closes or `connection: close` ends it.
async fn exchange(addr: SocketAddr, head: String, body: Vec<u8>) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(head.as_bytes()).await;
    for piece in body.chunks(16 * 1024) {
        if s.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the gateway answers and closes");
    String::from_utf8_lossy(&got).into_owned()
}

fn chunked(total: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = vec![b'x'; 8 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&chunk[..n]);
        out.extend_from_slice(b"\r\n");
        left -= n;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn post(path: &str, framing: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n{framing}\r\n\r\n")
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_upstream_sees_it() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let addr = gw.addr("web").await;
    let head = post("/limited", "content-length: 1048576");
    let got = exchange(addr, head, Vec::new()).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("\"error\":\"payload_too_large\""), "{got}");
    assert!(got.contains("x-request-id"), "{got}");
    assert_eq!(up.requests(), 0, "refused before forwarding");

    let small = vec![b'y'; 64 * 1024];
    let head = post("/limited", &format!("content-length: {}", small.len()));
    let got = exchange(addr, head, small).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "exactly the limit passes: {got}"
    );
    // Rules without the policy are not limited.
    let big = vec![b'z'; 256 * 1024];
    let head = post("/open", &format!("content-length: {}", big.len()));
    let got = exchange(addr, head, big).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(200)]
    );
}

#[tokio::test]
async fn a_chunked_body_is_cut_where_it_passes_the_limit() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let addr = gw.addr("web").await;
    let got = exchange(
        addr,
        post("/limited", "transfer-encoding: chunked"),
        chunked(1024 * 1024),
    )
    .await;
    assert!(
        got.starts_with("HTTP/1.1 413"),
        "{}",
        &got[..got.len().min(300)]
    );
    assert!(got.contains("\"error\":\"payload_too_large\""), "{got}");

    let got = exchange(
        addr,
        post("/limited", "transfer-encoding: chunked"),
        chunked(40 * 1024),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.contains("\"bodyBytes\":40960"),
        "the whole body arrived: {got}"
    );
}

#[tokio::test]
async fn a_request_target_past_the_listener_limit_gets_a_json_414() {
    let up = Upstream::start("a").await;
    let yaml = config(up.addr).replace(
        "protocol: HTTP}",
        "protocol: HTTP, limits: {maxUriLength: 1KiB}}",
    );
    let gw = TestGateway::start(&yaml).await;
    let addr = gw.addr("web").await;
    let head = format!(
        "GET /{} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        "p".repeat(2048)
    );
    let got = exchange(addr, head, Vec::new()).await;
    assert!(got.starts_with("HTTP/1.1 414"), "{got}");
    assert!(got.contains("content-type: application/json"), "{got}");
    assert!(got.contains("\"error\":\"uri_too_long\""), "{got}");
}
