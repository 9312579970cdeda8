//! Overrides before the split (release by routing): a developer's laptop instance, registered
//! through the admin registration API, receives exactly the requests whose header, cookie or query
//! parameter names the developer, and nothing else; while it has no healthy endpoint those
//! requests fall back to the normal split and the access log says `"override":"fallback"`.

mod common;

use bytes::Bytes;
use common::Named;
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{wait_for, Client, Reply, TestGateway};
use http_body_util::Full;
use std::sync::atomic::Ordering;

const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {format: json, path: "{log}"}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["{tasks}"]}
---
kind: Backend
metadata: {name: tasks-richard}
spec:
  discovery: {registration: {ttl: 30s}}
  healthCheck: {http: {path: /healthz}, interval: 50ms, timeout: 40ms, unhealthyThreshold: 1, healthyThreshold: 1}
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

async fn admin_call(gw: &TestGateway, method: http::Method, path: &str, body: &str) -> Reply {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.admin))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    Client::new().send(req).await.expect("admin answers")
}

/// Who answered each of `n` requests to `url` with `headers`.
async fn servers(client: &Client, url: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client.get(url, headers).await.expect("response");
        assert_eq!(r.status, 200, "{}", r.text());
        out.push(r.text());
    }
    out
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
    let yaml = fill(
        CONFIG,
        &[
            ("log", log.to_str().unwrap()),
            ("tasks", &tasks.addr.to_string()),
        ],
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    let url = format!("{}/v1/tasks", gw.url("web").await);
    let client = Client::new();
    let mine = [("x-dev-user", "richard")];

    // Before the laptop registers, the developer's requests take the split, and the log says so.
    assert!(servers(&client, &url, &mine, 3)
        .await
        .iter()
        .all(|s| s == "tasks"));
    let lines = log_lines(&gw);
    assert!(
        lines
            .iter()
            .any(|l| l["override"] == "fallback" && l["backend"] == "default/tasks"),
        "no fallback in the access log: {lines:?}"
    );

    let lease = format!(r#"{{"address": "{}"}}"#, laptop.addr);
    let r = admin_call(
        &gw,
        http::Method::PUT,
        "/backends/default/tasks-richard/endpoints/laptop",
        &lease,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    wait_for("the laptop takes the developer's requests", || async {
        client
            .get(&url, &mine)
            .await
            .is_ok_and(|r| r.text() == "laptop")
    })
    .await;

    // Each kind of override reaches the laptop, every time; nobody else's requests do.
    assert!(servers(&client, &url, &mine, 50)
        .await
        .iter()
        .all(|s| s == "laptop"));
    let cookie = [("cookie", "theme=dark; dev=richard")];
    assert!(servers(&client, &url, &cookie, 20)
        .await
        .iter()
        .all(|s| s == "laptop"));
    let query = format!("{url}?dev=richard");
    assert!(servers(&client, &query, &[], 20)
        .await
        .iter()
        .all(|s| s == "laptop"));
    for other in [
        vec![],
        vec![("x-dev-user", "ana")],
        vec![("cookie", "dev=ana")],
    ] {
        let got = servers(&client, &url, &other, 50).await;
        assert!(
            got.iter().all(|s| s == "tasks"),
            "{other:?} reached {got:?}"
        );
    }
    let got = servers(&client, &format!("{url}?dev=ana"), &[], 20).await;
    assert!(got.iter().all(|s| s == "tasks"));
    let applied = log_lines(&gw)
        .iter()
        .filter(|l| l["override"] == "applied" && l["backend"] == "default/tasks-richard")
        .count();
    assert!(applied >= 90, "{applied} applied overrides logged");

    // The laptop goes down (fails its health check): the developer's requests fall back.
    laptop.health.store(503, Ordering::Relaxed);
    wait_for("the developer's requests fall back", || async {
        client
            .get(&url, &mine)
            .await
            .is_ok_and(|r| r.text() == "tasks")
    })
    .await;
    assert!(servers(&client, &url, &mine, 20)
        .await
        .iter()
        .all(|s| s == "tasks"));
    let lines = log_lines(&gw);
    let last = lines.last().expect("logged");
    assert_eq!(last["override"], "fallback", "{last}");
    assert_eq!(last["backend"], "default/tasks");

    // Back up: back to the laptop. Deregistered: the split again.
    laptop.health.store(200, Ordering::Relaxed);
    wait_for("the laptop is back", || async {
        client
            .get(&url, &mine)
            .await
            .is_ok_and(|r| r.text() == "laptop")
    })
    .await;
    let r = admin_call(
        &gw,
        http::Method::DELETE,
        "/backends/default/tasks-richard/endpoints/laptop",
        "",
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    wait_for("deregistered: the split", || async {
        client
            .get(&url, &mine)
            .await
            .is_ok_and(|r| r.text() == "tasks")
    })
    .await;
}

const CLAIMS: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
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
    let yaml = fill(
        CLAIMS,
        &[
            ("tasks", &tasks.addr.to_string()),
            ("laptop", &laptop.addr.to_string()),
            ("secret", secret),
        ],
    );
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
    let got = servers(&client, &url, &[("authorization", &richard)], 20).await;
    assert!(got.iter().all(|s| s == "laptop"), "{got:?}");
    let got = servers(&client, &url, &[("authorization", &ana)], 20).await;
    assert!(got.iter().all(|s| s == "tasks"), "{got:?}");
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
