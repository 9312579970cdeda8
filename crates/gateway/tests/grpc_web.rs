//! gRPC-Web through the gateway: curl sends 5-byte-framed requests over HTTP/1.1, binary and
//! base64 text, to a Python `grpcio` server behind a `GRPC` backend; the answers come back in the
//! client's dialect with the gRPC trailers as the body's last frame (flag 0x80); gateway errors as
//! gRPC-Web statuses; CORS for browsers. The server is testkit's shared one (`PythonPeer::grpc`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{PythonPeer, TestGateway};
use std::process::Command;

const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: svc}
spec: {protocol: GRPC, endpoints: ["127.0.0.1:{port}"]}
---
kind: Route
metadata: {name: grpc}
spec:
  rules: [{match: {path: {prefix: /test.Svc}}, backends: [{backend: svc}]}]
"#;

/// One gRPC message frame.
fn frame(flag: u8, msg: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f
}

/// The frames of a gRPC-Web body: (flag, payload).
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert!(body.len() >= 5 + len, "a frame cut short");
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    assert!(body.is_empty(), "bytes after the last frame");
    out
}

/// Posts `body` with `content_type` through curl over HTTP/1.1; the response headers (lower
/// case) and body.
async fn curl(url: String, content_type: &'static str, body: Vec<u8>) -> (String, Vec<u8>) {
    curl_with(url, content_type, &[], body).await
}

/// `curl` with more request header fields (`name: value`).
async fn curl_with(
    url: String,
    content_type: &'static str,
    extra: &[&str],
    body: Vec<u8>,
) -> (String, Vec<u8>) {
    let extra: Vec<String> = extra.iter().map(|h| h.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        let (head, output) = (dir.path().join("head"), dir.path().join("out"));
        std::fs::write(&input, body).unwrap();
        let status = Command::new("curl")
            .args(["-s", "--http1.1", "-X", "POST", "-H"])
            .arg(format!("content-type: {content_type}"))
            .args(["-H", "x-grpc-web: 1"])
            .args(extra.iter().flat_map(|h| ["-H", h.as_str()]))
            .arg("--data-binary")
            .arg(format!("@{}", input.display()))
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&output)
            .arg(&url)
            .status()
            .expect("curl runs");
        assert!(status.success(), "curl failed");
        let head = std::fs::read_to_string(&head).unwrap().to_lowercase();
        (head, std::fs::read(&output).unwrap())
    })
    .await
    .unwrap()
}

/// Binary and text calls, unary and server streaming, and a trailers-only failure, each in the
/// client's dialect, the trailers as the last frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_binary_and_text_calls_reach_a_native_grpc_server() {
    let peer = PythonPeer::grpc();
    let gw = TestGateway::start(&fill(CONFIG, &[("port", &peer.port.to_string())])).await;
    let base = gw.url("web").await;

    // Binary, unary, 100 KiB.
    let msg: Vec<u8> = (0..100 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let (head, body) = curl(
        format!("{base}/test.Svc/Echo"),
        "application/grpc-web+proto",
        frame(0, &msg),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/grpc-web+proto"),
        "{head}"
    );
    let f = frames(&body);
    assert_eq!(f.len(), 2, "one message, then the trailers");
    assert!(f[0] == (0, msg), "the message comes back whole");
    let trailers = String::from_utf8(f[1].1.clone()).unwrap();
    assert_eq!(f[1].0, 0x80);
    assert!(trailers.contains("grpc-status:0\r\n"), "{trailers:?}");

    // Text, server streaming: base64 both ways.
    let (head, body) = curl(
        format!("{base}/test.Svc/Count"),
        "application/grpc-web-text",
        STANDARD.encode(frame(0, b"3")).into_bytes(),
    )
    .await;
    assert!(
        head.contains("content-type: application/grpc-web-text"),
        "{head}"
    );
    let decoded = STANDARD
        .decode(&body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&body)));
    let f = frames(&decoded);
    let messages: Vec<&[u8]> = f.iter().take(3).map(|(_, m)| &m[..]).collect();
    assert_eq!(messages, [&b"0"[..], b"1", b"2"]);
    assert_eq!(f.len(), 4);
    assert_eq!(f[3].0, 0x80);
    assert!(String::from_utf8_lossy(&f[3].1).contains("grpc-status:0"));

    // A failure before any message: the status in the headers (trailers-only), no frame.
    let (head, body) = curl(
        format!("{base}/test.Svc/Refuse"),
        "application/grpc-web+proto",
        frame(0, b"x"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("grpc-status: 3"), "{head}");
    assert!(head.contains("grpc-message: no thanks"), "{head}");
    assert!(body.is_empty(), "{body:?}");

    // Each call counted under its final status: two from the trailer frames, one from headers.
    let url = format!("http://{}/metrics", gw.admin);
    let metrics = gatehouse_testkit::Client::new()
        .get(&url, &[])
        .await
        .unwrap()
        .text();
    let series = |status: &str| {
        format!("gatehouse_grpc_responses_total{{route=\"default/grpc\",backend=\"default/svc\",grpc_status=\"{status}\"}}")
    };
    assert!(
        metrics.contains(&format!("{} 2\n", series("0"))),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("{} 1\n", series("3"))),
        "{metrics}"
    );
}

/// Gateway errors and a browser's CORS policy on gRPC-Web routes: a `cors` policy on every rule,
/// an API key on `/locked.Svc`, a backend nobody listens on, and one that never answers.
const ERRORS_CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: svc}
spec: {protocol: GRPC, endpoints: ["127.0.0.1:{port}"]}
---
kind: Backend
metadata: {name: down}
spec: {protocol: GRPC, endpoints: ["{dead}"], timeouts: {connect: 1s}}
---
kind: Backend
metadata: {name: silent}
spec: {protocol: GRPC, endpoints: ["{silent}"]}
---
kind: Policy
metadata: {name: browser}
spec:
  cors:
    allowOrigins: ["https://app.example.com"]
    allowMethods: [POST]
    allowHeaders: [content-type, x-grpc-web, x-user-agent, grpc-timeout, x-api-key]
    exposeHeaders: [grpc-status, grpc-message]
---
kind: Policy
metadata: {name: keys}
spec:
  apiKey:
    from: [{header: x-api-key}]
    keys: [{consumer: acme, sha256: "afacab3575137afa4e00d9cbcafcb14c9ae25f779d964eb0ea5b2c4eb5dfd163"}]
---
kind: Route
metadata: {name: grpc}
spec:
  rules:
    - match: {path: {exact: /test.Svc/Silent}}
      timeout: 300ms
      backends: [{backend: silent}]
      policies: [browser]
    - match: {path: {prefix: /locked.Svc}}
      backends: [{backend: svc}]
      policies: [browser, keys]
    - match: {path: {prefix: /down.Svc}}
      backends: [{backend: down}]
      policies: [browser]
    - match: {path: {prefix: /test.Svc}}
      backends: [{backend: svc}]
      policies: [browser]
"#;

/// The gateway behind `ERRORS_CONFIG`, with its peers (kept alive with it).
struct ErrorsSetup {
    gw: TestGateway,
    _peer: PythonPeer,
    _silent: std::net::TcpListener,
}

async fn errors_setup() -> ErrorsSetup {
    let peer = PythonPeer::grpc();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Bound and never accepted: connections complete in the kernel, nothing is ever answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = fill(
        ERRORS_CONFIG,
        &[
            ("port", &peer.port.to_string()),
            ("dead", &dead.to_string()),
            ("silent", &silent.local_addr().unwrap().to_string()),
        ],
    );
    ErrorsSetup {
        gw: TestGateway::start(&yaml).await,
        _peer: peer,
        _silent: silent,
    }
}

/// The field `name` of a lower-cased response head.
fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Errors the gateway makes itself (no route, a backend down, the route timeout, an API key
/// missing) reach a gRPC-Web client over HTTP/1.1 in its dialect, binary and text alike: HTTP
/// 200, the gRPC status and message in the headers (trailers-only), its content type, no body,
/// and never the JSON error an HTTP client gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_reach_grpc_web_clients_as_grpc_web_statuses() {
    let setup = errors_setup().await;
    let base = setup.gw.url("web").await;
    let cases = [
        (
            "/nowhere.Svc/Call",
            "12",
            "no route for POST /nowhere.Svc/Call",
        ),
        (
            "/down.Svc/Call",
            "14",
            "cannot connect to backend default/down",
        ),
        (
            "/test.Svc/Silent",
            "4",
            "backend default/silent did not answer within 300ms",
        ),
        ("/locked.Svc/Call", "16", ""),
    ];
    for (content_type, body) in [
        ("application/grpc-web+proto", frame(0, b"x")),
        (
            "application/grpc-web-text",
            STANDARD.encode(frame(0, b"x")).into_bytes(),
        ),
    ] {
        let answer_type = content_type.trim_end_matches("+proto");
        for (path, status, message) in cases {
            let (head, got) = curl(format!("{base}{path}"), content_type, body.clone()).await;
            let what = format!("{content_type} {path}: {head}");
            assert!(head.starts_with("http/1.1 200"), "{what}");
            assert_eq!(field(&head, "grpc-status"), Some(status), "{what}");
            assert_eq!(field(&head, "content-type"), Some(answer_type), "{what}");
            if !message.is_empty() {
                let message = message.to_lowercase();
                assert_eq!(field(&head, "grpc-message"), Some(&*message), "{what}");
            }
            assert!(got.is_empty(), "{what}: body {got:?}");
        }
    }
    // The same refusal to a plain HTTP client is still the JSON error.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("{base}/locked.Svc/Call"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

/// A browser calling a gRPC-Web route under a `cors` policy: its preflight is answered at the
/// edge with the methods and headers gRPC-Web sends, and both a call and a gateway error carry
/// `Access-Control-Allow-Origin` and expose `grpc-status`/`grpc-message`, which a browser would
/// otherwise hide from the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_from_a_browser_origin_pass_cors() {
    let setup = errors_setup().await;
    let base = setup.gw.url("web").await;
    const ORIGIN: &str = "origin: https://app.example.com";

    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "OPTIONS"])
        .args(["-H", ORIGIN, "-H", "access-control-request-method: POST"])
        .args([
            "-H",
            "access-control-request-headers: content-type,x-grpc-web,x-user-agent",
        ])
        .arg(format!("{base}/test.Svc/Echo"))
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert_eq!(
        field(&head, "access-control-allow-origin"),
        Some("https://app.example.com"),
        "{head}"
    );
    assert_eq!(
        field(&head, "access-control-allow-methods"),
        Some("post"),
        "{head}"
    );
    let allowed = field(&head, "access-control-allow-headers").unwrap_or_default();
    for h in ["content-type", "x-grpc-web", "x-user-agent"] {
        assert!(allowed.contains(h), "{h} not allowed: {head}");
    }

    // A call: the answer framed for gRPC-Web, with the CORS fields.
    let (head, body) = curl_with(
        format!("{base}/test.Svc/Echo"),
        "application/grpc-web+proto",
        &[ORIGIN],
        frame(0, b"hi"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(
        field(&head, "access-control-allow-origin"),
        Some("https://app.example.com"),
        "{head}"
    );
    assert_eq!(
        field(&head, "access-control-expose-headers"),
        Some("grpc-status, grpc-message"),
        "{head}"
    );
    let f = frames(&body);
    assert_eq!(f[0], (0, b"hi".to_vec()));
    assert!(String::from_utf8_lossy(&f[1].1).contains("grpc-status:0"));

    // A gateway error on the route: trailers-only, readable by the page.
    let (head, body) = curl_with(
        format!("{base}/down.Svc/Call"),
        "application/grpc-web-text",
        &[ORIGIN],
        STANDARD.encode(frame(0, b"x")).into_bytes(),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(field(&head, "grpc-status"), Some("14"), "{head}");
    assert_eq!(
        field(&head, "access-control-allow-origin"),
        Some("https://app.example.com"),
        "{head}"
    );
    assert_eq!(
        field(&head, "access-control-expose-headers"),
        Some("grpc-status, grpc-message"),
        "{head}"
    );
    assert!(body.is_empty(), "{body:?}");
}
