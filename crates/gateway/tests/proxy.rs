//! End-to-end proxying over real sockets: routing, rewrites, headers, errors, HTTP/2, streaming.

use bytes::Bytes;
use gatehouse_testkit::{fnv64, status, Client, TestGateway, Upstream};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

fn config(up_a: &Upstream, up_b: &Upstream) -> String {
    r#"
kind: Gateway
metadata: {name: gw}
spec: {accessLog: {enabled: false}, trustedProxies: [10.0.0.0/8]}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: a}
spec: {endpoints: ["A"]}
---
kind: Backend
metadata: {name: b}
spec: {endpoints: ["B"]}
---
kind: Backend
metadata: {name: h2}
spec: {protocol: HTTP2, endpoints: ["B"]}
---
kind: Route
metadata: {name: api}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v1/tasks}}
      rewrite: {pathPrefix: /tasks}
      backends: [{backend: a}]
      requestHeaders: {set: {x-team: tasks}, add: {x-added: "1"}, remove: [x-drop-me]}
      responseHeaders: {set: {x-route: api}, remove: [x-upstream]}
    - match: {path: {regex: "/users/[0-9]+/.*"}}
      rewrite: {pathRegex: {pattern: "^/users/([0-9]+)/(.*)$", substitution: "/u/$1/$2"}, host: users.internal}
      backends: [{backend: b}]
---
kind: Route
metadata: {name: wild}
spec:
  hosts: ["*.example.com"]
  rules:
    - backends: [{backend: b}]
---
kind: Route
metadata: {name: any}
spec:
  rules:
    - match: {path: {prefix: /canary}, headers: [{name: x-dev, value: alice}]}
      backends: [{backend: b}]
    - match: {path: {prefix: /canary}}
      backends: [{backend: a}]
    - match: {path: {prefix: /split}}
      backends: [{backend: a, weight: 3}, {backend: b, weight: 1}]
    - match: {path: {prefix: /h2}}
      backends: [{backend: h2}]
    - match: {path: {prefix: /timeout}}
      rewrite: {pathPrefix: /slow/3000}
      timeout: 200ms
      backends: [{backend: a}]
    - match: {path: {prefix: /down}}
      backends: [{backend: dead}]
    - match: {path: {exact: /moved}}
      redirect: {scheme: https, host: new.example.com, path: /landing, statusCode: 301}
    - match: {path: {exact: /teapot}, methods: [GET]}
      directResponse: {status: 418, body: "short and stout\n"}
    - match: {path: {prefix: /}}
      backends: [{backend: a}]
---
kind: Backend
metadata: {name: dead}
spec: {endpoints: ["DEAD"], timeouts: {connect: 500ms}}
"#
    .replace("\"A\"", &format!("\"{}\"", up_a.addr))
    .replace("\"B\"", &format!("\"{}\"", up_b.addr))
    .replace("\"DEAD\"", &format!("\"{}\"", dead_addr()))
}

/// An address nothing listens on: bound to learn a free port, then closed.
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn setup() -> (TestGateway, Upstream, Upstream, String) {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(&config(&a, &b)).await;
    let url = gw.url("web").await;
    (gw, a, b, url)
}

#[tokio::test]
async fn routes_by_host_path_and_header_over_real_sockets() {
    let (_gw, _a, _b, url) = setup().await;
    let c = Client::new();
    // host, path, headers, expected upstream
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("api.example.com", "/v1/tasks/7", &[], "a"),
        ("API.Example.com:8080", "/v1/tasks/7", &[], "a"),
        ("api.example.com", "/users/42/profile", &[], "b"),
        ("web.example.com", "/v1/tasks/7", &[], "b"),
        ("other.test", "/canary/x", &[("x-dev", "alice")], "b"),
        ("other.test", "/canary/x", &[("x-dev", "bob")], "a"),
        ("other.test", "/anything", &[], "a"),
    ];
    for (host, path, headers, want) in cases {
        let mut h = headers.to_vec();
        h.push(("host", host));
        let r = c.get(&format!("{url}{path}"), &h).await.unwrap();
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        assert_eq!(r.json()["server"], *want, "{host}{path}");
    }
}

#[tokio::test]
async fn rewrites_and_header_changes_reach_the_upstream() {
    let (_gw, _a, _b, url) = setup().await;
    let c = Client::new();
    let r = c
        .get(
            &format!("{url}/v1/tasks/7?x=1"),
            &[
                ("host", "api.example.com"),
                ("x-drop-me", "1"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret"),
            ],
        )
        .await
        .unwrap();
    let echo = r.json();
    assert_eq!(echo["path"], "/tasks/7");
    assert_eq!(echo["query"], "x=1");
    let h = &echo["headers"];
    assert_eq!(h["x-team"], "tasks");
    assert_eq!(h["x-added"], "1");
    assert!(h.get("x-drop-me").is_none());
    assert!(
        h.get("x-hop").is_none(),
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert_eq!(h["host"], "api.example.com");
    assert_eq!(r.header("x-route"), Some("api"));
    assert_eq!(r.header("x-upstream"), None, "response header removed");

    let r = c
        .get(
            &format!("{url}/users/42/profile"),
            &[("host", "api.example.com")],
        )
        .await
        .unwrap();
    let echo = r.json();
    assert_eq!(echo["path"], "/u/42/profile");
    assert_eq!(echo["headers"]["host"], "users.internal");
}

#[tokio::test]
async fn forged_forwarded_headers_from_untrusted_peers_are_replaced() {
    let (_gw, _a, _b, url) = setup().await;
    let r = Client::new()
        .get(
            &format!("{url}/x"),
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await
        .unwrap();
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn request_ids_are_generated_or_propagated() {
    let (_gw, _a, _b, url) = setup().await;
    let c = Client::new();
    let r = c
        .get(&format!("{url}/x"), &[("x-request-id", "abc-123")])
        .await
        .unwrap();
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(r.json()["headers"]["x-request-id"], "abc-123");
    let r = c.get(&format!("{url}/x"), &[]).await.unwrap();
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(r.json()["headers"]["x-request-id"], id.as_str());
}

#[tokio::test]
async fn proxy_errors_are_json_with_the_right_status() {
    let (gw, _a, _b, url) = setup().await;
    let c = Client::new();
    let r = c.get(&format!("{url}/down/x"), &[]).await.unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "upstream_connect");
    assert_eq!(r.json()["requestId"], r.header("x-request-id").unwrap());
    let metrics = c
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("gatehouse_upstream_connect_errors_total{backend=\"default/dead\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "gatehouse_proxy_errors_total{route=\"default/any\",kind=\"upstream_connect\"} 1"
        ),
        "{metrics}"
    );

    let r = c.get(&format!("{url}/timeout"), &[]).await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "timeout");

    let r = c.get(&format!("{url}/teapot"), &[]).await.unwrap();
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout\n");
}

#[tokio::test]
async fn no_route_is_404() {
    let a = Upstream::start("a").await;
    let yaml = format!(
        "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{enabled: false}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {{address: \"127.0.0.1:0\", protocol: HTTP}}\n---\nkind: Backend\nmetadata: {{name: a}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - match: {{path: {{prefix: /only}}}}\n      backends: [{{backend: a}}]\n",
        a.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let r = Client::new()
        .get(&format!("{}/elsewhere", gw.url("web").await), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_route");
    let r = Client::new()
        .get(&format!("{}/only/x", gw.url("web").await), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn redirects_and_direct_responses() {
    let (_gw, _a, _b, url) = setup().await;
    let c = Client::new();
    let r = c.get(&format!("{url}/moved?q=1"), &[]).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://new.example.com/landing?q=1")
    );
}

#[tokio::test]
async fn weighted_backends_split_traffic() {
    let (_gw, _a, _b, url) = setup().await;
    let c = Client::new();
    let mut a = 0;
    for _ in 0..400 {
        if c.get(&format!("{url}/split"), &[]).await.unwrap().json()["server"] == "a" {
            a += 1;
        }
    }
    // 3:1 split; 400 draws put `a` within 240..360 with overwhelming probability.
    assert!((240..360).contains(&a), "a got {a} of 400");
}

#[tokio::test]
async fn keep_alive_connections_to_upstreams_are_reused() {
    let (_gw, a, _b, url) = setup().await;
    let c = Client::new();
    for _ in 0..50 {
        assert_eq!(c.get(&format!("{url}/x"), &[]).await.unwrap().status, 200);
    }
    assert_eq!(a.requests(), 50);
    assert_eq!(
        a.connections(),
        1,
        "one upstream connection serves 50 sequential requests"
    );
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_downstream_and_http2_upstream_with_curl() {
    let (_gw, _a, _b, url) = setup().await;
    let u = url.clone();
    let (out, _) = tokio::task::spawn_blocking(move || {
        curl(&[
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            &format!("{u}/x"),
        ])
    })
    .await
    .unwrap();
    let (body, version) = out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let echo: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(echo["version"], "HTTP/1.1", "HTTP/1 backend gets HTTP/1.1");
    assert_eq!(echo["headers"]["host"], url.trim_start_matches("http://"));

    let u = url.clone();
    let (out, _) = tokio::task::spawn_blocking(move || curl(&[&format!("{u}/h2/y")]))
        .await
        .unwrap();
    let echo: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0", "HTTP2 backend gets h2c");
    assert_eq!(echo["path"], "/h2/y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_intact() {
    let (_gw, _a, _b, url) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..48 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&upload, &data).unwrap();
    let want = fnv64(&data);
    let u = url.clone();
    let up = upload.display().to_string();
    let (out, _) = tokio::task::spawn_blocking(move || {
        curl(&[
            "--data-binary",
            &format!("@{up}"),
            "-H",
            "content-type: application/octet-stream",
            &format!("{u}/upload"),
        ])
    })
    .await
    .unwrap();
    let echo: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["bodyBytes"], data.len());
    assert_eq!(echo["bodyHash"], want);

    // Without a length (chunked from an HTTP/1.1 client, a length-less stream from an HTTP/2 one)
    // the body goes upstream chunked, and arrives whole.
    let part = &data[..8 * 1024 * 1024];
    std::fs::write(&upload, part).unwrap();
    let want = fnv64(part);
    for http in ["--http1.1", "--http2-prior-knowledge"] {
        let (u, up) = (url.clone(), upload.display().to_string());
        let (out, _) = tokio::task::spawn_blocking(move || {
            let upload = format!("cat {up} | curl -sS --max-time 20 {http} -T - {u}/upload");
            let out = Command::new("sh").args(["-c", &upload]).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            (String::from_utf8_lossy(&out.stdout).into_owned(), ())
        })
        .await
        .unwrap();
        let echo: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(echo["bodyBytes"], part.len(), "{http}");
        assert_eq!(echo["bodyHash"], want, "{http}");
    }

    let n = 40 * 1024 * 1024;
    let down = dir.path().join("down.bin");
    let d = down.display().to_string();
    let u = url.clone();
    tokio::task::spawn_blocking(move || curl(&["-o", &d, &format!("{u}/stream/{n}")]))
        .await
        .unwrap();
    let got = std::fs::read(&down).unwrap();
    assert_eq!(got.len(), n);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, b)| *b == gatehouse_testkit::upstream::pattern(i)));
}

async fn raw_h1(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::combinators::BoxBody<Bytes, Infallible>>
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

#[tokio::test]
async fn response_bodies_are_streamed_not_buffered() {
    let (gw, a, _b, _url) = setup().await;
    let mut tx = raw_h1(gw.addr("web").await).await;
    let req = http::Request::get("/gate")
        .header("host", "x")
        .body(http_body_util::Empty::new().boxed())
        .unwrap();
    let resp = tokio::time::timeout(LIMIT, tx.send_request(req))
        .await
        .expect("headers arrive")
        .unwrap();
    let mut body = resp.into_body();
    // The upstream holds back the rest until released: the first chunk can only arrive now if the
    // gateway forwards frames as they come.
    let first = tokio::time::timeout(LIMIT, body.frame())
        .await
        .expect("first chunk before the body ends")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first\n");
    a.release();
    let rest = tokio::time::timeout(LIMIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rest.into_data().unwrap(), "rest\n");
}

#[tokio::test]
async fn request_bodies_are_streamed_not_buffered() {
    let (gw, a, _b, _url) = setup().await;
    let mut tx = raw_h1(gw.addr("web").await).await;
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(body_rx));
    let req = http::Request::post("/upload-gate")
        .header("host", "x")
        .body(body.boxed())
        .unwrap();
    let pending = tokio::spawn(async move { tx.send_request(req).await });
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"part one;"))))
        .await
        .unwrap();
    // The client has not finished its body: the upstream sees the first chunk only if the gateway
    // streams the request instead of collecting it.
    let n = tokio::time::timeout(LIMIT, a.first_chunk())
        .await
        .expect("upstream got the first chunk early");
    assert_eq!(n, 9);
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"part two"))))
        .await
        .unwrap();
    drop(body_tx);
    let resp = tokio::time::timeout(LIMIT, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(echo["bodyBytes"], 17);
}

#[tokio::test]
async fn malformed_requests_get_4xx_not_a_crash() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, _a, _b, url) = setup().await;
    let addr = gw.addr("web").await;
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n",
        b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
            .await
            .expect("connection answered and closed");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 4"), "{raw:?} -> {text}");
    }
    // and the gateway still serves
    assert_eq!(status(&format!("{url}/x")).await, 200);
}

#[tokio::test]
async fn dot_segments_cannot_escape_a_route() {
    let (_gw, _a, _b, url) = setup().await;
    let c = Client::new();
    // Unnormalized, this would match the /v1/tasks prefix (upstream a, rewritten to
    // /tasks/%2e%2e/../users/1/x). It is /users/1/x, and routes as such.
    let r = c
        .get(
            &format!("{url}/v1/tasks/%2e%2e/../users/1/x?q=1"),
            &[("host", "api.example.com")],
        )
        .await
        .unwrap();
    let echo = r.json();
    assert_eq!(echo["server"], "b", "routed by the normalized path");
    assert_eq!(echo["path"], "/u/1/x");
    assert_eq!(echo["query"], "q=1");
}

#[tokio::test]
async fn bodiless_responses_keep_the_upstream_connection_reusable() {
    let (_gw, a, b, url) = setup().await;
    let c = Client::new();
    for _ in 0..5 {
        let head = http::Request::head(format!("{url}/x"))
            .body(Default::default())
            .unwrap();
        let r = c.send(head).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(
            c.get(&format!("{url}/status/204"), &[])
                .await
                .unwrap()
                .status,
            204
        );
        assert_eq!(
            c.get(&format!("{url}/status/304"), &[])
                .await
                .unwrap()
                .status,
            304
        );
    }
    assert_eq!(a.requests(), 15);
    assert_eq!(
        a.connections(),
        1,
        "HEAD, 204 and 304 exchanges return their connection to the pool"
    );

    // HTTP/2 backends multiplex every request over one connection.
    for _ in 0..10 {
        assert_eq!(
            c.get(&format!("{url}/h2/z"), &[]).await.unwrap().json()["version"],
            "HTTP/2.0"
        );
    }
    assert_eq!(b.connections(), 1);
}
