//! Health over real sockets: active HTTP and TCP checks take endpoints out and bring them back,
//! passive outlier detection ejects an endpoint killed under load, panic mode, and health state
//! that survives a reload touching only routes.

use bytes::Bytes;
use gatehouse_testkit::{wait_for, Client, TestGateway};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upstream whose `/healthz` answers `health` (a status) and every other path its name.
struct Switchable {
    addr: SocketAddr,
    health: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Switchable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Switchable {
    async fn start(name: &'static str) -> Switchable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let h = health.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                // Connection tasks live in the set: aborting the upstream closes them too.
                conns.spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let status = if req.uri().path() == "/healthz" {
                            h.load(Ordering::Relaxed)
                        } else {
                            200
                        };
                        async move {
                            let mut resp = http::Response::new(Full::new(Bytes::from(name)));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Switchable { addr, health, task }
    }
}

fn config(endpoints: &[SocketAddr], backend_extra: &str, header: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    gatehouse_testkit::gateway::GATEWAY_AND_WEB.to_string()
        + &r#"
---
kind: Backend
metadata: {name: app}
spec:
  endpoints: [LIST]
  BACKEND_EXTRA
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: app}]
      responseHeaders: {set: {x-config: "HEADER"}}
"#
        .replace("LIST", &list.join(", "))
        .replace("BACKEND_EXTRA", backend_extra)
        .replace("HEADER", header)
}

/// Checks every 300 ms with a timeout a loaded machine does not miss twice in a row: with 40 ms,
/// a healthy endpoint's slow answers could take it out (and two out of two is panic mode).
const FAST_HTTP_CHECK: &str = "healthCheck: {http: {path: /healthz}, interval: 300ms, timeout: 300ms, unhealthyThreshold: 2, healthyThreshold: 2}";

/// The health of every endpoint, from the admin API, by address.
async fn health(gw: &TestGateway) -> Vec<(String, String)> {
    let v = Client::new()
        .get(&format!("http://{}/backends", gw.admin), &[])
        .await
        .expect("admin answers")
        .json();
    v["backends"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["health"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn health_of(gw: &TestGateway, addr: SocketAddr) -> String {
    health(gw)
        .await
        .into_iter()
        .find(|(a, _)| *a == addr.to_string())
        .map(|(_, h)| h)
        .expect("endpoint listed")
}

/// Bodies (upstream names) of `n` requests.
async fn names(url: &str, n: usize) -> Vec<String> {
    let c = Client::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = c.get(url, &[]).await.expect("response");
        out.push(format!("{} {}", r.status.as_u16(), r.text()));
    }
    out
}

#[tokio::test]
async fn an_http_check_takes_an_endpoint_out_and_brings_it_back() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let gw = TestGateway::start(&config(&[a.addr, b.addr], FAST_HTTP_CHECK, "1")).await;
    let url = format!("{}/x", gw.url("web").await);
    wait_for("both endpoints healthy", || async {
        health(&gw).await.iter().all(|(_, h)| h == "healthy")
    })
    .await;

    a.health.store(503, Ordering::Relaxed);
    wait_for("a unhealthy", || async {
        health_of(&gw, a.addr).await == "unhealthy"
    })
    .await;
    let seen = names(&url, 20).await;
    assert!(seen.iter().all(|s| s == "200 b"), "{seen:?}");

    // A reload that touches only the route keeps the verdict (no reset to unknown).
    gw.write(&config(&[a.addr, b.addr], FAST_HTTP_CHECK, "2"));
    gw.gw.reload("test").await.expect("reload");
    assert_eq!(health_of(&gw, a.addr).await, "unhealthy");

    a.health.store(200, Ordering::Relaxed);
    wait_for("a healthy again", || async {
        health_of(&gw, a.addr).await == "healthy"
    })
    .await;
    let seen = names(&url, 20).await;
    assert!(seen.iter().any(|s| s == "200 a"), "{seen:?}");
}

#[tokio::test]
async fn a_tcp_check_finds_a_closed_port() {
    let a = Switchable::start("a").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let extra = "healthCheck: {tcp: {}, interval: 300ms, timeout: 300ms, unhealthyThreshold: 2, healthyThreshold: 1}";
    let gw = TestGateway::start(&config(&[a.addr, closed], extra, "1")).await;
    wait_for("closed port unhealthy", || async {
        health_of(&gw, closed).await == "unhealthy" && health_of(&gw, a.addr).await == "healthy"
    })
    .await;
    let seen = names(&format!("{}/x", gw.url("web").await), 10).await;
    assert!(seen.iter().all(|s| s == "200 a"), "{seen:?}");
}

#[tokio::test]
async fn below_the_panic_threshold_every_endpoint_is_used() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    // Health checks fail, yet the endpoints serve: with the default 50% threshold the backend
    // panics and keeps serving; with 0% it answers 503.
    a.health.store(500, Ordering::Relaxed);
    b.health.store(500, Ordering::Relaxed);
    let gw = TestGateway::start(&config(&[a.addr, b.addr], FAST_HTTP_CHECK, "1")).await;
    wait_for("both unhealthy", || async {
        health(&gw).await.iter().all(|(_, h)| h == "unhealthy")
    })
    .await;
    let url = format!("{}/x", gw.url("web").await);
    let seen = names(&url, 10).await;
    assert!(seen.iter().all(|s| s.starts_with("200")), "{seen:?}");

    let extra = format!("{FAST_HTTP_CHECK}\n  panicThreshold: 0%");
    gw.write(&config(&[a.addr, b.addr], &extra, "1"));
    gw.gw.reload("test").await.expect("reload");
    let r = Client::new().get(&url, &[]).await.expect("response");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "no_healthy_endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_under_load_is_ejected_after_a_few_errors() {
    let a = Switchable::start("a").await;
    let b = Switchable::start("b").await;
    let c = Switchable::start("c").await;
    let extra =
        "outlierDetection: {consecutiveErrors: 3, baseEjectionTime: 30s, maxEjectionPercent: 50%}";
    let gw = TestGateway::start(&config(&[a.addr, b.addr, c.addr], extra, "1")).await;
    let url = format!("{}/x", gw.url("web").await);

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let last_failure = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, failed, last, url) = (
            stop.clone(),
            failed.clone(),
            last_failure.clone(),
            url.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = Client::new();
            while !stop.load(Ordering::Relaxed) {
                let r = client.get(&url, &[]).await;
                if !matches!(&r, Ok(r) if r.status == 200) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    *last.lock().unwrap() = Some(Instant::now());
                }
            }
        }));
    }
    wait_for("traffic flowing", || async {
        names(&url, 1).await[0].starts_with("200")
    })
    .await;
    let killed_at = Instant::now();
    drop(c);
    wait_for("c ejected", || async {
        let v = Client::new()
            .get(&format!("http://{}/backends", gw.admin), &[])
            .await
            .unwrap()
            .json();
        v["backends"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ejected"] == true)
    })
    .await;
    let ejected_after = killed_at.elapsed();
    // After the ejection, a second of load sees no failure.
    let quiet_from = Instant::now();
    let mut checked = 0;
    while quiet_from.elapsed() < Duration::from_secs(1) {
        let seen = names(&url, 10).await;
        assert!(seen.iter().all(|s| s.starts_with("200")), "{seen:?}");
        checked += 10;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failed.load(Ordering::Relaxed);
    println!("ejected {ejected_after:?} after the kill; {failures} failed requests; {checked} checked after");
    // No active check here: only the errors eject. Seconds of margin for a loaded machine; the
    // failure count below is the exact measure of how fast it was.
    assert!(ejected_after < Duration::from_secs(5), "{ejected_after:?}");
    // Three consecutive failures eject; concurrent clients may each see one more in flight.
    assert!(failures <= 3 + 4, "{failures} failed requests");
}
