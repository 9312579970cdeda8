//! The Kubernetes provider against a stand-in API server (`standin.py`, Python): no real API
//! server installs on the test machines. A unit test, not an integration test, because the API
//! server's location is found in-cluster in production and passed in here.

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The running stand-in; killed and reaped when dropped.
struct StandIn {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StandIn {
    fn start() -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("standin.py");
        std::fs::write(&script, include_str!("standin.py")).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is not installed: run scripts/test.sh, which installs it");
        // Readiness: it prints its port once listening.
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().expect("the stand-in's port");
        StandIn {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        }
    }

    async fn request(&self, head: &str, body: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let req = format!(
            "{head} HTTP/1.1\r\nHost: standin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn control(&self, kind: &str, object: serde_json::Value) {
        let body = serde_json::json!({"type": kind, "object": object}).to_string();
        let reply = self.request("POST /control", &body).await;
        assert!(
            reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
            "{reply}"
        );
    }

    /// Watches started so far.
    async fn watches(&self) -> u64 {
        let reply = self.request("GET /watches", "").await;
        let body = &reply[reply.find('{').expect("a JSON body")..];
        serde_json::from_str::<serde_json::Value>(body).expect("JSON")["watches"]
            .as_u64()
            .expect("a count")
    }

    async fn wait_for_watchers(&self, n: usize) {
        let want = format!("{{\"watchers\": {n}}}");
        wait("watchers", || async {
            self.request("GET /watchers", "").await.ends_with(&want)
        })
        .await;
    }
}

async fn wait<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        // Polling a condition another process makes true.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Result<Vec<String>, String>>>);

impl Sink for Recorder {
    fn update(&self, endpoints: Vec<Discovered>) {
        let set = endpoints.iter().map(|e| e.address.to_string()).collect();
        self.0.lock().unwrap().push(Ok(set));
    }
    fn failed(&self, error: String) {
        self.0.lock().unwrap().push(Err(error));
    }
}

impl Recorder {
    async fn wait_for(&self, want: Result<&[&str], &str>) {
        wait(&format!("{want:?}"), || async {
            let calls = self.0.lock().unwrap();
            match (calls.last(), want) {
                (Some(Ok(set)), Ok(w)) => set.iter().map(String::as_str).eq(w.iter().copied()),
                (Some(Err(e)), Err(w)) => e.contains(w),
                _ => false,
            }
        })
        .await;
    }
}

fn slice(name: &str, endpoints: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": "tasks"}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
        "endpoints": endpoints,
    })
}

fn endpoint(ip: &str, ready: bool) -> serde_json::Value {
    serde_json::json!({"addresses": [ip], "conditions": {"ready": ready}})
}

#[tokio::test]
async fn ready_endpoint_slices_are_listed_and_watched() {
    let standin = StandIn::start();
    standin
        .control(
            "ADDED",
            slice(
                "tasks-a",
                serde_json::json!([endpoint("10.0.0.1", true), endpoint("10.0.0.2", false)]),
            ),
        )
        .await;
    let sink = Arc::new(Recorder::default());
    let target = Target {
        service: "tasks".into(),
        port: KubernetesPort::Name("http".into()),
        namespace: "shop".into(),
    };
    let task = tokio::spawn(run(Some(Api::plain(standin.addr)), target, sink.clone()));
    // Listed: ready endpoints only, with the named port.
    sink.wait_for(Ok(&["10.0.0.1:8080"])).await;
    standin.wait_for_watchers(1).await;

    // Watched: a second slice, then a readiness change.
    standin
        .control(
            "ADDED",
            slice("tasks-b", serde_json::json!([{"addresses": ["10.0.0.3"]}])),
        )
        .await;
    sink.wait_for(Ok(&["10.0.0.1:8080", "10.0.0.3:8080"])).await;
    standin
        .control(
            "MODIFIED",
            slice(
                "tasks-a",
                serde_json::json!([endpoint("10.0.0.1", false), endpoint("10.0.0.2", true)]),
            ),
        )
        .await;
    sink.wait_for(Ok(&["10.0.0.2:8080", "10.0.0.3:8080"])).await;

    // 410 Gone: reported, listed and watched again.
    standin.control("GONE", serde_json::Value::Null).await;
    sink.wait_for(Err("too old resource version")).await;
    sink.wait_for(Ok(&["10.0.0.2:8080", "10.0.0.3:8080"])).await;
    standin.wait_for_watchers(1).await;
    standin
        .control("DELETED", slice("tasks-b", serde_json::json!([])))
        .await;
    sink.wait_for(Ok(&["10.0.0.2:8080"])).await;

    // The server ends the watch (its timeout): watched again without a failure.
    let failures = |s: &Recorder| s.0.lock().unwrap().iter().filter(|c| c.is_err()).count();
    let before = failures(&sink);
    // The provider may be watching again before a poll could see zero watchers: count the
    // watches started instead.
    let started = standin.watches().await;
    standin.control("CLOSE", serde_json::Value::Null).await;
    wait("a new watch", || async {
        standin.watches().await > started
    })
    .await;
    standin.wait_for_watchers(1).await;
    standin
        .control(
            "ADDED",
            slice("tasks-c", serde_json::json!([endpoint("10.0.0.4", true)])),
        )
        .await;
    sink.wait_for(Ok(&["10.0.0.2:8080", "10.0.0.4:8080"])).await;
    assert_eq!(failures(&sink), before, "{:?}", sink.0.lock().unwrap());
    task.abort();
}

#[tokio::test]
async fn an_unreachable_api_server_is_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sink = Arc::new(Recorder::default());
    let target = Target {
        service: "tasks".into(),
        port: KubernetesPort::Number(8080),
        namespace: "shop".into(),
    };
    let task = tokio::spawn(run(Some(Api::plain(port)), target, sink.clone()));
    sink.wait_for(Err("connect")).await;
    task.abort();
}
