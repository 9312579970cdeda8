//! CORS preflights as a browser sends them, with `curl`: answered at the edge (the backend never
//! sees them) for the rule that serves the method asked about, with the policy's methods,
//! headers, credentials and max-age; other origins get no CORS fields; `Vary: Origin` always.

use gatehouse_testkit::{TestGateway, Upstream};
use std::process::Command;

fn config(backend: std::net::SocketAddr) -> String {
    r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: app}
spec: {endpoints: ["BACKEND"]}
---
kind: Policy
metadata: {name: web-app}
spec:
  cors:
    allowOrigins: ["https://app.example.com"]
    allowMethods: [GET, PUT, DELETE]
    allowHeaders: [authorization, content-type]
    exposeHeaders: [x-request-id]
    allowCredentials: true
    maxAge: 10m
---
kind: Policy
metadata: {name: public}
spec:
  cors: {allowOrigins: ["*"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /api}, methods: [GET, PUT, DELETE]}
      backends: [{backend: app}]
      policies: [web-app]
    - match: {path: {prefix: /public}}
      backends: [{backend: app}]
      policies: [public]
"#
    .replace("BACKEND", &backend.to_string())
}

/// Runs curl with `args` and returns (status, lower-cased header lines, body).
fn curl(args: &[&str]) -> (u16, Vec<String>, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = (lines.next().and_then(|l| l.split(' ').nth(1)))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (
        status,
        lines.map(str::to_ascii_lowercase).collect(),
        body.to_string(),
    )
}

fn has(head: &[String], line: &str) -> bool {
    head.iter().any(|l| l == line)
}

fn named<'a>(head: &'a [String], name: &str) -> Vec<&'a String> {
    head.iter()
        .filter(|l| l.starts_with(&format!("{name}:")))
        .collect()
}

#[tokio::test]
async fn a_browser_preflight_is_answered_at_the_edge() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let url = format!("{}/api/tasks/7", gw.url("web").await);
    // What Chromium sends before `fetch(url, {method: "PUT", credentials: "include",
    // headers: {"content-type": "application/json", authorization: ...}})`.
    let (status, head, body) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-X",
            "OPTIONS",
            &url,
            "-H",
            "Origin: https://app.example.com",
            "-H",
            "Access-Control-Request-Method: PUT",
            "-H",
            "Access-Control-Request-Headers: authorization,content-type",
            "-H",
            "Sec-Fetch-Mode: cors",
        ])
    })
    .await
    .expect("curl");
    assert_eq!(status, 204, "{head:?} {body}");
    for line in [
        "access-control-allow-origin: https://app.example.com",
        "access-control-allow-methods: get, put, delete",
        "access-control-allow-headers: authorization, content-type",
        "access-control-allow-credentials: true",
        "access-control-max-age: 600",
        "vary: origin",
    ] {
        assert!(has(&head, line), "missing `{line}` in {head:?}");
    }
    assert!(body.is_empty());
    assert_eq!(up.requests(), 0, "the backend never sees a preflight");
}

#[tokio::test]
async fn other_origins_get_no_cors_fields() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let base = gw.url("web").await;
    let (api, public) = (format!("{base}/api/x"), format!("{base}/public/x"));
    let (status, head, body) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-X",
            "OPTIONS",
            &api,
            "-H",
            "Origin: https://evil.example",
            "-H",
            "Access-Control-Request-Method: DELETE",
        ])
    })
    .await
    .expect("curl");
    assert_eq!(status, 403, "{body}");
    assert!(
        named(&head, "access-control-allow-origin").is_empty(),
        "{head:?}"
    );
    assert!(body.contains("forbidden"));
    let api = format!("{base}/api/x");
    let (status, head, _) =
        tokio::task::spawn_blocking(move || curl(&[&api, "-H", "Origin: https://evil.example"]))
            .await
            .expect("curl");
    assert_eq!(status, 200, "the request itself is the browser's to refuse");
    assert!(
        named(&head, "access-control-allow-origin").is_empty(),
        "{head:?}"
    );
    assert!(has(&head, "vary: origin"), "{head:?}");
    // A wildcard policy answers `*`, and never with credentials.
    let (status, head, _) = tokio::task::spawn_blocking(move || {
        curl(&[&public, "-H", "Origin: https://anyone.example"])
    })
    .await
    .expect("curl");
    assert_eq!(status, 200);
    assert!(has(&head, "access-control-allow-origin: *"), "{head:?}");
    assert!(named(&head, "access-control-allow-credentials").is_empty());
}

#[tokio::test]
async fn actual_requests_from_the_allowed_origin_carry_the_fields() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let api = format!("{}/api/x", gw.url("web").await);
    let (status, head, body) = tokio::task::spawn_blocking(move || {
        curl(&[
            "-X",
            "PUT",
            &api,
            "-H",
            "Origin: https://app.example.com",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ])
    })
    .await
    .expect("curl");
    assert_eq!(status, 200, "{body}");
    for line in [
        "access-control-allow-origin: https://app.example.com",
        "access-control-allow-credentials: true",
        "access-control-expose-headers: x-request-id",
        "vary: origin",
    ] {
        assert!(has(&head, line), "missing `{line}` in {head:?}");
    }
    assert_eq!(up.requests(), 1);
}
