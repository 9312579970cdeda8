//! The HTTP/1.1 upstream client against a scripted upstream that says exactly the bytes each test
//! needs: framings hyper's own server never produces (close-delimited bodies, interim responses,
//! conflicting lengths), broken responses, and pooled connections the upstream closes.

use gatehouse_testkit::gateway::one_route;
use gatehouse_testkit::{Client, TestGateway};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the scripted upstream answers to a path, and whether it closes the connection after.
fn script(path: &str) -> (&'static [u8], bool) {
    match path {
        "/small" => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
        // Answers, then closes the idle connection without saying so.
        "/then-close" => (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true),
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            false,
        ),
        "/until-close" => (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
        "/interim" => (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone",
            false,
        ),
        "/smuggle" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            false,
        ),
        "/two-lengths" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
            true,
        ),
        "/garbage" => (b"NOT HTTP AT ALL\r\n\r\n", true),
        "/cut-body" => (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this", true),
        "/close-header" => (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        _ => (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", false),
    }
}

struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
}

/// Serves `script` to GET requests (no bodies), many per connection.
async fn scripted() -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                // After `/arm`, the next request on this connection finds it closing: the race
                // of an upstream idle timeout firing just as a pooled connection is reused.
                let mut armed = false;
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    if armed {
                        return;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    armed = path == "/arm";
                    let (reply, close) = script(if armed { "/small" } else { &path });
                    if sock.write_all(reply).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Scripted { addr, connections }
}

async fn gateway(up: &Scripted) -> (TestGateway, String) {
    let gw = TestGateway::start(&one_route(up.addr, "")).await;
    let url = gw.url("web").await;
    (gw, url)
}

#[tokio::test]
async fn every_response_framing_arrives_whole() {
    let up = scripted().await;
    let (_gw, url) = gateway(&up).await;
    let c = Client::new();
    let r = c.get(&format!("{url}/chunked"), &[]).await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello world"));
    let r = c.get(&format!("{url}/until-close"), &[]).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "until the end")
    );
    // Interim responses are consumed; the client gets the final one.
    let r = c.get(&format!("{url}/interim"), &[]).await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (201, "done"));
}

#[tokio::test]
async fn broken_responses_are_502_and_the_gateway_keeps_serving() {
    let up = scripted().await;
    let (_gw, url) = gateway(&up).await;
    let c = Client::new();
    for path in ["/two-lengths", "/garbage"] {
        let r = c.get(&format!("{url}{path}"), &[]).await.unwrap();
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "upstream_protocol", "{path}");
    }
    // Cut off mid-body after the head went out: the client's response is cut off too, and must
    // not be mistaken for a complete one.
    let cut = c.get(&format!("{url}/cut-body"), &[]).await;
    assert!(cut.is_err(), "a truncated body must fail, got {cut:?}");
    let r = c.get(&format!("{url}/small"), &[]).await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
}

#[tokio::test]
async fn connections_the_upstream_closes_are_not_reused() {
    let up = scripted().await;
    let (_gw, url) = gateway(&up).await;
    let c = Client::new();
    // Each answer is followed by the upstream closing the connection, announced or not; the next
    // request must still succeed, on a new connection.
    for i in 0..20 {
        let path = if i % 2 == 0 {
            "/then-close"
        } else {
            "/close-header"
        };
        let r = c.get(&format!("{url}{path}"), &[]).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "ok"),
            "request {i}"
        );
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 20);
    // A close-delimited body can never be followed by another response on its connection.
    for _ in 0..3 {
        let r = c.get(&format!("{url}/until-close"), &[]).await.unwrap();
        assert_eq!(r.text(), "until the end");
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 23);
    // Well-framed keep-alive answers share one connection.
    for _ in 0..10 {
        let r = c.get(&format!("{url}/small"), &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 24);
}

#[tokio::test]
async fn a_smuggling_shaped_response_is_502_and_not_followed_by_reuse() {
    let up = scripted().await;
    let (_gw, url) = gateway(&up).await;
    let c = Client::new();
    for _ in 0..3 {
        // Transfer-Encoding beside Content-Length (RFC 9112 §6.1): refused, never guessed at.
        let r = c.get(&format!("{url}/smuggle"), &[]).await.unwrap();
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.json()["error"], "upstream_protocol");
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        3,
        "a response with both a length and a transfer coding makes its connection single-use"
    );
}

#[tokio::test]
async fn a_reused_connection_closed_under_a_request_is_retried_when_safe() {
    let up = scripted().await;
    let (_gw, url) = gateway(&up).await;
    let c = Client::new();
    for i in 0..5 {
        assert_eq!(c.get(&format!("{url}/arm"), &[]).await.unwrap().status, 200);
        // Sent on the pooled connection, which closes without an answer: a body-less request
        // is sent again on a new connection, invisibly to the client.
        let r = c.get(&format!("{url}/small"), &[]).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "ok"),
            "round {i}"
        );
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 6);
    // With a body, the request cannot be replayed: the client gets a 502 instead.
    assert_eq!(c.get(&format!("{url}/arm"), &[]).await.unwrap().status, 200);
    let post = http::Request::post(format!("{url}/small"))
        .body(bytes::Bytes::from_static(b"payload").into())
        .unwrap();
    let r = c.send(post).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
}
