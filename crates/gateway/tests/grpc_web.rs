//! gRPC-Web through the gateway: curl sends 5-byte-framed requests over HTTP/1.1, binary and
//! base64 text, to a Python `grpcio` server behind a `GRPC` backend; the answers come back in the
//! client's dialect with the gRPC trailers as the body's last frame (flag 0x80).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{PythonPeer, TestGateway};
use std::process::Command;

/// `test.Svc`: Echo (unary), Count (server stream: n messages), Refuse (INVALID_ARGUMENT before
/// any message: a trailers-only answer).
const SERVER: &str = r#"
import sys, grpc
from concurrent import futures
def count(req, ctx):
    for i in range(int(req)):
        yield b"%d" % i
def refuse(req, ctx):
    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "no thanks")
handler = grpc.method_handlers_generic_handler("test.Svc", {
    "Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req),
    "Count": grpc.unary_stream_rpc_method_handler(count),
    "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"#;

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
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        let (head, output) = (dir.path().join("head"), dir.path().join("out"));
        std::fs::write(&input, body).unwrap();
        let status = Command::new("curl")
            .args(["-s", "--http1.1", "-X", "POST", "-H"])
            .arg(format!("content-type: {content_type}"))
            .args(["-H", "x-grpc-web: 1", "--data-binary"])
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
    let peer = PythonPeer::start(SERVER);
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
}
