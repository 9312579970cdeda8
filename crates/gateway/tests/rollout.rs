//! Progressive rollouts end to end, over real sockets: a canary answering 20 % errors is rolled
//! back within one analysis interval and stays so across a reload that does not change its
//! Rollout; a healthy one walks every step and is promoted; operators act through the admin API.

use bytes::Bytes;
use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::rollout::rollout_documents;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A canary on a real socket that answers every `nth` request with a 500, the others with 200;
/// returns its address and its request count.
async fn flaky_canary(nth: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                    let status = if n.is_multiple_of(nth) { 500 } else { 200 };
                    let mut r = http::Response::new(Full::new(Bytes::from_static(
                        br#"{"server":"canary"}"#,
                    )));
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

/// RFC 3339 with milliseconds, `offset` from now (negative: in the past).
fn time_from_now(offset_ms: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_ms >= 0 {
        now + Duration::from_millis(offset_ms as u64)
    } else {
        now - Duration::from_millis(offset_ms.unsigned_abs())
    };
    humantime::format_rfc3339_millis(t).to_string()
}

/// The gateway, a stable and a canary backend, one route whose rule names only `tasks`, and a
/// Rollout with `rollout` as its spec's schedule and analysis lines.
fn config(stable: SocketAddr, canary: SocketAddr, rollout: &str) -> String {
    GATEWAY_AND_WEB.to_string() + &rollout_documents(stable, canary, rollout)
}

async fn rollouts(c: &Client, admin: SocketAddr) -> Value {
    let r = c
        .get(&format!("http://{admin}/rollouts"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["rollouts"][0].clone()
}

async fn post(c: &Client, url: String) -> (u16, Value) {
    let req = http::Request::post(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send(req).await.unwrap();
    (r.status.as_u16(), r.json())
}

/// The `server` an answer came from.
async fn served_by(c: &Client, url: &str) -> (u16, String) {
    let r = c.get(url, &[]).await.unwrap();
    let server = r.json()["server"].as_str().unwrap_or("").to_string();
    (r.status.as_u16(), server)
}

#[tokio::test]
async fn a_canary_with_20_percent_errors_rolls_back_within_one_analysis_interval_and_stays_so() {
    let stable = Upstream::start("stable").await;
    let (canary, canary_count) = flaky_canary(5).await;
    // An interval long enough that "within one interval" has seconds of margin on a loaded
    // machine, yet shorter than two intervals apart.
    let interval = Duration::from_secs(2);
    let rollout = format!(
        "  startTime: \"{}\"\n  steps: [{{weight: 50, pause: 1h}}, {{weight: 100}}]\n  analysis: {{interval: 2s, maxErrorRate: 5%, maxP99Ratio: 100, minRequests: 20}}",
        time_from_now(-1000)
    );
    let yaml = config(stable.addr, canary, &rollout);
    let gw = TestGateway::start(&yaml).await;
    let (url, c) = (gw.url("web").await, Client::new());
    let r = rollouts(&c, gw.admin).await;
    assert_eq!(
        (r["state"].as_str(), r["canaryWeight"].as_f64()),
        (Some("Progressing"), Some(50.0))
    );

    // Traffic until the canary has served `minRequests`, then until the rollback shows.
    let mut judged_from = None;
    let rolled_back_at = loop {
        let _ = served_by(&c, &url).await;
        if judged_from.is_none() && canary_count.load(Ordering::SeqCst) >= 20 {
            judged_from = Some(Instant::now());
        }
        let r = rollouts(&c, gw.admin).await;
        if r["state"] == "RolledBack" {
            break Instant::now();
        }
        let waited = judged_from.map(|t| t.elapsed()).unwrap_or_default();
        assert!(waited < Duration::from_secs(20), "no rollback: {r}");
    };
    let took = rolled_back_at - judged_from.expect("the canary served minRequests");
    eprintln!(
        "rolled back {took:?} after the canary had served minRequests (interval {interval:?})"
    );
    // The first analysis after minRequests decides: at most one interval, plus slack for a late
    // timer that stays below a second interval.
    assert!(
        took <= interval + Duration::from_millis(1500),
        "took {took:?}"
    );

    let r = rollouts(&c, gw.admin).await;
    assert_eq!(r["canaryWeight"], 0.0);
    let reason = r["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("error rate") && reason.contains("maxErrorRate 5%"),
        "{reason}"
    );
    assert_eq!(r["lastAnalysis"]["result"], "fail");
    assert!(
        r["lastAnalysis"]["canary"]["errors"].as_u64() > Some(0),
        "{r}"
    );

    // Rolled back: every request goes to stable, and succeeds.
    let before = canary_count.load(Ordering::SeqCst);
    for _ in 0..50 {
        assert_eq!(served_by(&c, &url).await, (200, "stable".to_string()));
    }
    assert_eq!(canary_count.load(Ordering::SeqCst), before);
    let metrics = c
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains(
            r#"gatehouse_rollout_state{rollout="default/tasks-canary",state="RolledBack"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"gatehouse_rollout_analyses_total{rollout="default/tasks-canary",result="fail"} 1"#
    ));

    // A reload that leaves the Rollout alone keeps it rolled back; a changed Rollout starts over.
    gw.write(&format!(
        "{yaml}---\nkind: Backend\nmetadata: {{name: other}}\nspec: {{endpoints: [\"{}\"]}}\n",
        stable.addr
    ));
    gw.gw.reload("test").await.unwrap();
    assert_eq!(rollouts(&c, gw.admin).await["state"], "RolledBack");
    gw.write(&yaml.replace("weight: 50", "weight: 40"));
    gw.gw.reload("test").await.unwrap();
    let r = rollouts(&c, gw.admin).await;
    assert_eq!(
        (r["state"].as_str(), r["canaryWeight"].as_f64()),
        (Some("Progressing"), Some(40.0))
    );
}

#[tokio::test]
async fn a_healthy_canary_walks_every_step_and_is_promoted() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let rollout = format!(
        // Seconds before the start and per step: a loaded machine may take a while to start the
        // gateway, and each step must see requests to both sides.
        "  startTime: \"{}\"\n  steps: [{{weight: 20, pause: 2s}}, {{weight: 60, pause: 2s}}, {{weight: 100}}]\n  analysis: {{interval: 500ms, maxErrorRate: 1%, maxP99Ratio: 100, minRequests: 5}}",
        time_from_now(3000)
    );
    let gw = TestGateway::start(&config(stable.addr, canary.addr, &rollout)).await;
    let (url, c) = (gw.url("web").await, Client::new());
    let r = rollouts(&c, gw.admin).await;
    assert_eq!(
        (r["step"].clone(), r["canaryWeight"].as_f64()),
        (Value::Null, Some(0.0)),
        "{r}"
    );

    // Per step: requests to each side while it was in force.
    let mut seen: Vec<(u64, usize, usize)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = rollouts(&c, gw.admin).await;
        if r["state"] == "Promoted" {
            break;
        }
        assert_eq!(r["state"], "Progressing", "{r}");
        assert!(Instant::now() < deadline, "not promoted: {r}");
        let Some(step) = r["step"].as_u64() else {
            continue;
        };
        let weight = r["canaryWeight"].as_f64().unwrap();
        assert_eq!(weight, [20.0, 60.0][step as usize], "{r}");
        let (status, server) = served_by(&c, &url).await;
        assert_eq!(status, 200);
        match seen.iter_mut().find(|s| s.0 == step) {
            Some(s) if server == "canary" => s.2 += 1,
            Some(s) => s.1 += 1,
            None => seen.push((
                step,
                usize::from(server != "canary"),
                usize::from(server == "canary"),
            )),
        }
    }
    eprintln!("(step, stable, canary) requests: {seen:?}");
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 1],
        "both steps were walked"
    );
    assert!(
        seen.iter().all(|s| s.2 > 0),
        "the canary served in every step: {seen:?}"
    );
    let r = rollouts(&c, gw.admin).await;
    assert_eq!(
        (r["canaryWeight"].as_f64(), r["nextChange"].clone()),
        (Some(100.0), Value::Null)
    );
    assert!(r["reason"].is_null());
    for _ in 0..30 {
        assert_eq!(served_by(&c, &url).await, (200, "canary".to_string()));
    }
}

#[tokio::test]
async fn operators_pause_resume_abort_and_promote_through_the_admin_api() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let rollout = format!(
        "  startTime: \"{}\"\n  steps: [{{weight: 30, pause: 1h}}, {{weight: 100}}]",
        time_from_now(-1000)
    );
    let gw = TestGateway::start(&config(stable.addr, canary.addr, &rollout)).await;
    let (url, c) = (gw.url("web").await, Client::new());
    let base = format!("http://{}/rollouts/default/tasks-canary", gw.admin);
    let (status, r) = post(&c, format!("{base}/pause")).await;
    assert_eq!(
        (status, r["state"].as_str(), r["canaryWeight"].as_f64()),
        (200, Some("Paused"), Some(30.0))
    );
    let (status, r) = post(&c, format!("{base}/pause")).await;
    assert_eq!(status, 409, "{r}");
    let (status, r) = post(&c, format!("{base}/abort")).await;
    assert_eq!(
        (status, r["state"].as_str(), r["canaryWeight"].as_f64()),
        (200, Some("Aborted"), Some(0.0))
    );
    assert_eq!(r["reason"], "aborted by an operator");
    for _ in 0..20 {
        assert_eq!(served_by(&c, &url).await.1, "stable");
    }
    let (_, r) = post(&c, format!("{base}/resume")).await;
    assert_eq!(
        (r["state"].as_str(), r["canaryWeight"].as_f64()),
        (Some("Progressing"), Some(30.0))
    );
    let (_, r) = post(&c, format!("{base}/promote")).await;
    assert_eq!(
        (r["state"].as_str(), r["canaryWeight"].as_f64()),
        (Some("Promoted"), Some(100.0))
    );
    wait_for("the canary takes all traffic", || async {
        served_by(&c, &url).await.1 == "canary"
    })
    .await;
    let (status, _) = post(
        &c,
        format!("http://{}/rollouts/default/nope/pause", gw.admin),
    )
    .await;
    assert_eq!(status, 404);
    let (status, r) = post(&c, format!("{base}/rewind")).await;
    assert_eq!(status, 404, "{r}");
    let r = c.get(&format!("{base}/pause"), &[]).await.unwrap();
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn under_a_rollout_a_sticky_split_keeps_each_user_on_one_version() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let rollout = format!(
        "  startTime: \"{}\"\n  steps: [{{weight: 50, pause: 1h}}, {{weight: 100}}]",
        time_from_now(-1000)
    );
    let yaml = config(stable.addr, canary.addr, &rollout).replace(
        "    - backends: [{backend: tasks}]",
        "    - backends: [{backend: tasks}]\n      stickySplit: {header: x-user-id}",
    );
    let gw = TestGateway::start(&yaml).await;
    let (url, c) = (gw.url("web").await, Client::new());
    let mut on_canary = 0;
    for user in 0..40 {
        let id = format!("user-{user}");
        let mut servers = Vec::new();
        for _ in 0..5 {
            let r = c.get(&url, &[("x-user-id", &id)]).await.unwrap();
            servers.push(r.json()["server"].as_str().unwrap_or("").to_string());
        }
        assert!(
            servers.iter().all(|s| *s == servers[0]),
            "{id} flipped: {servers:?}"
        );
        on_canary += usize::from(servers[0] == "canary");
    }
    assert!(
        (8..=32).contains(&on_canary),
        "{on_canary} of 40 users on the canary at 50%"
    );
}
