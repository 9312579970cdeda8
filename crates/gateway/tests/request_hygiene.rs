//! Request hygiene over real sockets: every spelling of a protected path reaches the protecting
//! rule or is refused, never the backend; Host and request-target checks; TRACE; `Connection`
//! cannot remove Host. Requests are written as raw bytes so no client library tidies them first.

use gatehouse_testkit::{Nginx, TestGateway, Upstream};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

/// `/admin` answers 403 itself; everything else goes to `backend` (an address).
fn protected(backend: SocketAddr, listener_extra: &str) -> String {
    r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP LISTENER_EXTRA}
---
kind: Backend
metadata: {name: app}
spec: {endpoints: ["BACKEND"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /admin}}
      directResponse: {status: 403, body: "forbidden by the gateway\n"}
    - match: {path: {prefix: /debug}, methods: [TRACE, GET]}
      backends: [{backend: app}]
    - backends: [{backend: app}]
"#
    .replace("BACKEND", &backend.to_string())
    .replace("LISTENER_EXTRA", listener_extra)
}

/// Sends `raw` on a new connection and reads until the gateway closes it; (status, whole text).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut buf))
        .await
        .expect("the gateway answers and closes in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The JSON echo's `path` field from a response text.
fn echoed_path(text: &str) -> String {
    let body = &text[text.find("\r\n\r\n").expect("head end") + 4..];
    // The echo is chunked or length-delimited; take the JSON object inside.
    let json = &body[body.find('{').expect("json")..=body.rfind('}').expect("json")];
    let v: serde_json::Value = serde_json::from_str(json).expect("echo JSON");
    v["path"].as_str().expect("path").to_string()
}

/// Spellings of `/admin` from RFC 3986 and path-confusion research (Orange Tsai's "Breaking
/// Parser Logic", the nginx/Tomcat `..;` family, IIS backslashes, double encoding): each must be
/// answered by the `/admin` rule (403) or refused (400).
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin",
    "/%61dmin",
    "/%61%64%6d%69%6e",
    "/%41dmin/../admin",
    "//admin",
    "///admin/",
    "/./admin",
    "/x/../admin",
    "/x/%2e%2e/admin",
    "/x/%2E%2E/admin",
    "/x/.%2e/admin",
    "/x/%2e./admin",
    "/x/y/../../admin",
    "/../admin",
    "/admin%2f",
    "/admin%2F",
    "/x/..%2fadmin",
    "/x/..%2Fadmin",
    "/x/..%5cadmin",
    "/x/..\\admin",
    "/x\\..\\admin",
    "/admin%00",
    "/admin%00.json",
    "/%00/../admin",
    "/x/%252e%252e/admin",
    "/%2561dmin",
    "/admin%",
    "/admin%g0",
    "/x/.%2e%2fadmin",
];

#[tokio::test]
async fn every_spelling_of_a_protected_path_hits_its_rule_or_is_refused() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    for spelling in ADMIN_SPELLINGS {
        let (status, text) = exchange(addr, &get(spelling)).await;
        match status {
            403 => assert!(
                text.contains("forbidden by the gateway"),
                "{spelling}: {text}"
            ),
            400 => assert!(text.contains("bad_request"), "{spelling}: {text}"),
            // Double-encoded spellings are not `/admin` to any backend that decodes once: they
            // may pass, but only with the escape kept (upper-cased), never decoded.
            200 => {
                let path = echoed_path(&text);
                assert!(
                    path.contains("%25"),
                    "{spelling} reached the backend as {path}"
                );
            }
            other => panic!("{spelling}: unexpected {other}: {text}"),
        }
    }
}

#[tokio::test]
async fn a_real_nginx_admin_handler_is_never_reached() {
    // nginx decodes `%XX` and merges slashes itself: whatever it would serve as /admin must be
    // caught by the gateway first.
    let nginx = Nginx::start(
        "location /admin { return 200 \"nginx admin\\n\"; } location / { return 200 \"nginx other\\n\"; }",
    );
    let gw = TestGateway::start(&protected(nginx.addr, "")).await;
    let addr = gw.addr("web").await;
    for spelling in ADMIN_SPELLINGS {
        let (status, text) = exchange(addr, &get(spelling)).await;
        assert!(
            !text.contains("nginx admin"),
            "{spelling} reached nginx's admin: {text}"
        );
        assert!(matches!(status, 200 | 400 | 403), "{spelling}: {text}");
    }
}

#[tokio::test]
async fn the_upstream_receives_the_normal_form() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    for (sent, seen) in [
        ("/a//b/./c/../d?q=%2f", "/a/b/d"),
        ("/%7Euser/%e2%82%ac", "/~user/%E2%82%AC"),
        ("/files/x%20y", "/files/x%20y"),
    ] {
        let (status, text) = exchange(addr, &get(sent)).await;
        assert_eq!(status, 200, "{sent}: {text}");
        assert_eq!(echoed_path(&text), seen, "{sent}");
    }
}

#[tokio::test]
async fn a_listener_can_keep_escaped_slashes_as_data() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, ", paths: {escapedSlashes: Keep}")).await;
    let addr = gw.addr("web").await;
    let (status, text) = exchange(addr, &get("/files/a%2fb")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(echoed_path(&text), "/files/a%2Fb");
    // Kept escapes are data inside a segment: `..%2f` is no dot segment and `/admin` stays safe.
    let (status, text) = exchange(addr, &get("/x/..%2fadmin")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(echoed_path(&text), "/x/..%2Fadmin");
    assert_eq!(exchange(addr, &get("/x/..\\admin")).await.0, 400);
}

#[tokio::test]
async fn host_and_request_target_are_checked() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    let cases: &[(&str, u16)] = &[
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a, b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: user@app.test\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "GET admin HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "GET * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            200,
        ),
        (
            "GET http://user@app.test/ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            400,
        ),
        ("GET / HTTP/1.0\r\n\r\n", 200),
        (
            "TRACE / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            "TRACE /admin HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            405,
        ),
        (
            "TRACE /debug HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
            200,
        ),
    ];
    for (raw, want) in cases {
        let (status, text) = exchange(addr, raw.as_bytes()).await;
        assert_eq!(status, *want, "{raw:?}: {text}");
    }
}

#[tokio::test]
async fn absolute_form_authority_replaces_host_and_connection_cannot_drop_it() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    let host_seen = |text: &str| {
        let body = &text[text.find('{').expect("json")..=text.rfind('}').expect("json")];
        let v: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
        v["headers"]["host"].as_str().map(str::to_string)
    };
    let raw = "GET http://real.test/x HTTP/1.1\r\nHost: decoy.test\r\nConnection: close\r\n\r\n";
    let (status, text) = exchange(addr, raw.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(host_seen(&text).as_deref(), Some("real.test"));
    let raw = "GET /x HTTP/1.1\r\nHost: app.test\r\nConnection: host, close\r\n\r\n";
    let (status, text) = exchange(addr, raw.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(host_seen(&text).as_deref(), Some("app.test"));
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    use http_body_util::Empty;
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr("web").await)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    // hyper sends the URI's authority as `:authority` and a `host` field as it is.
    for (host, want) in [
        (None, 200),
        (Some("APP.test"), 200),
        (Some("other.test"), 400),
    ] {
        let mut req = http::Request::get("http://app.test/x");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let resp = send
            .send_request(req.body(Empty::<bytes::Bytes>::new()).expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status(), want, "host {host:?}");
    }
}

#[tokio::test]
async fn errors_name_the_backend_never_an_address_or_an_os_error() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let gw = TestGateway::start(&protected(closed, "")).await;
    let (status, text) = exchange(gw.addr("web").await, &get("/x")).await;
    assert_eq!(status, 502, "{text}");
    let body = &text[text.find("\r\n\r\n").expect("head end") + 4..];
    assert!(body.contains("backend default/app"), "{body}");
    assert!(
        body.ends_with("}\n"),
        "JSON error bodies end with a newline: {body:?}"
    );
    for leak in [
        "127.0.0.1",
        &closed.port().to_string(),
        "os error",
        "refused",
    ] {
        assert!(!body.contains(leak), "`{leak}` leaked in {body}");
    }
}
