//! Retries (`retry` on a rule), through a running gateway to scripted upstreams: a backend that
//! fails every other request gives clients no errors; a full outage is retried only within the
//! retry budget; a small POST body is replayed and a large one is not; a reset is retried on
//! another endpoint; a connect failure is retried whatever the method; a per-try timeout cuts one
//! attempt; nothing is retried once the response has started.

mod common;

use bytes::Bytes;
use common::with_gateway;
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::scripted::{Answer, Scripted};
use gatehouse_testkit::{Client, TestGateway};
use http_body_util::Full;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Backend `app` with `{endpoints}`; one rule with the retry policy `{retry}`.
const CONFIG: &str = r#"
---
kind: Backend
metadata: {name: app}
spec:
  endpoints: [{endpoints}]
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: app}]
      retry:
        {retry}
"#;

async fn gateway(endpoints: &str, retry: &str) -> (TestGateway, String) {
    let yaml = with_gateway(&fill(CONFIG, &[("endpoints", endpoints), ("retry", retry)]));
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("web").await;
    (gw, url)
}

/// The admin API's `/metrics` text.
async fn admin_metrics(gw: &TestGateway) -> String {
    Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .expect("metrics")
        .text()
}

fn quoted(up: &Scripted) -> String {
    format!("\"{}\"", up.addr)
}

fn post(url: &str, body: Vec<u8>) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

#[tokio::test]
async fn retries_turn_a_backend_failing_every_other_request_into_no_client_errors() {
    let up = Scripted::start(|n, _| {
        if n % 2 == 0 {
            Answer::Status(503)
        } else {
            Answer::Status(200)
        }
    })
    .await;
    // Every request needs its retry: a budget that allows as many retries as requests.
    let retry =
        r#"{attempts: 3, on: ["503"], backoff: {base: 1ms, max: 5ms}, budget: {percent: 100%}}"#;
    let (gw, url) = gateway(&quoted(&up), retry).await;
    let c = Client::new();
    // A client's own attempt count never reaches the upstream: the gateway's replaces it.
    let forged = [("x-gatehouse-attempts", "7")];
    for i in 0..200 {
        let r = c.get(&format!("{url}/x"), &forged).await.expect("response");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    // Each request's first attempt failed and its second answered.
    assert_eq!(up.count(), 400);
    let seen = up.seen();
    assert_eq!(seen[0].attempt.as_deref(), Some("1"));
    assert_eq!(seen[1].attempt.as_deref(), Some("2"));
    let m = admin_metrics(&gw).await;
    assert!(
        m.contains(r#"gatehouse_retries_total{route="default/r",backend="default/app"} 200"#),
        "{m}"
    );
}

#[tokio::test]
async fn the_budget_stops_retrying_during_a_full_outage() {
    let up = Scripted::start(|_, _| Answer::Status(503)).await;
    // 20% of the window's requests plus 1 per second over the 10 s window.
    let retry = r#"{attempts: 3, on: ["503"], backoff: {base: 1ms, max: 2ms}, budget: {percent: 20%, minPerSecond: 1}}"#;
    let (gw, url) = gateway(&quoted(&up), retry).await;
    let c = Client::new();
    let requests = 300;
    for _ in 0..requests {
        let r = c.get(&format!("{url}/x"), &[]).await.expect("response");
        assert_eq!(r.status, 503);
    }
    // Without a budget: 3 attempts each. With it: every request once, plus at most 20% of them
    // and the 10 floor retries (the test may straddle one more second of floor).
    let attempts = up.count();
    let retries = attempts - requests;
    assert!(retries > 0, "the floor and the share allow some retries");
    assert!(
        retries <= requests / 5 + 11,
        "{retries} retries for {requests} requests"
    );
    let m = admin_metrics(&gw).await;
    let exhausted = common::metric(
        &m,
        r#"gatehouse_retry_budget_exhausted_total{backend="default/app"}"#,
    );
    // Every request that was never retried was refused by the budget at least once.
    assert!(
        exhausted.unwrap_or(0.0) >= (requests - retries) as f64,
        "{m}"
    );
}

#[tokio::test]
async fn a_small_post_body_is_replayed_and_a_large_one_is_not() {
    // Every first attempt fails after the body was read; later attempts succeed.
    let up = Scripted::start(|_, seen| match seen.attempt.as_deref() {
        Some("1") => Answer::Status(503),
        _ => Answer::Status(200),
    })
    .await;
    let retry =
        r#"{attempts: 2, on: ["503"], methods: [GET, POST], backoff: {base: 1ms, max: 2ms}}"#;
    let (_gw, url) = gateway(&quoted(&up), retry).await;
    let c = Client::new();

    let small: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    let r = c
        .send(post(&format!("{url}/small"), small.clone()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "sent twice");
    for s in &seen {
        assert_eq!(
            (s.body_len, s.body_hash.as_str()),
            (1024, gatehouse_testkit::fnv64(&small).as_str())
        );
    }

    let large = vec![7u8; 1024 * 1024];
    let r = c.send(post(&format!("{url}/large"), large)).await.unwrap();
    assert_eq!(r.status, 503, "the first answer, not retried");
    let large_seen: Vec<_> = up
        .seen()
        .into_iter()
        .filter(|s| s.path == "/large")
        .collect();
    assert_eq!(large_seen.len(), 1);
    assert_eq!(large_seen[0].body_len, 1024 * 1024);
}

#[tokio::test]
async fn a_post_is_not_retried_by_default_once_it_was_sent() {
    let up = Scripted::start(|n, _| {
        if n == 0 {
            Answer::Reset
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let (_gw, url) = gateway(&quoted(&up), "{attempts: 3, on: [reset]}").await;
    let r = Client::new()
        .send(post(&format!("{url}/p"), b"order".to_vec()))
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_reset_is_retried_on_the_other_endpoint() {
    let broken = Scripted::start(|_, _| Answer::Reset).await;
    let good = Scripted::start(|_, _| Answer::Status(200)).await;
    let endpoints = format!("{}, {}", quoted(&broken), quoted(&good));
    let retry = "{attempts: 2, on: [reset], backoff: {base: 1ms, max: 2ms}}";
    let (_gw, url) = gateway(&endpoints, retry).await;
    let c = Client::new();
    for i in 0..40 {
        let r = c.get(&format!("{url}/x"), &[]).await.expect("response");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    // First attempts met the broken endpoint, and each retry went to the other one (two attempts
    // only: a retry to the same endpoint would have failed).
    assert!(broken.count() >= 20, "{}", broken.count());
    assert_eq!(good.count(), 40);
}

#[tokio::test]
async fn a_connect_failure_is_retried_whatever_the_method() {
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = Scripted::start(|_, _| Answer::Status(200)).await;
    let endpoints = format!("\"{closed}\", {}", quoted(&good));
    let (_gw, url) = gateway(&endpoints, "{attempts: 2, backoff: {base: 1ms, max: 2ms}}").await;
    let c = Client::new();
    for i in 0..10 {
        let r = c
            .send(post(&format!("{url}/p"), b"once".to_vec()))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    // Nothing of a request reached the closed port, so even POSTs were sent on.
    assert_eq!(good.count(), 10);
    assert!(good.seen().iter().all(|s| s.body_len == 4));
}

#[tokio::test]
async fn a_per_try_timeout_cuts_one_attempt_and_the_retry_answers() {
    let up = Scripted::start(|n, _| {
        if n == 0 {
            Answer::Slow(Duration::from_secs(5))
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let retry =
        "{attempts: 2, on: [gateway-error], perTryTimeout: 200ms, backoff: {base: 1ms, max: 2ms}}";
    let (_gw, url) = gateway(&quoted(&up), retry).await;
    let start = Instant::now();
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 2);
    assert!(took >= Duration::from_millis(200), "{took:?}");
    // Below the slow attempt's 5 s, with seconds of margin for a loaded machine.
    assert!(
        took < Duration::from_secs(4),
        "the slow attempt was cut: {took:?}"
    );
}

#[tokio::test]
async fn nothing_is_retried_once_the_response_has_started() {
    let up = Scripted::start(|_, _| Answer::BreakBody).await;
    let retry = "{attempts: 3, on: [reset, gateway-error], backoff: {base: 1ms, max: 2ms}}";
    let (gw, _url) = gateway(&quoted(&up), retry).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("web").await)
        .await
        .unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // The head and the first bytes reach the client; only then does the upstream break.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("0123456789") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    up.release();
    // The gateway cuts the client's connection, short of the announced length.
    while s.read(&mut buf).await.unwrap_or(0) > 0 {}
    assert_eq!(up.count(), 1, "the response had started: no retry");
}

#[tokio::test]
async fn a_rule_without_retry_sends_no_attempts_header() {
    let up = Scripted::start(|_, _| Answer::Status(200)).await;
    let yaml = gatehouse_testkit::gateway::one_route(up.addr, "");
    let gw = TestGateway::start(&yaml).await;
    let r = Client::new()
        .get(&format!("{}/x", gw.url("web").await), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.seen()[0].attempt, None);
}

/// Status of a chunked POST of `chunks` (each `size` bytes) on a raw connection.
async fn chunked_post(gw: &TestGateway, path: &str, chunks: usize, size: usize) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.addr("web").await)
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for i in 0..chunks {
        let data = vec![b'a' + i as u8; size];
        s.write_all(format!("{size:x}\r\n").as_bytes())
            .await
            .unwrap();
        s.write_all(&data).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_body_of_unknown_length_is_kept_up_to_max_body_size_only() {
    let up = Scripted::start(|_, seen| match seen.attempt.as_deref() {
        Some("1") => Answer::Status(503),
        _ => Answer::Status(200),
    })
    .await;
    let retry = r#"{attempts: 2, on: ["503"], methods: [POST], maxBodySize: 1KiB, backoff: {base: 1ms, max: 2ms}}"#;
    let (gw, _url) = gateway(&quoted(&up), retry).await;

    // Two chunks, 800 bytes in all: kept as they streamed, replayed whole.
    assert_eq!(chunked_post(&gw, "/small", 2, 400).await, "HTTP/1.1 200 OK");
    let small: Vec<_> = up
        .seen()
        .into_iter()
        .filter(|s| s.path == "/small")
        .collect();
    assert_eq!(small.len(), 2);
    assert_eq!(small[0].body_len, 800);
    assert_eq!(small[0].body_hash, small[1].body_hash);

    // Four chunks, 4000 bytes: past the limit while streaming, so sent once and not retried.
    assert_eq!(
        chunked_post(&gw, "/large", 4, 1000).await,
        "HTTP/1.1 503 Service Unavailable"
    );
    let large: Vec<_> = up
        .seen()
        .into_iter()
        .filter(|s| s.path == "/large")
        .collect();
    assert_eq!(large.len(), 1);
    assert_eq!(
        large[0].body_len, 4000,
        "the whole body still went upstream"
    );
}

#[tokio::test]
async fn the_access_log_shows_the_attempts_and_counts_a_replayed_body_once() {
    let up = Scripted::start(|n, _| {
        if n == 0 {
            Answer::Status(503)
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = fill(
        r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {format: json, path: "{log}"}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
"#,
        &[("log", &log.display().to_string())],
    ) + &fill(
        CONFIG,
        &[
            ("endpoints", &quoted(&up)),
            (
                "retry",
                r#"{on: ["503"], methods: [POST], backoff: {base: 1ms, max: 2ms}}"#,
            ),
        ],
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("web").await;
    let r = Client::new()
        .send(post(&format!("{url}/p"), vec![1; 100]))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Written when the gateway sees the end of the response body, before the client has it all.
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["attempts"], 2, "{text}");
    assert_eq!(
        line["bytesIn"], 100,
        "read from the client once, whatever was replayed"
    );
    assert_eq!(line["status"], 200);
}
