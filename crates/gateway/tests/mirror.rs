//! Shadowing (release by routing): a rule's `mirror` copies requests to a shadow backend, fire
//! and forget. The copy carries `x-gatehouse-shadow: true`, a `-shadow` Host and the body (up to
//! `maxBodySize`; larger bodies are not mirrored); a shadow that does not answer during the test
//! or answers 500 changes neither the client's status nor its p99 (measured against the same route
//! without a mirror); copies in flight are bounded and the dropped ones counted.

use bytes::Bytes;
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the shadow saw of one request.
#[derive(Debug)]
struct Seen {
    host: String,
    shadow: Option<String>,
    path: String,
    body: Bytes,
}

/// A shadow backend that reports every request it gets, then answers with `status` after
/// `delay` (a slow or failing shadow).
struct Shadow {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shadow {
    async fn start(status: u16, delay: Duration) -> Shadow {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let header = |n: &str| {
                                parts
                                    .headers
                                    .get(n)
                                    .map(|v| v.to_str().unwrap_or("").to_string())
                            };
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send(Seen {
                                host: header("host").unwrap_or_default(),
                                shadow: header("x-gatehouse-shadow"),
                                path: parts.uri.path().to_string(),
                                body,
                            });
                            // The shadow's own slowness: what the test is about, not a wait for it.
                            tokio::time::sleep(delay).await;
                            let mut resp =
                                http::Response::new(Full::new(Bytes::from_static(b"shadow")));
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
        Shadow { addr, seen, task }
    }
}

const CONFIG: &str = r#"
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["{primary}"]}
---
kind: Backend
metadata: {name: slow-shadow}
spec: {endpoints: ["{slow}"]}
---
kind: Backend
metadata: {name: failing-shadow}
spec: {endpoints: ["{failing}"]}
---
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - match: {path: {prefix: /plain}}
      backends: [{backend: tasks}]
    - match: {path: {prefix: /slow}}
      rewrite: {pathPrefix: /v2}
      timeout: 60s
      backends: [{backend: tasks}]
      mirror: {backend: slow-shadow, percent: 100%, maxBodySize: 1KiB, maxInFlight: 16}
    - match: {path: {prefix: /failing}}
      backends: [{backend: tasks}]
      mirror: {backend: failing-shadow, percent: 100%, maxInFlight: 1000}
    - match: {path: {prefix: /some}}
      backends: [{backend: tasks}]
      mirror: {backend: failing-shadow, percent: 25%, maxInFlight: 1000}
"#;

struct Setup {
    gw: TestGateway,
    web: String,
    slow: Shadow,
    failing: Shadow,
    _primary: Upstream,
}

async fn setup() -> Setup {
    let primary = Upstream::start("primary").await;
    // Slower than the whole test (its copies are cut by the rule's 60 s timeout): the copies it
    // holds are never freed during a run, however long a loaded machine makes that run.
    let slow = Shadow::start(200, Duration::from_secs(120)).await;
    let failing = Shadow::start(500, Duration::ZERO).await;
    let yaml = GATEWAY_AND_WEB.to_string()
        + &fill(
            CONFIG,
            &[
                ("primary", &primary.addr.to_string()),
                ("slow", &slow.addr.to_string()),
                ("failing", &failing.addr.to_string()),
            ],
        );
    let gw = TestGateway::start(&yaml).await;
    let web = gw.url("web").await;
    Setup {
        gw,
        web,
        slow,
        failing,
        _primary: primary,
    }
}

async fn post(client: &Client, url: &str, body: Vec<u8>) -> gatehouse_testkit::Reply {
    let req = http::Request::post(url)
        .header("host", "api.example.com:8080")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    client.send(req).await.expect("response")
}

async fn metrics(gw: &TestGateway) -> String {
    Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text()
}

fn counter(text: &str, route_backend_result: &str) -> f64 {
    let prefix = format!("gatehouse_mirror_requests_total{{{route_backend_result}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_is_marked_has_a_shadow_host_and_the_body_up_to_the_limit() {
    let mut s = setup().await;
    let client = Client::new();
    let r = post(
        &client,
        &format!("{}/slow/items?x=1", s.web),
        b"hello shadow".to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["server"],
        "primary",
        "the client gets the primary's answer"
    );
    assert_eq!(r.json()["path"], "/v2/items");
    assert!(
        r.json()["headers"].get("x-gatehouse-shadow").is_none(),
        "the primary gets no mark"
    );

    let seen = tokio::time::timeout(Duration::from_secs(10), s.slow.seen.recv())
        .await
        .expect("the shadow got a copy")
        .unwrap();
    assert_eq!(seen.shadow.as_deref(), Some("true"));
    assert_eq!(seen.host, "api.example.com-shadow:8080");
    assert_eq!(
        seen.path, "/v2/items",
        "the rule's rewrite applies to the copy"
    );
    assert_eq!(&seen.body[..], b"hello shadow");

    // Over `maxBodySize` (1 KiB): the client is served, the shadow gets nothing, the drop counts.
    let r = post(&client, &format!("{}/slow/big", s.web), vec![b'x'; 4096]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["bodyBytes"], 4096);
    let gw = &s.gw;
    wait_for("the too-large body is counted", || async {
        counter(
            &metrics(gw).await,
            r#"route="default/tasks",backend="default/slow-shadow",result="dropped_body""#,
        ) >= 1.0
    })
    .await;
    // A later small body arrives; the big one never did.
    let _ = post(&client, &format!("{}/slow/after", s.web), b"small".to_vec()).await;
    let next = tokio::time::timeout(Duration::from_secs(10), s.slow.seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next.path, "/v2/after",
        "the big body was not mirrored: {next:?}"
    );

    // `percent` samples: about a quarter of 400 requests are copied.
    for _ in 0..400 {
        assert_eq!(
            client
                .get(&format!("{}/some", s.web), &[])
                .await
                .unwrap()
                .status,
            200
        );
    }
    let gw = &s.gw;
    wait_for("the sampled copies are answered", || async {
        counter(
            &metrics(gw).await,
            r#"route="default/tasks",backend="default/failing-shadow",result="answered""#,
        ) >= 60.0
    })
    .await;
    let mut copies = 0;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(500), s.failing.seen.recv()).await
    {
        copies += 1;
    }
    println!("percent 25 %: {copies} of 400 copied");
    assert!(
        (60..=140).contains(&copies),
        "{copies} of 400 copied at 25 %"
    );
}

/// The 99th percentile of `samples`.
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_failing_shadow_changes_neither_status_nor_p99() {
    let s = setup().await;
    let client = Client::new();
    let n = 300;
    let mut times: [Vec<Duration>; 3] = Default::default();
    // Interleaved, so the three routes see the same machine load.
    for i in 0..n {
        for (k, path) in ["plain", "slow", "failing"].iter().enumerate() {
            let t = Instant::now();
            let r = client
                .get(&format!("{}/{path}/{i}", s.web), &[])
                .await
                .unwrap();
            times[k].push(t.elapsed());
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(r.json()["server"], "primary");
        }
    }
    let [plain, slow, failing] = &mut times;
    let (plain, slow, failing) = (p99(plain), p99(slow), p99(failing));
    println!(
        "p99 over {n} requests: no mirror {plain:?}, silent shadow {slow:?}, 500 shadow {failing:?}"
    );
    // Loose but meaningful: a waited-for shadow would add its 60 s to every request; a loaded
    // machine's noise is far below the second of margin.
    let bound = plain + Duration::from_secs(1);
    assert!(
        slow < bound,
        "a silent shadow moved p99 from {plain:?} to {slow:?}"
    );
    assert!(
        failing < bound,
        "a failing shadow moved p99 from {plain:?} to {failing:?}"
    );

    // The slow shadow holds at most 16 copies, none of them freed during the run: the rest were
    // dropped and counted, whatever the scheduling (with a 2 s shadow, how many slots came free
    // during the run depended on the machine's speed); the failing shadow's answers were all read
    // (and discarded).
    let text = metrics(&s.gw).await;
    let busy = counter(
        &text,
        r#"route="default/tasks",backend="default/slow-shadow",result="dropped_busy""#,
    );
    assert!(
        busy >= (n - 16) as f64,
        "only {busy} copies dropped for the 16-copy bound:\n{text}"
    );
    let gw = &s.gw;
    wait_for("every failing copy answered", || async {
        counter(
            &metrics(gw).await,
            r#"route="default/tasks",backend="default/failing-shadow",result="answered""#,
        ) >= n as f64
    })
    .await;
}
