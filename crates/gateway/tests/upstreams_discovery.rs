//! Discovery through a running gateway with real components: endpoints registered in etcd, named
//! in DNS (dnsmasq), listed in a file or leased through the registration API get traffic, and
//! leave it when they go; a broken source keeps the last set and is shown in `GET /backends`; a
//! reload that touches only routes keeps discovered endpoints and their health; `/metrics` shows
//! discovery and health per backend.

mod common;

use common::{addresses, admin_call, backend, bodies, metric, with_gateway, Named};
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{wait_for, Client, Dnsmasq, Etcd, Reply, TestGateway};
use std::time::{Duration, Instant};

/// Listener `web`; every request to backend `tasks`, whose endpoint source is `{source}`.
// After `GATEWAY_AND_WEB` (testkit): listener `web` on a free port, access log off.
const ONE_BACKEND: &str = r#"
---
kind: Backend
metadata: {name: tasks}
spec:
  {source}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: tasks}]
"#;

/// How long a wait may take before the test fails: generous, since the machine is shared.
const DEADLINE: Duration = Duration::from_secs(20);

/// Sends requests until `done` holds for the last `window` bodies; returns how long that took.
async fn until_bodies(
    url: &str,
    window: usize,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Duration {
    let (client, start) = (Client::new(), Instant::now());
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < window || !done(&seen[seen.len() - window..]) {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for: {what}; last {seen:?}"
        );
        seen.extend(bodies(&client, url, &[], 1).await);
    }
    start.elapsed()
}

#[tokio::test]
async fn an_instance_registered_in_etcd_gets_traffic_at_once_and_leaves_when_deleted() {
    let (a, b) = (Named::start("a").await, Named::start("b").await);
    let etcd = Etcd::start();
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .expect("connect to etcd");
    let value = |addr| format!(r#"{{"address": "{addr}"}}"#);
    kv.put("/services/tasks/a", value(a.addr), None)
        .await
        .unwrap();
    let source = fill(
        "discovery: {etcd: {endpoints: [\"{url}\"], prefix: /services/tasks/}}",
        &[("url", &etcd.url)],
    );
    let yaml = with_gateway(&fill(ONE_BACKEND, &[("source", &source)]));
    let gw = TestGateway::start(&yaml).await;
    let url = format!("{}/x", gw.url("web").await);
    until_bodies(&url, 1, "a serves", |s| s[0] == "a").await;

    // Timed from etcd's acknowledgement: its own write (an fsync on a loaded disk) is not the
    // gateway's delay.
    kv.put("/services/tasks/b", value(b.addr), None)
        .await
        .unwrap();
    let put_at = Instant::now();
    until_bodies(&url, 1, "b serves", |s| s[0] == "b").await;
    let joined = put_at.elapsed();

    kv.delete("/services/tasks/a", None).await.unwrap();
    let deleted_at = Instant::now();
    // Round robin over two alternates: four b in a row means a is out.
    until_bodies(&url, 4, "only b serves", |s| s.iter().all(|n| n == "b")).await;
    let left = deleted_at.elapsed();
    println!("etcd: registered -> traffic in {joined:?}; deleted -> no traffic in {left:?}");
    // A watch, not a poll: seconds of margin for a loaded machine (typically ~10 ms here).
    assert!(joined < Duration::from_secs(3), "joined after {joined:?}");
    assert!(left < Duration::from_secs(3), "left after {left:?}");
    assert_eq!(addresses(&gw, "default/tasks").await, [b.addr.to_string()]);

    // A reload that touches only the route keeps the discovered set: there right after it.
    let route = "- backends: [{backend: tasks}]";
    gw.write(&yaml.replace(
        route,
        &format!("{route}\n      responseHeaders: {{set: {{x-config: \"2\"}}}}"),
    ));
    gw.gw.reload("test").await.expect("reload");
    assert_eq!(addresses(&gw, "default/tasks").await, [b.addr.to_string()]);
    let r = Client::new().get(&url, &[]).await.unwrap();
    assert_eq!((r.header("x-config"), r.text().as_str()), (Some("2"), "b"));
}

/// A port free on both 127.0.0.1 and 127.0.0.2, with an upstream bound on each.
async fn twins() -> (Named, Named) {
    for _ in 0..20 {
        let one = Named::start_on("one", "127.0.0.1:0".parse().unwrap()).await;
        let other = format!("127.0.0.2:{}", one.addr.port()).parse().unwrap();
        if tokio::net::TcpListener::bind(other).await.is_ok() {
            return (one, Named::start_on("two", other).await);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn routing_follows_a_dns_change() {
    let (one, two) = twins().await;
    let dns = Dnsmasq::start("127.0.0.1 tasks.test\n", &[]);
    let source = fill(
        "discovery: {dns: {name: tasks.test, port: {port}, resolver: \"{resolver}\"}}",
        &[
            ("port", &one.addr.port().to_string()),
            ("resolver", &dns.addr.to_string()),
        ],
    );
    let gw = TestGateway::start(&with_gateway(&fill(ONE_BACKEND, &[("source", &source)]))).await;
    let url = format!("{}/x", gw.url("web").await);
    until_bodies(&url, 1, "one serves", |s| s[0] == "one").await;

    dns.set_hosts("127.0.0.2 tasks.test\n");
    // Answers live one second: the change is followed within a few.
    let took = until_bodies(&url, 4, "only two serves", |s| s.iter().all(|n| n == "two")).await;
    println!("dns: hosts changed -> traffic moved in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        addresses(&gw, "default/tasks").await,
        [two.addr.to_string()]
    );
    assert_eq!(backend(&gw, "default/tasks").await["provider"], "dns");
}

/// A gateway whose backend `tasks` reads `endpoints.list` beside its config (not a manifest extension: the config directory is read whole), written first.
async fn file_gateway(endpoints: &str, extra: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("endpoints.list"), endpoints).unwrap();
    let source = format!("discovery: {{file: {{path: endpoints.list}}}}\n  {extra}");
    TestGateway::start_in(
        dir,
        &with_gateway(&fill(ONE_BACKEND, &[("source", &source)])),
    )
    .await
}

#[tokio::test]
async fn a_broken_endpoints_file_keeps_serving_the_last_set_and_shows_the_error() {
    let (a, b) = (Named::start("a").await, Named::start("b").await);
    let gw = file_gateway(&format!("- {}\n", a.addr), "").await;
    let url = format!("{}/x", gw.url("web").await);
    let file = gw.dir.path().join("endpoints.list");
    until_bodies(&url, 1, "a serves", |s| s[0] == "a").await;

    std::fs::write(&file, format!("- {}\n", b.addr)).unwrap();
    until_bodies(&url, 2, "only b serves", |s| s.iter().all(|n| n == "b")).await;
    let good = backend(&gw, "default/tasks").await;
    assert_eq!(good["provider"], "file");
    assert!(good["lastUpdate"].is_string(), "{good}");
    assert!(good["lastError"].is_null(), "{good}");

    std::fs::write(&file, format!("- {}\n- 127.0.0.1:99999\n", b.addr)).unwrap();
    wait_for("lastError shown", || async {
        !backend(&gw, "default/tasks").await["lastError"].is_null()
    })
    .await;
    let broken = backend(&gw, "default/tasks").await;
    let error = &broken["lastError"];
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("endpoints.list:2:"), "{broken}");
    assert!(message.contains("invalid endpoint"), "{broken}");
    assert!(error["at"].is_string(), "{broken}");
    assert_eq!(broken["provider"], "file");
    assert_eq!(broken["endpoints"], good["endpoints"]);
    let seen = bodies(&Client::new(), &url, &[], 10).await;
    assert!(seen.iter().all(|n| n == "b"), "{seen:?}");
}

/// Listener `web`: `/short` to backend `short` (leases of 300ms), `/fixed` to static backend
/// `fixed`, everything else to `tasks` (leases of 30s, HTTP health check). `{header}` marks the
/// config version in a response header.
// After `GATEWAY_AND_WEB` (testkit): listener `web` on a free port, access log off.
const REGISTRATION: &str = r#"
---
kind: Backend
metadata: {name: tasks}
spec:
  discovery: {registration: {ttl: 30s}}
  # A timeout a loaded machine does not miss twice in a row: a healthy instance must not flap.
  healthCheck: {http: {path: /healthz}, interval: 500ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 1}
---
kind: Backend
metadata: {name: short}
spec:
  discovery: {registration: {ttl: 300ms}}
---
kind: Backend
metadata: {name: fixed}
spec: {endpoints: ["127.0.0.1:9"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /short}}
      backends: [{backend: short}]
    - match: {path: {prefix: /fixed}}
      backends: [{backend: fixed}]
    - backends: [{backend: tasks}]
      responseHeaders: {set: {x-config: "{header}"}}
"#;

async fn put(gw: &TestGateway, path: &str, body: &str) -> Reply {
    admin_call(gw, http::Method::PUT, path, body).await
}

/// `address*weight` of every endpoint of backend `name`, sorted.
async fn endpoint_set(gw: &TestGateway, name: &str) -> Vec<String> {
    let b = backend(gw, name).await;
    let mut set: Vec<String> = (b["endpoints"].as_array().unwrap().iter())
        .map(|e| format!("{}*{}", e["address"].as_str().unwrap(), e["weight"]))
        .collect();
    set.sort();
    set
}

#[tokio::test]
async fn registration_leases_create_renew_expire_and_leave() {
    let (a, b) = (Named::start("a").await, Named::start("b").await);
    let gw = TestGateway::start(&with_gateway(&fill(REGISTRATION, &[("header", "1")]))).await;
    let web = gw.url("web").await;
    let lease = |addr| format!(r#"{{"address": "{addr}", "weight": 2}}"#);

    let r = put(&gw, "/backends/default/tasks/endpoints/a", &lease(a.addr)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["ttl"], "30s");
    until_bodies(&format!("{web}/x"), 1, "a serves", |s| s[0] == "a").await;
    let r = put(&gw, "/backends/default/tasks/endpoints/a", &lease(a.addr)).await;
    assert_eq!(r.status, 200, "renewal: {}", r.text());
    let a_only = vec![format!("{}*2", a.addr)];
    assert_eq!(endpoint_set(&gw, "default/tasks").await, a_only);

    // Bad input: a 4xx JSON error each time, and the set is unchanged.
    let bad = [
        (
            "/backends/default/tasks/endpoints/b",
            "{not json".to_string(),
            400,
            "bad_json",
        ),
        (
            "/backends/default/tasks/endpoints/b",
            format!(r#"{{"address": "{}", "colour": "red"}}"#, b.addr),
            400,
            "bad_json",
        ),
        (
            "/backends/default/tasks/endpoints/b",
            r#"{"address": "b.local"}"#.into(),
            400,
            "bad_address",
        ),
        (
            "/backends/default/tasks/endpoints/b",
            format!(r#"{{"address": "{}", "weight": 0}}"#, b.addr),
            400,
            "bad_endpoint",
        ),
        (
            "/backends/default/nosuch/endpoints/b",
            lease(b.addr),
            404,
            "unknown_backend",
        ),
        (
            "/backends/default/fixed/endpoints/b",
            lease(b.addr),
            409,
            "not_registrable",
        ),
    ];
    for (path, body, status, kind) in bad {
        let r = put(&gw, path, &body).await;
        assert_eq!(r.status, status, "PUT {path} {body}: {}", r.text());
        assert_eq!(r.json()["error"], kind, "PUT {path} {body}");
        assert!(r.json()["message"].is_string());
        assert_eq!(
            endpoint_set(&gw, "default/tasks").await,
            a_only,
            "after {body}"
        );
    }
    assert_eq!(endpoint_set(&gw, "default/fixed").await, ["127.0.0.1:9*1"]);

    // A lease not renewed expires (300ms) and its endpoint leaves.
    let registered = Instant::now();
    let r = put(&gw, "/backends/default/short/endpoints/b", &lease(b.addr)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(addresses(&gw, "default/short").await, [b.addr.to_string()]);
    wait_for("the short lease expires", || async {
        addresses(&gw, "default/short").await.is_empty()
    })
    .await;
    let expired = registered.elapsed();
    println!("registration: a 300ms lease left after {expired:?}");
    assert!(expired >= Duration::from_millis(300), "{expired:?}");

    let r = admin_call(
        &gw,
        http::Method::DELETE,
        "/backends/default/tasks/endpoints/a",
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(addresses(&gw, "default/tasks").await.is_empty());
    let r = admin_call(
        &gw,
        http::Method::DELETE,
        "/backends/default/tasks/endpoints/a",
        "",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
}

#[tokio::test]
async fn a_reload_touching_only_routes_keeps_registered_endpoints_and_their_health() {
    let (a, b) = (Named::start("a").await, Named::start("b").await);
    b.health.store(503, std::sync::atomic::Ordering::Relaxed);
    let gw = TestGateway::start(&with_gateway(&fill(REGISTRATION, &[("header", "1")]))).await;
    for (id, up) in [("a", &a), ("b", &b)] {
        let body = format!(r#"{{"address": "{}"}}"#, up.addr);
        let path = format!("/backends/default/tasks/endpoints/{id}");
        assert_eq!(put(&gw, &path, &body).await.status, 201);
    }
    let healths = || async {
        let b = backend(&gw, "default/tasks").await;
        let mut v: Vec<String> = (b["endpoints"].as_array().unwrap().iter())
            .map(|e| {
                format!(
                    "{} {}",
                    e["address"].as_str().unwrap(),
                    e["health"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut want = vec![
        format!("{} healthy", a.addr),
        format!("{} unhealthy", b.addr),
    ];
    want.sort();
    wait_for("a healthy, b unhealthy", || async {
        healths().await == want
    })
    .await;

    gw.write(&with_gateway(&fill(REGISTRATION, &[("header", "2")])));
    gw.gw.reload("test").await.expect("reload");
    // Right after the reload, without waiting for anything: same endpoints, same verdicts.
    assert_eq!(healths().await, want);
    let r = Client::new()
        .get(&format!("{}/x", gw.url("web").await), &[])
        .await
        .unwrap();
    assert_eq!((r.header("x-config"), r.text().as_str()), (Some("2"), "a"));
}

#[tokio::test]
async fn backends_and_metrics_show_discovery_health_and_ejections_per_backend() {
    let a = Named::start("a").await;
    let extra = "healthCheck: {http: {path: /healthz}, interval: 300ms, timeout: 300ms}\n  outlierDetection: {consecutiveErrors: 3}";
    let gw = file_gateway(
        &format!("- {{address: \"{}\", weight: 4}}\n", a.addr),
        extra,
    )
    .await;
    wait_for("a healthy", || async {
        backend(&gw, "default/tasks").await["endpoints"][0]["health"] == "healthy"
    })
    .await;
    std::fs::write(gw.dir.path().join("endpoints.list"), "- nonsense\n").unwrap();
    wait_for("the error shown", || async {
        !backend(&gw, "default/tasks").await["lastError"].is_null()
    })
    .await;

    let b = backend(&gw, "default/tasks").await;
    assert_eq!(b["provider"], "file");
    assert!(b["lastUpdate"].is_string(), "{b}");
    assert!(
        b["lastError"]["message"].is_string() && b["lastError"]["at"].is_string(),
        "{b}"
    );
    let ep = &b["endpoints"][0];
    assert_eq!(ep["address"], a.addr.to_string());
    assert_eq!(ep["weight"], 4);
    assert_eq!(ep["source"], "file");
    assert_eq!(ep["health"], "healthy");
    assert_eq!(ep["ejected"], false);
    assert_eq!(ep["inFlight"], 0);

    let text = Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    let label = "{backend=\"default/tasks\"}";
    let value = |name: &str| {
        metric(&text, &format!("{name}{label}"))
            .unwrap_or_else(|| panic!("no {name}{label}:\n{text}"))
    };
    assert_eq!(value("gatehouse_available_endpoints"), 1.0);
    assert_eq!(value("gatehouse_outlier_ejections_total"), 0.0);
    assert!(value("gatehouse_discovery_updates_total") >= 1.0);
    assert!(value("gatehouse_discovery_errors_total") >= 1.0);
    let checks = "gatehouse_health_checks_total{backend=\"default/tasks\",result=\"healthy\"}";
    assert!(
        metric(&text, checks).is_some_and(|n| n >= 1.0),
        "no {checks}:\n{text}"
    );

    // A reload that removes the backend drops its series; its successor has its own.
    let yaml = std::fs::read_to_string(gw.config_path()).unwrap();
    gw.write(
        &yaml
            .replace("name: tasks", "name: jobs")
            .replace("backend: tasks", "backend: jobs"),
    );
    gw.gw.reload("test").await.expect("reload");
    let text = Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    let stale = [
        "available_endpoints",
        "health_checks",
        "outlier_ejections",
        "discovery_",
    ]
    .map(|f| format!("gatehouse_{f}"));
    let left: Vec<&str> = (text.lines())
        .filter(|l| l.contains("\"default/tasks\"") && stale.iter().any(|f| l.starts_with(f)))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    assert!(
        text.contains("gatehouse_available_endpoints{backend=\"default/jobs\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_lease_ttl_keeps_the_leases() {
    let a = Named::start("a").await;
    let yaml = with_gateway(&fill(REGISTRATION, &[("header", "1")]));
    let gw = TestGateway::start(&yaml).await;
    let path = "/backends/default/tasks/endpoints/a";
    let body = format!(r#"{{"address": "{}"}}"#, a.addr);
    assert_eq!(put(&gw, path, &body).await.status, 201);

    gw.write(&yaml.replace("ttl: 30s", "ttl: 45s"));
    gw.gw.reload("test").await.expect("reload");
    // Still there right after the reload, and the next PUT is a renewal under the new ttl.
    assert_eq!(addresses(&gw, "default/tasks").await, [a.addr.to_string()]);
    let r = Client::new()
        .get(&format!("{}/x", gw.url("web").await), &[])
        .await
        .unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "a"));
    let r = put(&gw, path, &body).await;
    assert_eq!(
        (r.status.as_u16(), &r.json()["ttl"]),
        (200, &serde_json::json!("45s"))
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_discovery_spec_serves_the_last_set_until_the_new_answer() {
    let a = Named::start("a").await;
    let etcd = Etcd::start();
    let mut kv = etcd_client::Client::connect([etcd.url.as_str()], None)
        .await
        .expect("connect to etcd");
    let value = format!(r#"{{"address": "{}"}}"#, a.addr);
    kv.put("/services/tasks/a", value.clone(), None)
        .await
        .unwrap();
    kv.put("/services/jobs/a", value, None).await.unwrap();
    let source = fill(
        "discovery: {etcd: {endpoints: [\"{url}\"], prefix: /services/tasks/}}",
        &[("url", &etcd.url)],
    );
    let yaml = with_gateway(&fill(ONE_BACKEND, &[("source", &source)]));
    let gw = TestGateway::start(&yaml).await;
    let url = format!("{}/x", gw.url("web").await);
    until_bodies(&url, 1, "a serves", |s| s[0] == "a").await;

    // Another provider: the last set serves until its first answer, without a gap.
    gw.write(&yaml.replace("/services/tasks/", "/services/jobs/"));
    gw.gw.reload("test").await.expect("reload");
    let seen = bodies(&Client::new(), &url, &[], 5).await;
    assert!(seen.iter().all(|n| n == "a"), "{seen:?}");
    // Then the new provider's answers rule.
    let b = Named::start("b").await;
    let value = format!(r#"{{"address": "{}"}}"#, b.addr);
    kv.put("/services/jobs/b", value, None).await.unwrap();
    kv.delete("/services/jobs/a", None).await.unwrap();
    until_bodies(&url, 4, "only b serves", |s| s.iter().all(|n| n == "b")).await;
    assert_eq!(
        backend(&gw, "default/tasks").await["endpoints"][0]["source"],
        "etcd"
    );
}
