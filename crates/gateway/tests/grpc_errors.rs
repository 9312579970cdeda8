//! Gateway-made errors seen by real gRPC clients: Python `grpcio` as client and server, and curl
//! speaking h2c with a framed body. Each error must arrive as a trailers-only gRPC response with
//! the right `grpc-status`, and a client's `grpc-timeout` must bound the wait for the upstream; each
//! call's final status is counted. The server is testkit's shared one (`PythonPeer::grpc`).

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{PythonPeer, TestGateway};
use std::process::Command;
use std::time::{Duration, Instant};

/// Calls each path (no client deadline) and prints `{name: [code, details]}` as JSON.
const CLIENT: &str = r#"
import sys, json, grpc
channel = grpc.insecure_channel(sys.argv[1])
out = {}
for name, path in [("ok", "/test.Svc/Echo"), ("no_route", "/other.Svc/Call"),
                   ("down", "/down.Svc/Call"), ("route_timeout", "/test.Svc/Slow")]:
    try:
        reply = channel.unary_unary(path)(b"hello", timeout=20)
        out[name] = ["OK", reply.decode()]
    except grpc.RpcError as e:
        out[name] = [e.code().name, e.details()]
print(json.dumps(out), flush=True)
"#;

/// Makes each call of `sys.argv[2]` (`path:count` items) and prints each status code's name.
const CALLS: &str = r#"
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
for item in sys.argv[2:]:
    path, n = item.rsplit(":", 1)
    for _ in range(int(n)):
        try:
            for _ in channel.unary_stream(path)(b"hello", timeout=20):
                pass
            print(path, "OK", flush=True)
        except grpc.RpcError as e:
            print(path, e.code().name, flush=True)
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
metadata: {name: echo}
spec: {protocol: GRPC, endpoints: ["127.0.0.1:{port}"]}
---
kind: Backend
metadata: {name: down}
spec:
  protocol: GRPC
  endpoints: ["{dead}"]
  timeouts: {connect: 1s}
---
kind: Backend
metadata: {name: silent}
spec: {protocol: GRPC, endpoints: ["{silent}"]}
---
kind: Route
metadata: {name: grpc}
spec:
  rules:
    - match: {path: {exact: /test.Svc/Silent}}
      backends: [{backend: silent}]
    - match: {path: {exact: /test.Svc/Slow}}
      timeout: 300ms
      backends: [{backend: echo}]
    - match: {path: {prefix: /test.Svc}}
      backends: [{backend: echo}]
    - match: {path: {prefix: /down.Svc}}
      backends: [{backend: down}]
"#;

/// A gateway on `CONFIG`: the `echo` backend is `peer`, `down` is `dead` (an address nothing
/// accepts on), `silent` a port that never answers.
async fn gateway(peer: &PythonPeer, dead: &str) -> TestGateway {
    let yaml = fill(
        CONFIG,
        &[
            ("port", &peer.port.to_string()),
            ("dead", dead),
            ("silent", "127.0.0.1:9"),
        ],
    );
    TestGateway::start(&yaml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_reach_grpc_clients_as_grpc_statuses() {
    let peer = PythonPeer::grpc();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(&peer, &dead.to_string()).await;
    let addr = gw.addr("web").await;

    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CLIENT, &addr.to_string()])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["ok"], serde_json::json!(["OK", "hello"]), "{v}");
    assert_eq!(v["no_route"][0], "UNIMPLEMENTED", "{v}");
    assert_eq!(v["no_route"][1], "no route for POST /other.Svc/Call", "{v}");
    assert_eq!(v["down"][0], "UNAVAILABLE", "{v}");
    assert_eq!(
        v["down"][1], "cannot connect to backend default/down",
        "{v}"
    );
    // The client set no deadline: the route's 300ms is what the gateway answered on.
    assert_eq!(v["route_timeout"][0], "DEADLINE_EXCEEDED", "{v}");
    assert_eq!(
        v["route_timeout"][1], "backend default/echo did not answer within 300ms",
        "{v}"
    );
}

/// The services of the shared test server as grpcurl needs them: `Echo` sends its request back
/// as it came, so any message type works; `Refuse` fails with INVALID_ARGUMENT.
const PROTO: &str = r#"
syntax = "proto3";
package test;
message Msg { string text = 1; }
service Svc { rpc Echo(Msg) returns (Msg); rpc Refuse(Msg) returns (Msg); }
"#;

/// grpcurl, an independent client (Go's grpc, installed by the test script through pip): a call
/// through the gateway, the server's own error status passed through, and the gateway's no-route
/// status for a service it has no route for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_calls_through_the_gateway() {
    let peer = PythonPeer::grpc();
    let gw = gateway(&peer, "127.0.0.1:9").await;
    let addr = gw.addr("web").await.to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("test.proto"), PROTO).unwrap();
    // `other.proto`: the same service under a package the gateway routes nowhere.
    let other = PROTO.replace("package test;", "package other;");
    std::fs::write(dir.path().join("other.proto"), other).unwrap();
    let call = |proto: &str, method: &str| {
        let (dir, addr) = (dir.path().to_path_buf(), addr.clone());
        let (proto, method) = (proto.to_string(), method.to_string());
        tokio::task::spawn_blocking(move || {
            Command::new("grpcurl")
                .args(["-plaintext", "-max-time", "20", "-import-path"])
                .arg(&dir)
                .args([
                    "-proto",
                    &proto,
                    "-d",
                    r#"{"text": "hello grpcurl"}"#,
                    &addr,
                    &method,
                ])
                .output()
                .expect("grpcurl is installed (scripts/test.sh)")
        })
    };
    let ok = call("test.proto", "test.Svc/Echo").await.unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let reply: serde_json::Value = serde_json::from_str(&text).expect("a JSON message");
    assert_eq!(reply["text"], "hello grpcurl");
    let refused = call("test.proto", "test.Svc/Refuse").await.unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("Code: InvalidArgument") && err.contains("no thanks"),
        "{err}"
    );
    let unrouted = call("other.proto", "other.Svc/Echo").await.unwrap();
    let err = String::from_utf8_lossy(&unrouted.stderr);
    assert!(err.contains("Code: Unimplemented"), "{err}");
    assert!(err.contains("no route for POST /other.Svc/Echo"), "{err}");
}

/// curl sends `grpc-timeout: 250m` to a rule whose own timeout is the default 15 s, routed to an
/// upstream that accepts the connection and never answers: the gateway ends the call at the
/// client's deadline, trailers-only, status 4, with its own message. (A grpcio server is not used
/// here: it enforces the forwarded `grpc-timeout` itself and races the gateway's timer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_honoured_below_the_route_timeout() {
    // Bound and never accepted: the kernel completes the handshake, nothing is ever read or written.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let yaml = fill(
        CONFIG,
        &[
            ("port", "9"),
            ("dead", "127.0.0.1:9"),
            ("silent", &silent.local_addr().unwrap().to_string()),
        ],
    );
    let gw = TestGateway::start(&yaml).await;
    let url = format!("http://{}/test.Svc/Silent", gw.addr("web").await);
    let dir = tempfile::tempdir().unwrap();
    // One gRPC message: not compressed, length 5, "hello".
    let frame = dir.path().join("frame");
    std::fs::write(&frame, b"\0\0\0\0\x05hello").unwrap();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--http2-prior-knowledge",
                "-D",
                "-",
            ])
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .args(["-H", "grpc-timeout: 250m", "--data-binary"])
            .arg(format!("@{}", frame.display()))
            .arg(url)
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("grpc-status: 4\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/grpc\r\n"),
        "{head}"
    );
    assert!(head.contains("did not answer within 250ms"), "{head}");
    // Far below the route's 15 s (and curl's own 10 s), with room for a loaded machine.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

/// Every way a call ends is counted under its final `grpc-status` and the route/backend pair:
/// upstream trailers after messages (OK, and RESOURCE_EXHAUSTED after one message), an
/// upstream's trailers-only answer (INVALID_ARGUMENT), and the gateway's own errors (UNAVAILABLE
/// for a backend down, DEADLINE_EXCEEDED for the route timeout, UNIMPLEMENTED with no route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_grpc_statuses_are_counted_by_route_and_backend() {
    let peer = PythonPeer::grpc();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = gateway(&peer, &dead.to_string()).await;
    let addr = gw.addr("web").await;
    let calls = [
        "/test.Svc/Echo:3",
        "/test.Svc/Partial:2",
        "/test.Svc/Refuse:1",
        "/test.Svc/Slow:1",
        "/down.Svc/Call:2",
        "/other.Svc/Call:1",
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CALLS, &addr.to_string()])
            .args(calls)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<&str> = text.lines().collect();
    assert_eq!(
        results,
        [
            "/test.Svc/Echo OK",
            "/test.Svc/Echo OK",
            "/test.Svc/Echo OK",
            "/test.Svc/Partial RESOURCE_EXHAUSTED",
            "/test.Svc/Partial RESOURCE_EXHAUSTED",
            "/test.Svc/Refuse INVALID_ARGUMENT",
            "/test.Svc/Slow DEADLINE_EXCEEDED",
            "/down.Svc/Call UNAVAILABLE",
            "/down.Svc/Call UNAVAILABLE",
            "/other.Svc/Call UNIMPLEMENTED",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let url = format!("http://{}/metrics", gw.admin);
    let metrics = gatehouse_testkit::Client::new()
        .get(&url, &[])
        .await
        .unwrap()
        .text();
    let series = |backend: &str, status: &str| {
        let route = if backend.is_empty() {
            "none"
        } else {
            "default/grpc"
        };
        format!(
            "gatehouse_grpc_responses_total{{route=\"{route}\",backend=\"{backend}\",grpc_status=\"{status}\"}}"
        )
    };
    let mut lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gatehouse_grpc_responses_total{"))
        .collect();
    lines.sort_unstable();
    let mut want = vec![
        format!("{} 3", series("default/echo", "0")),
        format!("{} 2", series("default/echo", "8")),
        format!("{} 1", series("default/echo", "3")),
        format!("{} 1", series("default/echo", "4")),
        format!("{} 2", series("default/down", "14")),
        format!("{} 1", series("", "12")),
    ];
    want.sort_unstable();
    assert_eq!(lines, want, "{metrics}");
}
