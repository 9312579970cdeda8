//! Overrides before the split (release by routing): a developer's laptop instance, registered
//! through the admin registration API, receives exactly the requests whose header, cookie or query
//! parameter names the developer, and nothing else; while it has no healthy endpoint those
//! requests fall back to the normal split and the access log says `"override":"fallback"`.

mod common;

use common::{admin_call, bodies, logged_gateway, with_gateway, Named};
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{wait_for, Client, TestGateway};
use std::sync::atomic::Ordering;

// After the Gateway (JSON access log) and listener `web` documents (`logged_gateway`).
const CONFIG: &str = r#"
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["{tasks}"]}
---
kind: Backend
metadata: {name: tasks-richard}
spec:
  discovery: {registration: {ttl: 30s}}
  # A timeout a loaded machine does not miss twice in a row: the laptop must not flap.
  healthCheck: {http: {path: /healthz}, interval: 500ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 1}
---
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - match: {path: {prefix: /v1/tasks}}
      overrides:
        - {match: {headers: [{name: x-dev-user, value: richard}]}, backend: tasks-richard}
        - {match: {cookies: [{name: dev, value: richard}]}, backend: tasks-richard}
        - {match: {query: [{name: dev, regex: "rich.*"}]}, backend: tasks-richard}
      backends: [{backend: tasks}]
"#;

/// Asserts that each of `n` requests to `url` with `headers` is answered 200 by `server`.
async fn all_served_by(
    client: &Client,
    url: &str,
    headers: &[(&str, &str)],
    n: usize,
    server: &str,
) {
    let got = bodies(client, url, headers, n).await;
    assert!(
        got.iter().all(|s| s == server),
        "{headers:?} to {url}: {got:?}"
    );
}

/// Waits until a request to `url` with `headers` is answered by `server`.
async fn until_served_by(client: &Client, url: &str, headers: &[(&str, &str)], server: &str) {
    wait_for(&format!("{headers:?} served by {server}"), || async {
        client
            .get(url, headers)
            .await
            .is_ok_and(|r| r.text() == server)
    })
    .await;
}

/// The access log's lines so far, parsed.
fn log_lines(gw: &TestGateway) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(gw.dir.path().join("access.log")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn a_registered_laptop_gets_only_its_developers_requests_and_falls_back_when_down() {
    let tasks = Named::start("tasks").await;
    let laptop = Named::start("laptop").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = logged_gateway(&log) + &fill(CONFIG, &[("tasks", &tasks.addr.to_string())]);
    let gw = TestGateway::start_in(dir, &yaml).await;
    let url = format!("{}/v1/tasks", gw.url("web").await);
    let client = Client::new();
    let mine = [("x-dev-user", "richard")];

    // Before the laptop registers, the developer's requests take the split, and the log says so.
    all_served_by(&client, &url, &mine, 3, "tasks").await;
    let lines = log_lines(&gw);
    assert!(
        lines
            .iter()
            .any(|l| l["override"] == "fallback" && l["backend"] == "default/tasks"),
        "no fallback in the access log: {lines:?}"
    );

    let lease = format!(r#"{{"address": "{}"}}"#, laptop.addr);
    let path = "/backends/default/tasks-richard/endpoints/laptop";
    let r = admin_call(&gw, http::Method::PUT, path, &lease).await;
    assert_eq!(r.status, 201, "{}", r.text());
    until_served_by(&client, &url, &mine, "laptop").await;

    // Each kind of override reaches the laptop, every time; nobody else's requests do.
    all_served_by(&client, &url, &mine, 50, "laptop").await;
    let cookie = [("cookie", "theme=dark; dev=richard")];
    all_served_by(&client, &url, &cookie, 20, "laptop").await;
    all_served_by(&client, &format!("{url}?dev=richard"), &[], 20, "laptop").await;
    for other in [
        vec![],
        vec![("x-dev-user", "ana")],
        vec![("cookie", "dev=ana")],
    ] {
        all_served_by(&client, &url, &other, 50, "tasks").await;
    }
    all_served_by(&client, &format!("{url}?dev=ana"), &[], 20, "tasks").await;
    let applied = log_lines(&gw)
        .iter()
        .filter(|l| l["override"] == "applied" && l["backend"] == "default/tasks-richard")
        .count();
    assert!(applied >= 90, "{applied} applied overrides logged");

    // The laptop goes down (fails its health check): the developer's requests fall back.
    laptop.health.store(503, Ordering::Relaxed);
    until_served_by(&client, &url, &mine, "tasks").await;
    all_served_by(&client, &url, &mine, 20, "tasks").await;
    let lines = log_lines(&gw);
    let last = lines.last().expect("logged");
    assert_eq!(last["override"], "fallback", "{last}");
    assert_eq!(last["backend"], "default/tasks");

    // Back up: back to the laptop. Deregistered: the split again.
    laptop.health.store(200, Ordering::Relaxed);
    until_served_by(&client, &url, &mine, "laptop").await;
    let r = admin_call(&gw, http::Method::DELETE, path, "").await;
    assert!(r.status.is_success(), "{}", r.text());
    until_served_by(&client, &url, &mine, "tasks").await;
}

// After `GATEWAY_AND_WEB` (testkit): listener `web` on a free port, access log off.
const CLAIMS: &str = r#"
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["{tasks}"]}
---
kind: Backend
metadata: {name: tasks-richard}
spec: {endpoints: ["{laptop}"]}
---
kind: Policy
metadata: {name: require-jwt}
spec:
  jwt: {secret: {value: "{secret}"}}
---
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - policies: [require-jwt]
      overrides:
        - {match: {claims: [{name: sub, value: richard}]}, backend: tasks-richard}
      backends: [{backend: tasks}]
"#;

#[tokio::test]
async fn a_jwt_claim_routes_its_subject_to_the_override() {
    let tasks = Named::start("tasks").await;
    let laptop = Named::start("laptop").await;
    let secret = "0123456789abcdef0123456789abcdef";
    let yaml = with_gateway(&fill(
        CLAIMS,
        &[
            ("tasks", &tasks.addr.to_string()),
            ("laptop", &laptop.addr.to_string()),
            ("secret", secret),
        ],
    ));
    let gw = TestGateway::start(&yaml).await;
    let url = format!("{}/v1/tasks", gw.url("web").await);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let bearer = |sub: &str| {
        let claims = serde_json::json!({"sub": sub, "exp": exp});
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        )
    };
    let client = Client::new();
    let (richard, ana) = (bearer("richard"), bearer("ana"));
    all_served_by(&client, &url, &[("authorization", &richard)], 20, "laptop").await;
    all_served_by(&client, &url, &[("authorization", &ana)], 20, "tasks").await;
    // A forged `sub` in a header is not a claim.
    let r = client.get(&url, &[("sub", "richard")]).await.unwrap();
    assert_eq!(r.status, 401, "no token, no request");
}

#[test]
fn claims_need_a_jwt_policy_and_every_override_error_is_reported_at_once() {
    let yaml = r#"apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["127.0.0.1:1"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - overrides:
        - {match: {claims: [{name: sub, value: richard}]}, backend: tasks}
        - {match: {headers: [{name: x-dev, value: me}]}, backend: taks}
        - {match: {}, backend: tasks}
      stickySplit: {cookie: a, header: b}
      mirror: {backend: tasks, maxInFlight: 0}
      backends: [{backend: tasks}]
    - directResponse: {status: 200}
      mirror: {backend: tasks}
"#;
    let err = gatehouse_config::load_sources(&[gatehouse_config::SourceFile {
        name: "t.yaml".into(),
        text: yaml.into(),
    }])
    .expect_err("refused")
    .to_string();
    println!("{err}");
    for want in [
        "t.yaml:12:",
        "spec.rules[0].overrides[0].match.claims: matching on `claims` needs a jwt policy",
        "spec.rules[0].overrides[1].backend: unknown backend `default/taks` (did you mean `tasks`?)",
        "spec.rules[0].overrides[2].match: an override needs at least one of",
        "spec.rules[0].stickySplit: `stickySplit` needs exactly one of `cookie` or `header`",
        "spec.rules[0].mirror.maxInFlight: maxInFlight must be above 0",
        "spec.rules[1].mirror: `mirror` only applies to rules with `backends`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
