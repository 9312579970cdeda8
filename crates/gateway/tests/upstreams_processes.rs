//! Real upstream processes (`python3 -m http.server`, threaded) behind a running gateway under
//! continuous load: one is killed and is taken out by outlier detection after a handful of failed
//! requests; restarted on the same port, its health check finds it healthy and it gets traffic
//! again within a few intervals. Every process is killed and reaped at the end.

mod common;

use common::{backend, with_gateway};
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{wait_for, Client, TestGateway};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `http.server` with a deeper accept queue (the default 5 refuses connections under load) and a
/// thread per connection, serving the directory it is given on the port it is given.
const SERVER: &str = r#"
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
handler = functools.partial(Handler, directory=sys.argv[2])
Server(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"#;

/// A python upstream serving `/name` (its name) and `/healthz`; killed and reaped when dropped.
struct PyServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

impl PyServer {
    fn start(name: &str) -> PyServer {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("name"), name).unwrap();
        std::fs::write(dir.path().join("healthz"), "ok").unwrap();
        let mut s = PyServer {
            port: free_port(),
            child: None,
            dir,
        };
        // The port was free a moment ago; if another process took it since, try another.
        for _ in 0..5 {
            if s.spawn() {
                return s;
            }
            s.port = free_port();
        }
        panic!("python3 http.server did not start; see its output above");
    }

    /// Starts the process on `self.port` and waits until it accepts; false if it exited.
    fn spawn(&mut self) -> bool {
        let child = Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            // Polling a readiness condition; each try is cheap.
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }

    /// SIGKILL, as a crash would, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

// After `GATEWAY_AND_WEB` (testkit): listener `web` on a free port, access log off.
const CONFIG: &str = r#"
---
kind: Backend
metadata: {name: app}
spec:
  endpoints: [{endpoints}]
  outlierDetection: {consecutiveErrors: 3, baseEjectionTime: 300ms, maxEjectionPercent: 50%}
  # A timeout python under a loaded machine's load does not miss twice in a row: a flapping a or
  # b would move c's share or (two of three out: panic mode) send traffic to the dead c.
  healthCheck: {http: {path: /healthz}, interval: 300ms, timeout: 300ms, unhealthyThreshold: 2, healthyThreshold: 2}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: app}]
"#;

/// Continuous load from several clients, counting answers per upstream and failures.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    served: Arc<[AtomicUsize; 3]>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let served: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let clients = (0..clients)
            .map(|_| {
                let (stop, failed, served, url) =
                    (stop.clone(), failed.clone(), served.clone(), url.clone());
                tokio::spawn(async move {
                    let client = Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url, &[]).await {
                            Ok(r) if r.status == 200 => {
                                let i = ["a", "b", "c"].iter().position(|n| *n == r.text());
                                served[i.expect("a known upstream")]
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            failed,
            served,
            clients,
        }
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    fn served(&self, i: usize) -> usize {
        self.served[i].load(Ordering::Relaxed)
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_process_is_ejected_under_load_and_returns_when_restarted() {
    let mut ups = [
        PyServer::start("a"),
        PyServer::start("b"),
        PyServer::start("c"),
    ];
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr())).collect();
    let gw = TestGateway::start(&with_gateway(&fill(
        CONFIG,
        &[("endpoints", &list.join(", "))],
    )))
    .await;
    let endpoint = |b: &serde_json::Value, addr: &str| {
        (b["endpoints"].as_array().unwrap().iter())
            .find(|e| e["address"] == addr)
            .cloned()
            .unwrap_or_else(|| panic!("{addr} not listed: {b}"))
    };
    let c = ups[2].addr();
    wait_for("every endpoint healthy", || async {
        let b = backend(&gw, "default/app").await;
        (b["endpoints"].as_array().unwrap().iter()).all(|e| e["health"] == "healthy")
    })
    .await;

    let load = Load::start(format!("{}/name", gw.url("web").await), 4);
    wait_for("c gets traffic", || async { load.served(2) > 10 }).await;
    let before = load.failed();
    let killed_at = Instant::now();
    ups[2].kill();
    wait_for("c taken out", || async {
        let e = endpoint(&backend(&gw, "default/app").await, &c);
        e["ejected"] == true || e["health"] == "unhealthy"
    })
    .await;
    let taken_out = killed_at.elapsed();
    let failed = load.failed() - before;
    let e = endpoint(&backend(&gw, "default/app").await, &c);
    println!(
        "killed c: taken out after {taken_out:?} and {failed} failed requests (ejected {}, health {})",
        e["ejected"], e["health"]
    );
    // Out for good: the health check confirms what outlier detection saw.
    wait_for("c unhealthy", || async {
        endpoint(&backend(&gw, "default/app").await, &c)["health"] == "unhealthy"
    })
    .await;
    let (failed_out, a_out, b_out) = (load.failed(), load.served(0), load.served(1));
    wait_for("traffic goes on to a and b", || async {
        load.served(0) + load.served(1) > a_out + b_out + 200
    })
    .await;
    assert_eq!(load.failed(), failed_out, "failures while c is out");
    // c's share goes to both others alike, not to the one after it in the schedule.
    let (a, b) = (load.served(0) - a_out, load.served(1) - b_out);
    let share = a as f64 / (a + b) as f64;
    println!("while c is out: a {a}, b {b}");
    assert!((0.4..=0.6).contains(&share), "a {a}, b {b}");

    assert!(ups[2].spawn(), "c restarts on port {}", ups[2].port);
    // Measured from the moment c accepts connections again: Python's own start-up (over a second
    // on a loaded machine) is not the gateway's reaction time.
    let restarted_at = Instant::now();
    let served_before = load.served(2);
    wait_for("c healthy again", || async {
        endpoint(&backend(&gw, "default/app").await, &c)["health"] == "healthy"
    })
    .await;
    let healthy = restarted_at.elapsed();
    wait_for("c serves again", || async {
        load.served(2) > served_before
    })
    .await;
    let returned = restarted_at.elapsed();
    assert_eq!(load.failed(), failed_out, "failures after the restart");
    let failed_total = load.failed();
    let served: Vec<usize> = (0..3).map(|i| load.served(i)).collect();
    load.finish().await;
    println!("restarted c: healthy after {healthy:?}, back in traffic after {returned:?}; served {served:?}, {failed_total} failed in all");
    // Seconds of margin for a loaded machine; the failure count below is the exact measure.
    assert!(taken_out < Duration::from_secs(5), "{taken_out:?}");
    // Three consecutive errors eject; each of the four clients may have one more in flight.
    assert!(
        failed <= 3 + 4,
        "{failed} failed requests before c was taken out"
    );
    // Healthy after two good rounds; a round lasts its slowest probe (up to the 300ms timeout with
    // python under load) plus the 300ms interval: a few intervals, with seconds of slack for a
    // loaded machine.
    assert!(returned < Duration::from_secs(5), "{returned:?}");
}
