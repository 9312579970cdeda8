//! The developer portal: served under a path prefix on the HTTP listeners (before routing) or on a
//! listener of its own that reloads start, move and stop; pages rendered from the gateway's OpenAPI
//! document with every config-supplied string escaped; try-it sending a real request through the
//! gateway; the changelog filled by reloads.

use bytes::Bytes;
use gatehouse_testkit::{refuses, Client, TestGateway, Upstream};
use http::Request;
use http_body_util::Full;

/// Two APIs on two hosts and versions, a direct response, and the portal mounted as `PORTAL`.
const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec:
  accessLog: {enabled: false}
  portal: PORTAL
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Route
metadata: {name: tasks-v1}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v1/tasks}, methods: [GET, POST]}
      backends: [{backend: tasks}]
      timeout: 5s
---
kind: Route
metadata: {name: hello}
spec:
  rules:
    - match: {path: {exact: /v2/hello}}
      directResponse: {status: 200, body: "hello from v2"}
"#;

fn config(portal: &str, upstream: &Upstream) -> String {
    CONFIG
        .replace("PORTAL", portal)
        .replace("UPSTREAM", &upstream.addr.to_string())
}

async fn get(url: &str) -> gatehouse_testkit::Reply {
    Client::new().get(url, &[]).await.expect("request")
}

#[tokio::test]
async fn path_prefix_portal_is_served_before_routing_on_the_listener() {
    let up = Upstream::start("tasks").await;
    let gw = TestGateway::start(&config(
        r#"{pathPrefix: /portal, title: "Example <APIs> & co"}"#,
        &up,
    ))
    .await;
    let url = gw.url("web").await;

    let index = get(&format!("{url}/portal/")).await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        index.header("x-request-id").is_some(),
        "logged like any answer"
    );
    assert!(index.header("content-security-policy").is_some());
    let html = index.text();
    assert!(
        html.contains(
            "<title>Example &lt;APIs&gt; &amp; co · Example &lt;APIs&gt; &amp; co</title>"
        ),
        "{html}"
    );
    assert!(!html.contains("<APIs>"), "the title is escaped everywhere");
    assert!(
        html.contains("api.example.com") && html.contains("/v1/tasks"),
        "{html}"
    );
    assert!(
        html.contains("href=\"/portal/assets/portal.css\""),
        "links carry the prefix"
    );

    // The bare prefix redirects to the directory form; unknown pages are a 404 page, not a route.
    let bare = get(&format!("{url}/portal")).await;
    assert_eq!(bare.status, 308);
    assert_eq!(bare.header("location"), Some("/portal/"));
    assert_eq!(get(&format!("{url}/portal/nope")).await.status, 404);
    assert_eq!(
        get(&format!("{url}/portal/assets/portal.js")).await.status,
        200
    );
    let doc = get(&format!("{url}/portal/openapi.json")).await;
    assert_eq!(doc.json()["openapi"], "3.1.0");
    assert!(
        doc.json()["paths"]["/v1/tasks"]["get"].is_object(),
        "{}",
        doc.text()
    );
    assert!(
        !doc.text().contains("config.yaml"),
        "no config file paths on public pages"
    );

    // Every link on the index resolves.
    for link in links(&html).iter().filter(|l| l.starts_with("/portal/")) {
        let page = get(&format!("{url}{}", link.split('#').next().unwrap_or(link))).await;
        assert_eq!(page.status, 200, "{link}");
    }

    // Everything else still routes: a path sharing the prefix's first letters is not the portal.
    assert_eq!(
        get(&format!("{url}/v2/hello")).await.text(),
        "hello from v2"
    );
    assert_eq!(get(&format!("{url}/portalx")).await.status, 404);
    let req = Request::post(format!("{url}/portal/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(Client::new().send(req).await.unwrap().status, 405);
}

/// `href="..."` values of a page.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

#[tokio::test]
async fn portal_on_its_own_address_follows_reloads() {
    let up = Upstream::start("tasks").await;
    let gw = TestGateway::start(&config(r#"{address: "127.0.0.1:0", title: Docs}"#, &up)).await;
    let portal = gw.gw.portal_addr().expect("portal listening");
    let base = format!("http://{portal}");
    let index = get(&format!("{base}/")).await;
    assert_eq!(index.status, 200);
    let html = index.text();
    assert!(
        html.contains("data-try=\"/try\""),
        "try-it goes through the portal's proxy"
    );
    let group = links(&html)
        .into_iter()
        .find(|l| l.starts_with("/apis/") && l.contains("api-example-com"))
        .expect("a page for api.example.com");
    let page = get(&format!("{base}{}", group.split('#').next().unwrap()))
        .await
        .text();
    assert!(
        page.contains("<form class=\"try\" data-method=\"GET\" data-path=\"/v1/tasks\""),
        "{page}"
    );
    // The portal is not on the traffic listener.
    assert_eq!(get(&format!("{}/", gw.url("web").await)).await.status, 404);
    assert_eq!(get(&format!("{base}/changelog")).await.status, 200);

    // A reload that changes the API is in the changelog; the portal keeps its socket.
    gw.write(
        &config(r#"{address: "127.0.0.1:0", title: Docs}"#, &up)
            .replace("methods: [GET, POST]", "methods: [GET]"),
    );
    gw.gw.reload("test").await.expect("reload");
    assert_eq!(gw.gw.portal_addr(), Some(portal));
    let changelog = get(&format!("{base}/changelog")).await.text();
    assert!(changelog.contains("Reload at"), "{changelog}");
    assert!(!changelog.contains("No reload has changed"), "{changelog}");

    // A reload without the portal stops its listener.
    gw.write(&config("null", &up));
    gw.gw.reload("test").await.expect("reload");
    assert_eq!(gw.gw.portal_addr(), None);
    assert!(refuses(portal).await, "the portal's socket is closed");
}

#[tokio::test]
async fn try_it_sends_a_real_request_through_the_gateway() {
    let up = Upstream::start("tasks").await;
    let gw = TestGateway::start(&config(r#"{address: "127.0.0.1:0"}"#, &up)).await;
    let portal = gw.gw.portal_addr().expect("portal listening");
    let send = |body: &'static str, content_type: &'static str| {
        let req = Request::post(format!("http://{portal}/try"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        async move { Client::new().send(req).await.expect("try") }
    };
    let r = send(
        r#"{"method":"POST","host":"api.example.com","path":"/v1/tasks?x=1","headers":[["x-test","yes"]],"body":"{\"a\":1}"}"#,
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], 200);
    // The upstream echoes what it received: the request really went through the gateway.
    let echo: serde_json::Value = serde_json::from_str(j["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/v1/tasks");
    assert!(echo.to_string().contains("x-test"), "{echo}");
    assert!(j["headers"].to_string().contains("x-request-id"));

    // Host decides routing: another host has no route.
    let r = send(
        r#"{"method":"GET","host":"other.example","path":"/v1/tasks"}"#,
        "application/json",
    )
    .await;
    assert_eq!(r.json()["status"], 404);
    // Not JSON (what a cross-site form could send), bad paths, unknown fields: 400, nothing sent.
    let before = up.requests();
    assert_eq!(
        send(r#"{"method":"GET","path":"/v1/tasks"}"#, "text/plain")
            .await
            .status,
        400
    );
    assert_eq!(
        send(
            r#"{"method":"GET","path":"http://evil/"}"#,
            "application/json"
        )
        .await
        .status,
        400
    );
    assert_eq!(
        send(r#"{"method":"GET","path":"//evil/"}"#, "application/json")
            .await
            .status,
        400
    );
    assert_eq!(
        send(r#"{"method":"G T","path":"/"}"#, "application/json")
            .await
            .status,
        400
    );
    assert_eq!(
        send(
            r#"{"method":"GET","path":"/","url":"x"}"#,
            "application/json"
        )
        .await
        .status,
        400
    );
    assert_eq!(send("not json", "application/json").await.status, 400);
    assert_eq!(up.requests(), before);
}

#[tokio::test]
async fn a_taken_portal_address_refuses_the_reload_and_keeps_serving() {
    let up = Upstream::start("tasks").await;
    let gw = TestGateway::start(&config("null", &up)).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    gw.write(&config(&format!("{{address: \"{addr}\"}}"), &up));
    let errors = gw.gw.reload("test").await.expect_err("address in use");
    assert!(errors[0].contains("portal: cannot listen on"), "{errors:?}");
    assert_eq!(gw.gw.portal_addr(), None);
    assert_eq!(
        get(&format!("{}/v2/hello", gw.url("web").await))
            .await
            .status,
        200
    );
}
