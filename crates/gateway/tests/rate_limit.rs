//! Rate limits over real sockets: a local limit admits exactly its burst and answers the rest 429
//! with `Retry-After` and the IETF RateLimit fields; its buckets survive reloads that keep the
//! policy; a Redis killed mid-run is ridden through as `onStoreError` says, never slower than the
//! timeout plus 50 ms, and the gateway reconnects by itself when Redis is back. (Two processes
//! sharing one Redis: `crates/cli/tests/global_limit.rs`.)

use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::{wait_for, Client, Redis, TestGateway, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A route `r` whose rule `/limited` carries policy `per-user`; `LIMIT` is the policy's
/// `rateLimit`, `GATEWAY` extra Gateway fields.
fn config(upstream: SocketAddr, limit: &str, gateway: &str) -> String {
    let yaml = r#"
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Policy
metadata: {name: per-user}
spec:
  rateLimit: LIMIT
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /limited}}
      backends: [{backend: up}]
      policies: [per-user]
    - backends: [{backend: up}]
"#;
    let head = GATEWAY_AND_WEB.replace(
        "spec: {accessLog: {enabled: false}}",
        &format!("spec: {{accessLog: {{enabled: false}}{gateway}}}"),
    );
    head + &yaml
        .replace("UPSTREAM", &upstream.to_string())
        .replace("LIMIT", limit)
}

async fn metrics(gw: &TestGateway) -> String {
    let url = format!("http://{}/metrics", gw.admin);
    Client::new().get(&url, &[]).await.unwrap().text()
}

#[tokio::test]
async fn a_local_limit_admits_exactly_its_burst_then_answers_429_with_rate_limit_fields() {
    let up = Upstream::start("a").await;
    let limit = "{requests: 5, per: 1h, key: {header: x-user}}";
    let gw = TestGateway::start(&config(up.addr, limit, "")).await;
    let url = format!("{}/limited", gw.url("web").await);
    let client = Client::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = client.get(&url, &[("x-user", "alice")]).await.unwrap();
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");

    let refused = client.get(&url, &[("x-user", "alice")]).await.unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["error"], "rate_limited");
    assert_eq!(
        refused.header("retry-after"),
        Some("720"),
        "one request per 12 minutes"
    );
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"default/per-user\";q=5;w=3600")
    );
    assert_eq!(
        refused.header("ratelimit"),
        Some("\"default/per-user\";r=0;t=720")
    );
    assert!(refused.header("x-request-id").is_some());

    let bob = client.get(&url, &[("x-user", "bob")]).await.unwrap();
    assert_eq!(bob.status, 200, "another key has its own bucket");
    let open = format!("{}/open", gw.url("web").await);
    let other = client.get(&open, &[("x-user", "alice")]).await.unwrap();
    assert_eq!(
        other.status, 200,
        "rules without the policy are not limited"
    );
    assert_eq!(up.requests(), 7);
    let text = metrics(&gw).await;
    assert!(
        text.contains(
            "gatehouse_rate_limited_total{route=\"default/r\",policy=\"default/per-user\"} 16"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn local_buckets_survive_a_reload_that_keeps_the_policy_and_restart_when_it_changes() {
    let up = Upstream::start("a").await;
    let limit = "{requests: 2, per: 1h, key: {route: true}}";
    let yaml = config(up.addr, limit, "");
    let gw = TestGateway::start(&yaml).await;
    let url = format!("{}/limited", gw.url("web").await);
    let client = Client::new();
    for expected in [200, 200, 429] {
        assert_eq!(client.get(&url, &[]).await.unwrap().status, expected);
    }
    // Something else changes: the bucket stays empty.
    gw.write(&yaml.replace("prefix: /limited", "prefix: /limited/"));
    gw.gw.reload("test").await.expect("valid reload");
    assert_eq!(client.get(&url, &[]).await.unwrap().status, 429);
    // The limit changes: a fresh bucket.
    let wider = "{requests: 3, per: 1h, key: {route: true}}";
    gw.write(&config(up.addr, wider, ""));
    gw.gw.reload("test").await.expect("valid reload");
    for expected in [200, 200, 200, 429] {
        assert_eq!(client.get(&url, &[]).await.unwrap().status, expected);
    }
}

/// Runs `count` sequential requests and returns (statuses, slowest).
async fn timed(client: &Client, url: &str, count: usize) -> (Vec<u16>, Duration) {
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..count {
        let started = Instant::now();
        statuses.push(client.get(url, &[]).await.unwrap().status.as_u16());
        slowest = slowest.max(started.elapsed());
    }
    (statuses, slowest)
}

async fn redis_killed_mid_run(mode: &str, expected: u16) {
    let mut redis = Redis::start();
    let up = Upstream::start("a").await;
    let limit = format!(
        "{{requests: 100000, per: 1s, key: {{clientAddress: true}}, scope: global, onStoreError: {mode}}}"
    );
    let gateway = format!(", redis: {{url: \"{}\", timeout: 50ms}}", redis.url);
    let gw = TestGateway::start(&config(up.addr, &limit, &gateway)).await;
    let url = format!("{}/limited", gw.url("web").await);
    let client = Client::new();
    let (before, _) = timed(&client, &url, 20).await;
    assert!(before.iter().all(|s| *s == 200), "{before:?}");

    redis.kill();
    let (during, slowest) = timed(&client, &url, 50).await;
    assert!(during.iter().all(|s| *s == expected), "{mode}: {during:?}");
    // No request waits on the dead store beyond its timeout: a stuck or retried call would
    // hang far longer. Seconds of margin for a loaded machine.
    assert!(
        slowest < Duration::from_secs(2),
        "{mode}: slowest request took {slowest:?} with Redis gone (timeout 50ms)"
    );
    let text = metrics(&gw).await;
    assert!(
        text.contains("gatehouse_rate_limit_store_errors_total{policy=\"default/per-user\"}"),
        "{text}"
    );

    redis.restart();
    wait_for("the gateway to reconnect to Redis", || async {
        client.get(&url, &[]).await.unwrap().status == 200
            && redis.command("DBSIZE").starts_with(":1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_with_on_store_error_allow_lets_requests_through_quickly() {
    redis_killed_mid_run("Allow", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_with_on_store_error_deny_refuses_quickly() {
    redis_killed_mid_run("Deny", 429).await;
}

#[tokio::test]
async fn every_limit_of_a_rule_applies_to_each_request() {
    let up = Upstream::start("a").await;
    let limit = "{requests: 3, per: 1h, key: {header: x-user}}";
    let yaml = config(up.addr, limit, "").replace(
        "      policies: [per-user]",
        "      policies: [per-user, per-route]",
    ) + r#"
---
kind: Policy
metadata: {name: per-route}
spec:
  rateLimit: {requests: 5, per: 1h, key: {route: true}}
"#;
    let gw = TestGateway::start(&yaml).await;
    let url = format!("{}/limited", gw.url("web").await);
    let client = Client::new();
    let mut got = Vec::new();
    for user in ["alice", "alice", "alice", "alice", "bob", "bob", "bob"] {
        let r = client.get(&url, &[("x-user", user)]).await.unwrap();
        let policy = r.header("ratelimit-policy").unwrap_or("").to_string();
        got.push((user, r.status.as_u16(), policy));
    }
    let statuses: Vec<u16> = got.iter().map(|g| g.1).collect();
    // Alice's fourth is over her own limit (and, refused, takes nothing from the route's); Bob's
    // third is the route's sixth.
    assert_eq!(statuses, [200, 200, 200, 429, 200, 200, 429], "{got:?}");
    assert!(got[3].2.contains("default/per-user"), "{got:?}");
    assert!(got[6].2.contains("default/per-route"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_global_decisions_stay_exact() {
    let redis = Redis::start();
    let up = Upstream::start("a").await;
    let n = 100;
    let limit = format!("{{requests: {n}, per: 1h, key: {{route: true}}, scope: global}}");
    // A loaded machine must not turn slow decisions into refusals.
    let gateway = format!(", redis: {{url: \"{}\", timeout: 5s}}", redis.url);
    let gw = TestGateway::start(&config(up.addr, &limit, &gateway)).await;
    let url = format!("{}/limited", gw.url("web").await);
    // 200 requests at once, each on its own connection: twice the limit.
    let tasks: Vec<_> = (0..2 * n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Client::new().get(&url, &[]).await.unwrap().status })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            200 => admitted += 1,
            429 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(admitted, n, "a single gateway admits exactly the limit");
    // How many decisions share a script call depends on this machine's scheduling; the unit tests
    // of `policy/rate_limit/redis.rs` check the batching itself, deterministically.
}
