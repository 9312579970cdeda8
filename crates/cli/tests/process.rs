//! The `gatehouse` process as users run it, from start to exit: a second one on a held address
//! fails to start naming it; a request cut off at `drainTimeout` is still logged (error
//! `shutdown`); a second SIGTERM during the drain exits at once, saying so.

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{refuses, wait_for, Client, Upstream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

mod common;
use common::{spawn, to_upstream, Running, BIN, LIMIT};

/// The Gateway's spec lines: two workers, so the cut-off request may be on either worker thread
/// and listeners are bound with SO_REUSEPORT; `{drain}`; the access log as JSON to `{log}`.
const GATEWAY: &str = r#"
  workers: 2
  drainTimeout: {drain}
  accessLog: {format: json, path: "{log}"}
"#;

/// The config with listener `web` on a free port.
fn write_config(dir: &Path, up: &Upstream, drain: &str, log: &Path) {
    write_config_on(dir, up, drain, log, "127.0.0.1:0");
}

/// The config with listener `web` on `web`.
fn write_config_on(dir: &Path, up: &Upstream, drain: &str, log: &Path, web: &str) {
    let log = log.display().to_string();
    let spec = fill(GATEWAY, &[("drain", drain), ("log", &log)]);
    // A route timeout longer than any request here.
    let documents = to_upstream(up.addr, "      timeout: 60s");
    common::write_config(dir, &spec, web, &documents);
}

/// The exit status and stderr of `child` once it exits; `None` (and the child killed) when it is
/// still running after `LIMIT`.
fn exited(mut child: Child) -> Option<(ExitStatus, String)> {
    let deadline = std::time::Instant::now() + LIMIT;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take()?, &mut stderr);
            return Some((status, stderr));
        }
        // Polling for the exit, not waiting for a guess: each check is cheap.
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

/// Waits for the process to exit; returns its status and what it wrote to stderr since started.
async fn exit_status(mut gw: Running) -> (ExitStatus, Vec<String>) {
    tokio::time::timeout(
        LIMIT,
        tokio::task::spawn_blocking(move || {
            let status = gw.child.wait().unwrap();
            // Ends when the reader thread sees the pipe close.
            let said: Vec<String> = gw.stderr.iter().collect();
            (status, said)
        }),
    )
    .await
    .expect("gatehouse exits")
    .unwrap()
}

/// Starts a request the upstream holds for `ms` and waits until it reached the upstream.
async fn slow_request(gw: &Running, up: &Upstream, ms: u64) {
    let url = format!("http://{}/slow/{ms}", gw.web);
    tokio::spawn(async move { Client::new().get(&url, &[]).await });
    wait_for("the slow request to reach the upstream", || async {
        up.requests() > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_off_at_the_drain_timeout_is_logged_with_error_shutdown() {
    let up = Upstream::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    write_config(dir.path(), &up, "200ms", &log);
    let gw = spawn(dir.path());
    slow_request(&gw, &up, 15_000).await;
    // And one over HTTP/2, whose streams run as tasks of their own.
    let mut h2 = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
        .arg(format!("http://{}/slow/15001", gw.web))
        .spawn()
        .expect("curl is installed");
    wait_for("the HTTP/2 request to reach the upstream", || async {
        up.requests() > 1
    })
    .await;
    sigterm(&gw.child);
    assert_eq!(exit_status(gw).await.0.code(), Some(0));
    let _ = h2.kill();
    let _ = h2.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for path in ["/slow/15000", "/slow/15001"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"path\":\"{path}\"")))
            .unwrap_or_else(|| panic!("no access-log line for {path}: {text:?}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["error"], "shutdown", "{line}");
        assert_eq!(v["status"], 499, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_the_drain_exits_at_once() {
    let up = Upstream::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    write_config(dir.path(), &up, "60s", &log);
    let gw = spawn(dir.path());
    slow_request(&gw, &up, 50_000).await;
    sigterm(&gw.child);
    // The drain has begun once the listener refuses connections.
    let web = gw.web;
    wait_for("the listener to close after SIGTERM", || refuses(web)).await;
    sigterm(&gw.child);
    let (status, said) = exit_status(gw).await;
    assert_eq!(status.code(), Some(143), "exits at once, non-zero");
    assert!(
        said.iter()
            .any(|l| l.contains("SIGTERM during the drain: exiting at once")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gatehouse_on_a_held_address_fails_to_start_naming_it() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    write_config(dir.path(), &up, "1s", &log);
    let first = spawn(dir.path());
    let second = tempfile::tempdir().unwrap();
    let web = first.web.to_string();
    write_config_on(second.path(), &up, "1s", &log, &web);
    let second = Command::new(BIN)
        .args(["run", "-c"])
        .arg(second.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = tokio::task::spawn_blocking(move || exited(second))
        .await
        .unwrap()
        .expect("the second gatehouse exits at once");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {web}")) && stderr.contains("in use"),
        "{stderr}"
    );
    // The first still serves every connection.
    for _ in 0..20 {
        let r = Client::new()
            .get(&format!("http://{web}/x"), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
}
