//! Circuit breaking (`circuitBreaker` on a backend), through a running gateway to a scripted
//! upstream that holds its answers: past `maxRequests` (or `maxConnections`) requests are refused
//! at once with 503 `circuit_open` and `x-gatehouse-overloaded: true`, the state and trips show in
//! `GET /backends` and `/metrics`, and the breaker closes again once requests finish.

mod common;

use common::{backend, with_gateway};
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::scripted::{Answer, Scripted};
use gatehouse_testkit::{wait_for, Client, TestGateway};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
---
kind: Backend
metadata: {name: app}
spec:
  endpoints: ["{addr}"]
  circuitBreaker: {breaker}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: app}]
"#;

/// An upstream that holds `/hold` until released and answers anything else at once.
async fn holding() -> Scripted {
    Scripted::start(|_, seen| {
        if seen.path == "/hold" {
            Answer::Hold
        } else {
            Answer::Status(200)
        }
    })
    .await
}

async fn gateway(up: &Scripted, breaker: &str) -> (TestGateway, String) {
    let addr = up.addr.to_string();
    let yaml = with_gateway(&fill(CONFIG, &[("addr", &addr), ("breaker", breaker)]));
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("web").await;
    (gw, url)
}

/// Starts `n` held requests and waits until the upstream holds them all.
async fn hold(up: &Scripted, url: &str, n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    let held: Vec<_> = (0..n)
        .map(|_| {
            let url = format!("{url}/hold");
            tokio::spawn(async move { Client::new().get(&url, &[]).await.unwrap().status.as_u16() })
        })
        .collect();
    wait_for("the upstream holds the requests", || async {
        up.in_flight() == n
    })
    .await;
    held
}

#[tokio::test]
async fn the_breaker_trips_at_max_requests_and_recovers() {
    let up = holding().await;
    let (gw, url) = gateway(&up, "{maxRequests: 2}").await;
    let held = hold(&up, &url, 2).await;

    let start = Instant::now();
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.status, 503);
    // The held requests do not end until the test releases them: a refusal that waited for a
    // slot would not come back at all. Seconds of margin for a loaded machine.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "refused at once, not after waiting for a slot"
    );
    assert_eq!(r.header("x-gatehouse-overloaded"), Some("true"));
    assert_eq!(r.json()["error"], "circuit_open");
    assert_eq!(
        up.count(),
        2,
        "the refused request never reached the upstream"
    );
    let b = backend(&gw, "default/app").await;
    assert_eq!(b["circuitBreaker"]["open"], true, "{b}");
    assert_eq!(b["circuitBreaker"]["trips"], 1);
    assert_eq!(b["circuitBreaker"]["requests"], 2);
    let m = Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    assert!(
        m.contains(r#"gatehouse_circuit_breaker_open{backend="default/app"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"gatehouse_circuit_breaker_trips_total{backend="default/app"} 1"#));

    up.release();
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    // The held requests gave their slots back: the next request is admitted and closes it.
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let b = backend(&gw, "default/app").await;
    assert_eq!(b["circuitBreaker"]["open"], false, "{b}");
    assert_eq!(b["circuitBreaker"]["requests"], 0);
}

#[tokio::test]
async fn max_connections_refuses_a_request_that_needs_one_more() {
    let up = holding().await;
    let (gw, url) = gateway(&up, "{maxConnections: 1}").await;
    let held = hold(&up, &url, 1).await;
    // The one connection is busy: a second request would need another.
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "circuit_open");
    up.release();
    assert_eq!(held.into_iter().next().unwrap().await.unwrap(), 200);
    // The connection went back to the pool: requests reuse it.
    for _ in 0..3 {
        let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let b = backend(&gw, "default/app").await;
    assert_eq!(b["circuitBreaker"]["connections"], 1, "{b}");
}

#[tokio::test]
async fn the_breaker_counts_survive_a_reload_that_changes_the_backend() {
    let up = holding().await;
    let other = holding().await;
    let (gw, url) = gateway(&up, "{maxRequests: 1}").await;
    let held = hold(&up, &url, 1).await;
    // A new endpoint list: the backend's source changed, its state is rebuilt around the
    // breaker of the old one, which still counts the held request.
    let both = format!("{}\", \"{}", up.addr, other.addr);
    let yaml = with_gateway(&fill(
        CONFIG,
        &[("addr", &both), ("breaker", "{maxRequests: 1}")],
    ));
    gw.write(&yaml);
    gw.gw.reload("test").await.expect("reload");
    assert_eq!(common::addresses(&gw, "default/app").await.len(), 2);
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "circuit_open");
    up.release();
    assert_eq!(held.into_iter().next().unwrap().await.unwrap(), 200);
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
}
