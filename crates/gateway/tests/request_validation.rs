//! Request validation on the request path (`openapi: {file, validateRequests: true}`), over real
//! sockets: path and query parameters and JSON bodies (declared-length and chunked) are checked
//! against the document before the upstream sees anything, refusals are one `invalid_request` 400
//! naming the field, a body past the limit is 413, valid bodies reach the upstream byte for byte,
//! rules without validation are untouched, and a reload picks up an edited document.

use bytes::Bytes;
use gatehouse_testkit::client::{fnv64, Client, Reply};
use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::{TestGateway, Upstream};
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TASKS: &str = r##"
openapi: 3.1.0
info: {title: Tasks, version: "1"}
paths:
  /tasks:
    get:
      parameters:
        - {name: limit, in: query, required: true, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: state, in: query, schema: {type: string, enum: [open, done]}}
      responses: {"200": {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [title]
              properties:
                title: {type: string, minLength: 1, maxLength: 40}
                owner: {type: object, required: [id], properties: {id: {type: integer}}}
      responses: {"201": {description: created}}
  /tasks/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses: {"200": {description: ok}}
"##;

/// `/v1` validates against tasks.yaml (small bodies: 200 bytes), `/v2` is described by the
/// Route-level document that asks for validation, `/open` has a document without validation.
const ROUTES: &str = r#"
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Policy
metadata: {name: small}
spec: {requestLimits: {maxBodySize: 200}}
---
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - match: {path: {prefix: /v1}}
      rewrite: {pathPrefix: /}
      backends: [{backend: up}]
      policies: [small]
      openapi: {file: tasks.yaml, validateRequests: true}
    - match: {path: {prefix: /open}}
      rewrite: {pathPrefix: /}
      backends: [{backend: up}]
      openapi: {file: tasks.yaml}
---
kind: Route
metadata: {name: tasks-v2}
spec:
  openapi: {file: v2.yaml, validateRequests: true}
  rules:
    - match: {path: {prefix: /v2}}
      backends: [{backend: up}]
"#;

const V2: &str = r##"
openapi: 3.0.3
info: {title: Tasks v2, version: "2"}
paths:
  /v2/tasks/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
        - {name: verbose, in: query, schema: {type: boolean}}
      responses: {"200": {description: ok}}
"##;

async fn start(up: &Upstream) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tasks.yaml"), TASKS).unwrap();
    std::fs::write(dir.path().join("v2.yaml"), V2).unwrap();
    let yaml = format!(
        "{GATEWAY_AND_WEB}{}",
        ROUTES.replace("UPSTREAM", &up.addr.to_string())
    );
    TestGateway::start_in(dir, &yaml).await
}

async fn post(c: &Client, url: &str, body: &str) -> Reply {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    c.send(req).await.unwrap()
}

/// The refusal: 400, `invalid_request`, the message as given.
fn assert_invalid(r: &Reply, message: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn parameters_are_checked_before_the_upstream_sees_the_request() {
    let up = Upstream::start("a").await;
    let gw = start(&up).await;
    let url = gw.url("web").await;
    let c = Client::new();
    let ok = c
        .get(&format!("{url}/v1/tasks?limit=5&state=open"), &[])
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["path"], "/tasks");
    let seen = up.requests();
    let cases = [
        (
            "/v1/tasks?state=open",
            "query parameter `limit` is required",
        ),
        (
            "/v1/tasks?limit=500",
            "query parameter `limit`: above the maximum 100",
        ),
        (
            "/v1/tasks?limit=5&state=lost",
            "query parameter `state`: \"lost\" is not one of \"open\", \"done\"",
        ),
        (
            "/v1/tasks/seven",
            "path parameter `id`: expected integer, found a string",
        ),
        (
            "/v1/nothing",
            "`/v1/nothing` is not a path of the API description",
        ),
    ];
    for (path, message) in cases {
        let r = c.get(&format!("{url}{path}"), &[]).await.unwrap();
        assert_invalid(&r, message);
    }
    let r = c
        .send(
            Request::delete(format!("{url}/v1/tasks/7"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_invalid(
        &r,
        "method DELETE is not an operation of `/v1/tasks/7` in the API description",
    );
    assert_eq!(
        up.requests(),
        seen,
        "no refused request reached the upstream"
    );
    // HEAD is served by the GET operation.
    let head = c
        .send(
            Request::head(format!("{url}/v1/tasks/7"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(head.status, 200);
}

#[tokio::test]
async fn json_bodies_are_checked_and_valid_ones_reach_the_upstream_intact() {
    let up = Upstream::start("a").await;
    let gw = start(&up).await;
    let url = gw.url("web").await;
    let c = Client::new();
    let body = r#"{"title": "write the report", "owner": {"id": 3}}"#;
    let r = post(&c, &format!("{url}/v1/tasks"), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["bodyBytes"], body.len());
    assert_eq!(echo["bodyHash"], fnv64(body.as_bytes()));
    let seen = up.requests();
    assert_invalid(
        &post(&c, &format!("{url}/v1/tasks"), r#"{"owner": {"id": 3}}"#).await,
        "request body.title: required field missing",
    );
    assert_invalid(
        &post(
            &c,
            &format!("{url}/v1/tasks"),
            r#"{"title": "a", "owner": {"id": "x"}}"#,
        )
        .await,
        "request body.owner.id: expected integer, found a string",
    );
    assert_invalid(
        &post(
            &c,
            &format!("{url}/v1/tasks"),
            r#"{"title": "a", "colour": "red"}"#,
        )
        .await,
        "request body.colour: unknown field",
    );
    let broken = post(&c, &format!("{url}/v1/tasks"), r#"{"title": "#).await;
    assert_eq!(broken.status, 400);
    let message = broken.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("the request body is not valid JSON"),
        "{message}"
    );
    assert_invalid(
        &post(&c, &format!("{url}/v1/tasks"), "").await,
        "a request body is required",
    );
    let text = Request::post(format!("{url}/v1/tasks"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_invalid(
        &c.send(text).await.unwrap(),
        "content type `text/plain` is not accepted; expected application/json",
    );
    assert_eq!(up.requests(), seen, "no refused body reached the upstream");
}

/// Writes one HTTP/1.1 request and reads the answer to the end (`connection: close`).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

fn chunked_post(path: &str, chunks: &[&str]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    for c in chunks {
        out.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    out.push_str("0\r\n\r\n");
    out.into_bytes()
}

#[tokio::test]
async fn chunked_bodies_are_read_whole_and_a_body_past_the_limit_is_413() {
    let up = Upstream::start("a").await;
    let gw = start(&up).await;
    let addr = gw.addr("web").await;
    let answer = raw(
        addr,
        &chunked_post("/v1/tasks", &[r#"{"title""#, r#": "split"}"#]),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&fnv64(br#"{"title": "split"}"#)),
        "{answer}"
    );
    let answer = raw(addr, &chunked_post("/v1/tasks", &[r#"{"title""#, ": 7}"])).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("request body.title: expected string, found a number"),
        "{answer}"
    );
    // The rule's requestLimits (200 bytes) bounds what validation reads, declared or not.
    let big = format!(r#"{{"title": "{}"}}"#, "x".repeat(300));
    let answer = raw(
        addr,
        &chunked_post("/v1/tasks", &[&big[..150], &big[150..]]),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    let c = Client::new();
    let r = post(&c, &format!("{}/v1/tasks", gw.url("web").await), &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
}

#[tokio::test]
async fn rules_without_validation_pass_everything_and_route_documents_apply_to_their_rules() {
    let up = Upstream::start("a").await;
    let gw = start(&up).await;
    let url = gw.url("web").await;
    let c = Client::new();
    // `/open` names the document without asking for validation: nothing is checked.
    let r = post(&c, &format!("{url}/open/tasks"), r#"{"colour": 1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .get(&format!("{url}/open/tasks?limit=zero"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // The Route-level document (OpenAPI 3.0) validates its rule.
    let r = c
        .get(&format!("{url}/v2/tasks/4?verbose=true"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .get(&format!("{url}/v2/tasks/4?verbose=maybe"), &[])
        .await
        .unwrap();
    assert_invalid(
        &r,
        "query parameter `verbose`: expected boolean, found a string",
    );
}

#[tokio::test]
async fn a_reload_validates_against_the_edited_document() {
    let up = Upstream::start("a").await;
    let gw = start(&up).await;
    let url = gw.url("web").await;
    let c = Client::new();
    let r = c
        .get(&format!("{url}/v1/tasks?limit=100"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Same manifests, same rule: only the document changes (maximum 100 -> 10).
    let edited = TASKS.replace("maximum: 100", "maximum: 10");
    std::fs::write(gw.dir.path().join("tasks.yaml"), edited).unwrap();
    gw.gw.reload("test").await.expect("valid reload");
    let r = c
        .get(&format!("{url}/v1/tasks?limit=100"), &[])
        .await
        .unwrap();
    assert_invalid(&r, "query parameter `limit`: above the maximum 10");
}

#[tokio::test]
async fn a_validated_body_is_mirrored_and_reaches_both_backends() {
    let (up, shadow) = (Upstream::start("a").await, Upstream::start("shadow").await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tasks.yaml"), TASKS).unwrap();
    let routes = r#"
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Backend
metadata: {name: shadow}
spec: {endpoints: ["SHADOW"]}
---
kind: Route
metadata: {name: mirrored}
spec:
  rules:
    - match: {path: {prefix: /m}}
      rewrite: {pathPrefix: /}
      backends: [{backend: up}]
      mirror: {backend: shadow, percent: 100%}
      openapi: {file: tasks.yaml, validateRequests: true}
"#
    .replace("UPSTREAM", &up.addr.to_string())
    .replace("SHADOW", &shadow.addr.to_string());
    let gw = TestGateway::start_in(dir, &format!("{GATEWAY_AND_WEB}{routes}")).await;
    let c = Client::new();
    let body = r#"{"title": "mirrored"}"#;
    let r = post(&c, &format!("{}/m/tasks", gw.url("web").await), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["bodyHash"], fnv64(body.as_bytes()));
    // The shadow's copy is sent only once the tee has the whole (kept) body.
    gatehouse_testkit::wait_for("the shadow's copy", || async { shadow.requests() == 1 }).await;
}

/// `curl --http2-prior-knowledge -T -`: an HTTP/2 body with no `content-length`, told by the
/// stream alone. Returns (status, body).
async fn curl_h2_upload(url: &str, body: &'static str) -> (String, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("curl")
            .args(["-s", "--http2-prior-knowledge", "-X", "POST", "-T", "-"])
            .args([
                "-H",
                "content-type: application/json",
                "-w",
                "\n%{http_code}",
            ])
            .arg(&url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("curl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
        (status.to_string(), body.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn http2_bodies_without_a_length_are_validated_from_the_stream() {
    let up = Upstream::start("a").await;
    let gw = start(&up).await;
    let url = format!("{}/v1/tasks", gw.url("web").await);
    let (status, body) = curl_h2_upload(&url, r#"{"title": "h2"}"#).await;
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(&fnv64(br#"{"title": "h2"}"#)), "{body}");
    let (status, body) = curl_h2_upload(&url, r#"{"title": 2}"#).await;
    assert_eq!(status, "400", "{body}");
    assert!(
        body.contains("request body.title: expected string, found a number"),
        "{body}"
    );
}
