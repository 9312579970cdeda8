//! Listener limits over real sockets: how much of a request head a connection may make the gateway
//! hold (431), how long a request target may be (414) and how many connections a listener keeps
//! open at once (the rest are closed at accept and counted).

use gatehouse_testkit::gateway::one_route;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// Sends `head` on a fresh connection and reads the answer until the gateway closes or the
/// response is complete (`Connection: close` is asked for).
async fn exchange(addr: SocketAddr, head: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The gateway may answer and close before the whole head is written.
    let _ = s.write_all(head).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut got))
        .await
        .expect("the gateway answers and closes");
    String::from_utf8_lossy(&got).into_owned()
}

fn with_header(path: &str, value_len: usize) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(value_len)
    )
    .into_bytes()
}

#[tokio::test]
async fn a_request_head_past_the_default_64kib_gets_431_and_one_under_it_is_forwarded() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&one_route(up.addr, "")).await;
    let addr = gw.addr("web").await;

    let ok = exchange(addr, &with_header("/under", 60 * 1024)).await;
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "{}",
        &ok[..ok.len().min(200)]
    );
    for size in [100 * 1024, 400 * 1024] {
        let got = exchange(addr, &with_header("/over", size)).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{size}: {got}");
        // The gateway's JSON error, not hyper's bare status line.
        let (head, body) = got.split_once("\r\n\r\n").expect("a complete answer");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("x-request-id: "), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(json["error"], "request_header_too_large", "{body}");
    }
    assert_eq!(
        up.requests(),
        1,
        "only the head under the limit reached the upstream"
    );
    let metrics = gatehouse_testkit::Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    let counted =
        "gatehouse_proxy_errors_total{route=\"none\",kind=\"request_header_too_large\"} 2";
    assert!(metrics.contains(counted), "{metrics}");
}

/// Bodiless 4xx answers of the gateway and its upstreams (a HEAD's) pass unchanged: only hyper's
/// own answers to heads it refused are replaced by JSON errors.
#[tokio::test]
async fn bodiless_431_and_400_answers_from_upstream_are_not_taken_for_parse_errors() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&one_route(up.addr, "")).await;
    let addr = gw.addr("web").await;
    for code in [431, 400, 414] {
        let head = format!("HEAD /status/{code} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        let got = exchange(addr, head.as_bytes()).await;
        assert!(got.starts_with(&format!("HTTP/1.1 {code}")), "{got}");
        assert!(!got.contains("application/json"), "{got}");
        // The upstream's length of `status N\n`, kept for a HEAD.
        assert!(got.contains("content-length: 11\r\n"), "{got}");
    }
    // A malformed head gets a JSON 400.
    let got = exchange(addr, b"GET / HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("\"error\":\"bad_request\""), "{got}");
}

// curl blocks its thread: the gateway runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_limit_is_configurable_and_applies_to_http2_header_lists() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&one_route(
        up.addr,
        "limits: {maxRequestHeadersSize: 16KiB}",
    ))
    .await;
    let addr = gw.addr("web").await;
    let got = exchange(addr, &with_header("/", 20 * 1024)).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    let got = exchange(addr, &with_header("/", 10 * 1024)).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(200)]
    );

    let h2 = |len: usize| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--http2-prior-knowledge"])
            .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
            .arg("-H")
            .arg(format!("x-big: {}", "a".repeat(len)))
            .arg(format!("http://{addr}/h2"))
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(h2(20 * 1024), "431 2");
    assert_eq!(h2(10 * 1024), "200 2");
}

// curl blocks its thread: the gateway runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_header_list_past_the_limit_gets_the_json_431() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&one_route(
        up.addr,
        "limits: {maxRequestHeadersSize: 16KiB}",
    ))
    .await;
    let addr = gw.addr("web").await;
    // (status, body) of a GET /h2 whose header list (RFC 7541 §4.1: name + value + 32 per field,
    // pseudo-fields included) is `size` bytes.
    let authority = addr.to_string();
    let fixed = (7 + 3 + 32) // :method GET
        + (7 + 4 + 32) // :scheme http
        + (10 + authority.len() + 32)
        + (5 + 3 + 32) // :path /h2
        + (10 + 1 + 32) // user-agent: t
        + (6 + 3 + 32) // accept: */*
        + (5 + 32); // x-big:
    let h2 = |size: usize| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--http2-prior-knowledge"])
            .args([
                "-w",
                "\n%{http_code} %{http_version}",
                "-H",
                "user-agent: t",
            ])
            .arg("-H")
            .arg(format!("x-big: {}", "a".repeat(size - fixed)))
            .arg(format!("http://{addr}/h2"))
            .output()
            .expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("curl's status line");
        (status.to_string(), body.to_string())
    };
    let (status, body) = h2(16 * 1024);
    assert_eq!(
        status, "200 2",
        "a list of exactly the limit is served: {body}"
    );
    for size in [16 * 1024 + 1, 30 * 1024] {
        let (status, body) = h2(size);
        assert_eq!(status, "431 2", "{size}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(json["error"], "request_header_too_large", "{body}");
        assert!(json["requestId"].is_string(), "{body}");
    }
    // Past twice the limit the HTTP/2 layer refuses the list itself, without decoding it for the
    // gateway: a bare 431.
    let (status, body) = h2(40 * 1024);
    assert_eq!(status, "431 2");
    assert!(!body.contains("request_header_too_large"), "{body}");
    assert_eq!(
        up.requests(),
        1,
        "only the list within the limit reached the upstream"
    );
    let metrics = Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    let counted =
        "gatehouse_proxy_errors_total{route=\"none\",kind=\"request_header_too_large\"} 2";
    assert!(metrics.contains(counted), "{metrics}");
}

#[tokio::test]
async fn a_request_target_past_max_uri_length_gets_414() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&one_route(up.addr, "limits: {maxUriLength: 1KiB}")).await;
    let addr = gw.addr("web").await;
    let long = format!("/{}", "p".repeat(1024));
    let got = exchange(addr, &with_header(&long, 1)).await;
    assert!(got.starts_with("HTTP/1.1 414"), "{got}");
    assert!(got.contains("\"error\":\"uri_too_long\""), "{got}");
    let query = format!("/?q={}", "q".repeat(1000));
    let got = exchange(addr, &with_header(&query, 1)).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(200)]
    );
    assert_eq!(up.requests(), 1);
}

/// A keep-alive connection that has been served one request, so the gateway holds it open.
async fn served_connection(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /status/204 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(LIMIT, s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf[..n].starts_with(b"HTTP/1.1 204").then_some(s)
}

#[tokio::test]
async fn connections_past_max_connections_are_closed_and_counted() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&one_route(up.addr, "limits: {maxConnections: 2}")).await;
    let addr = gw.addr("web").await;
    let first = served_connection(addr)
        .await
        .expect("first connection served");
    let _second = served_connection(addr)
        .await
        .expect("second connection served");
    assert!(
        served_connection(addr).await.is_none(),
        "a third connection is closed"
    );
    let metrics = Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("gatehouse_connections_rejected_total{listener=\"default/web\"} 1"),
        "{metrics}"
    );
    // Room again once a connection closes.
    drop(first);
    wait_for("a new connection is served after one closed", || async {
        served_connection(addr).await.is_some()
    })
    .await;
}
