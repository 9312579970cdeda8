//! Connection handling over raw sockets: the idle timeout (idle keep-alive connections and
//! trickling request heads are closed, a request that outlasts it is not cut) and telling HTTP/1
//! from HTTP/2 by the first bytes however they are split.

use gatehouse_testkit::gateway::one_route;
use gatehouse_testkit::{TestGateway, Upstream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_millis(400);
const LIMIT: Duration = Duration::from_secs(10);

async fn gateway(up: &Upstream) -> (TestGateway, std::net::SocketAddr) {
    let gw = TestGateway::start(&one_route(up.addr, "timeouts: {idle: 400ms}")).await;
    let addr = gw.addr("web").await;
    (gw, addr)
}

/// Reads until the peer closes; returns everything read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut all))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    all
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::start("a").await;
    let (_gw, addr) = gateway(&up).await;
    // Every lower bound below is timed from before the connect: the gateway's idle timer cannot
    // start earlier, however the loaded machine schedules the two sides.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let waited = started.elapsed();
    assert!(
        waited >= IDLE,
        "closed after {waited:?}, before the idle timeout"
    );

    // A connection that never sends anything is closed the same way.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut s).await.is_empty());
    assert!(started.elapsed() >= IDLE);
}

#[tokio::test]
async fn a_request_head_that_trickles_in_is_cut_off() {
    let up = Upstream::start("a").await;
    let (_gw, addr) = gateway(&up).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    // One header byte every 50 ms: each write is activity, but no request head ever completes.
    let mut buf = [0u8; 1];
    let closed = loop {
        assert!(
            started.elapsed() < LIMIT,
            "a trickling head is never cut off"
        );
        if s.write_all(b"x").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => panic!("no response was asked for"),
            Err(_) => {}
        }
    };
    assert!(closed);
    assert!(started.elapsed() >= IDLE);
}

#[tokio::test]
async fn a_half_sent_request_head_is_cut_off() {
    let up = Upstream::start("a").await;
    let (_gw, addr) = gateway(&up).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Part of a head, then silence: hyper waits for the rest, so the idle close must not.
    s.write_all(b"GET /x HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut s).await.is_empty());
    assert!(started.elapsed() >= IDLE);
}

#[tokio::test]
async fn a_request_longer_than_the_idle_timeout_completes() {
    let up = Upstream::start("a").await;
    let (_gw, addr) = gateway(&up).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The upstream takes 3 idle periods to answer; nothing moves on the connection meanwhile.
    s.write_all(b"GET /slow/1200 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\r\n\r\nslept 1200ms"), "{text}");
}

#[tokio::test]
async fn the_protocol_is_told_apart_however_the_first_bytes_are_split() {
    let up = Upstream::start("a").await;
    let (_gw, addr) = gateway(&up).await;
    // "P" could begin the HTTP/2 preface ("PRI * HTTP/2.0"); the gateway must wait for more
    // rather than guess. The pause makes the client's first packet that one byte.
    for (first, rest) in [
        (
            "P",
            "OST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
        ),
        (
            "PR",
            "OPFIND /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        ),
        (
            "G",
            "ET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(first.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        s.write_all(rest.as_bytes()).await.unwrap();
        let got = read_to_close(&mut s).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{first}{rest}: {text}");
    }
    // The real preface is served as HTTP/2: the gateway answers with its SETTINGS frame
    // (type 4 in the fifth byte of the frame header).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(LIMIT, s.read_exact(&mut frame))
        .await
        .expect("an HTTP/2 answer")
        .unwrap();
    assert_eq!(frame[3], 4, "a SETTINGS frame, got {frame:?}");
}
