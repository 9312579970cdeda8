//! gRPC through the gateway with Python `grpcio` on both sides: all four call kinds (unary, server
//! streaming, client streaming, bidirectional), retries keyed on a trailers-only `grpc-status`,
//! and a bidirectional stream kept open across reloads. The server is testkit's shared one
//! (`PythonPeer::grpc`).

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{PythonPeer, TestGateway};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Makes each kind of call and prints the results as JSON.
const CLIENT: &str = r#"
import sys, json, grpc
ch = grpc.insecure_channel(sys.argv[1])
out = {}
big = bytes((i * 7) % 256 for i in range(1 << 20))
out["unary"] = ch.unary_unary("/test.Svc/Echo")(big, timeout=20) == big
out["server_stream"] = [m.decode() for m in ch.unary_stream("/test.Svc/Count")(b"500", timeout=20)]
out["client_stream"] = ch.stream_unary("/test.Svc/Join")(iter([b"a", b"b", b"c"]), timeout=20).decode()
out["bidi"] = [m.decode() for m in ch.stream_stream("/test.Svc/Chat")(iter([b"x%d" % i for i in range(300)]), timeout=20)]
for name in ["Flaky", "FlakyToo"]:
    try:
        out[name] = ["OK", ch.unary_unary("/test.Svc/" + name)(b"", timeout=20).decode()]
    except grpc.RpcError as e:
        out[name] = [e.code().name, e.details()]
print(json.dumps(out))
"#;

/// A bidirectional stream: each stdin line is sent as a message, each reply printed.
const CHAT: &str = r#"
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
def lines():
    for line in sys.stdin:
        yield line.strip().encode()
try:
    for reply in ch.stream_stream("/test.Svc/Chat")(lines()):
        print(reply.decode(), flush=True)
    print("END OK", flush=True)
except grpc.RpcError as e:
    print("END", e.code().name, flush=True)
"#;

const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}, streamDrainTimeout: 3s}
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
metadata: {name: other}
spec:
  rules: [{match: {path: {prefix: /other}}, backends: [{backend: svc}], timeout: {timeout}}]
"#;

const GRPC_ROUTE: &str = r#"
---
kind: Route
metadata: {name: grpc}
spec:
  rules:
    - match: {path: {exact: /test.Svc/Flaky}}
      backends: [{backend: svc}]
      retry: {attempts: 3, on: [unavailable], backoff: {base: 1ms, max: 5ms}}
    - match: {path: {prefix: /test.Svc}}
      backends: [{backend: svc}]
"#;

fn config(port: u16, timeout: &str) -> String {
    fill(CONFIG, &[("port", &port.to_string()), ("timeout", timeout)]) + GRPC_ROUTE
}

/// Unary (1 MiB each way), server streaming (500 messages), client streaming and bidirectional
/// (300 messages) calls all complete through the gateway; a trailers-only UNAVAILABLE is retried
/// on the rule that names `unavailable` (the third call succeeds) and passed to the client as it
/// is on the rule that does not; each call's final status is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_call_kinds_and_grpc_status_retries() {
    let peer = PythonPeer::grpc();
    let gw = TestGateway::start(&config(peer.port, "10s")).await;
    let addr = gw.addr("web").await.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CLIENT, &addr])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["unary"], true, "{v}");
    let counted: Vec<String> = (0..500).map(|i| i.to_string()).collect();
    assert_eq!(v["server_stream"], serde_json::json!(counted));
    assert_eq!(v["client_stream"], "a+b+c", "{v}");
    let chat: Vec<String> = (0..300).map(|i| format!("x{i}")).collect();
    assert_eq!(v["bidi"], serde_json::json!(chat));
    assert_eq!(v["Flaky"], serde_json::json!(["OK", "call 3"]), "{v}");
    assert_eq!(
        v["FlakyToo"],
        serde_json::json!(["UNAVAILABLE", "not yet"]),
        "{v}"
    );
    // Final statuses only: Flaky's two retried UNAVAILABLE answers are not counted; FlakyToo's is.
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
        metrics.contains(&format!("{} 5\n", series("0"))),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("{} 1\n", series("14"))),
        "{metrics}"
    );
}

/// 20 reloads that change another route leave an open bidirectional stream alone (a message
/// through it after each reload, none lost); a reload that removes its route lets it run for
/// `streamDrainTimeout`, then ends it with UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidi_stream_survives_reloads_and_a_removed_route_drains_after_its_grace() {
    let peer = PythonPeer::grpc();
    let gw = TestGateway::start(&config(peer.port, "10s")).await;
    let addr = gw.addr("web").await.to_string();
    let mut chat = Command::new("python3")
        .args(["-c", CHAT, &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = chat.stdin.take().unwrap();
    let mut stdout = BufReader::new(chat.stdout.take().unwrap());
    // Blocking pipe IO, on this multi-threaded runtime's worker (the gateway runs on others).
    let mut say = |msg: &str| {
        tokio::task::block_in_place(|| {
            writeln!(stdin, "{msg}").unwrap();
            stdin.flush().unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim().to_string()
        })
    };
    assert_eq!(say("hello"), "hello");
    for i in 0..20 {
        gw.write(&config(peer.port, &format!("{}s", 11 + i)));
        gw.gw.reload("test").await.expect("valid reload");
        let msg = format!("message {i:02}");
        assert_eq!(say(&msg), msg, "after reload {i}");
    }
    // The grace starts during the reload that removes the route.
    gw.write(&fill(
        CONFIG,
        &[("port", &peer.port.to_string()), ("timeout", "10s")],
    ));
    let removed = Instant::now();
    gw.gw.reload("test").await.expect("valid reload");
    assert_eq!(say("in grace"), "in grace");
    let mut end = String::new();
    tokio::task::block_in_place(|| stdout.read_line(&mut end).unwrap());
    let after = removed.elapsed();
    assert_eq!(end.trim(), "END UNAVAILABLE");
    assert!(after >= Duration::from_secs(3), "ended after {after:?}");
    // The message sent in the grace needs it to last: 3 s leaves room on a loaded machine.
    assert!(after < Duration::from_secs(15), "ended after {after:?}");
    drop(stdin);
    let _ = chat.wait();
}
