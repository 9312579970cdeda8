//! Test harness (outside the request flow): a Python peer process (a gRPC server written with
//! grpcio, say) that binds port 0, prints the port on its first line and runs until its stdin
//! closes; and the gRPC test server the gRPC tests share.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running Python peer; stopped (stdin closed, then killed and reaped) when dropped.
pub struct PythonPeer {
    child: Child,
    /// The port the script printed.
    pub port: u16,
}

impl PythonPeer {
    /// Runs `script` with `python3 -c` and waits for the port it prints first.
    pub fn start(script: &str) -> PythonPeer {
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test.sh installs grpcio)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the peer prints its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("no port from the Python peer (is grpcio installed?): {line:?}")
        });
        PythonPeer { child, port }
    }
}

/// The gRPC tests' server (`grpcio`), service `test.Svc`: `Echo` (unary), `Count` (server stream:
/// as many messages as its request's number), `Join` (client stream, joined with `+`), `Chat`
/// (bidirectional echo), `Flaky` / `FlakyToo` (UNAVAILABLE "not yet", trailers-only, until their
/// third call, then `call N`), `Refuse` (INVALID_ARGUMENT "no thanks" before any message:
/// trailers-only), `Partial` (one message, then RESOURCE_EXHAUSTED "enough" in trailers), `Slow`
/// (echoes after 3 s).
pub const GRPC_TEST_SERVER: &str = r#"
import sys, time, grpc, threading
from concurrent import futures
calls = {}
lock = threading.Lock()
def flaky(name):
    def handler(req, ctx):
        with lock:
            calls[name] = calls.get(name, 0) + 1
            n = calls[name]
        if n < 3:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return b"call %d" % n
    return handler
def count(req, ctx):
    for i in range(int(req)):
        yield b"%d" % i
def refuse(req, ctx):
    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "no thanks")
def partial(req, ctx):
    yield b"one"
    ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "enough")
def slow(req, ctx):
    time.sleep(3)
    return req
handler = grpc.method_handlers_generic_handler("test.Svc", {
    "Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req),
    "Count": grpc.unary_stream_rpc_method_handler(count),
    "Join": grpc.stream_unary_rpc_method_handler(lambda it, ctx: b"+".join(it)),
    "Chat": grpc.stream_stream_rpc_method_handler(lambda it, ctx: (m for m in it)),
    "Flaky": grpc.unary_unary_rpc_method_handler(flaky("Flaky")),
    "FlakyToo": grpc.unary_unary_rpc_method_handler(flaky("FlakyToo")),
    "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
    "Partial": grpc.unary_stream_rpc_method_handler(partial),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"#;

impl PythonPeer {
    /// The shared gRPC test server (`GRPC_TEST_SERVER`).
    pub fn grpc() -> PythonPeer {
        PythonPeer::start(GRPC_TEST_SERVER)
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
