//! The `gatehouse` binary as users run it: `check` and `routes` output, SIGHUP reload, and the
//! SIGTERM drain that lets an in-flight request finish.

use gatehouse_testkit::{refuses, wait_for, Client, Upstream};
use std::path::Path;
use std::process::{Child, Command};

mod common;
use common::{spawn, to_upstream, BIN, LIMIT};

fn config_crate() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
}

#[test]
fn check_prints_every_error_and_exits_non_zero() {
    for case in [
        "bad-values",
        "references",
        "unknown-fields",
        "rules",
        "syntax",
        "values",
        "every-error",
    ] {
        let dir = format!("tests/golden/{case}/input");
        let out = Command::new(BIN)
            .args(["check", &dir])
            .current_dir(config_crate())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{case}");
        let expected = std::fs::read_to_string(
            config_crate().join(format!("tests/golden/{case}/expected.txt")),
        )
        .unwrap();
        let n = expected.lines().count();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr,
            format!("{expected}{n} error{}\n", if n == 1 { "" } else { "s" }),
            "{case}"
        );
    }
    let out = Command::new(BIN)
        .args(["check", "tests/golden/valid/input"])
        .current_dir(config_crate())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("ok: 3 listener(s), 2 backend(s), 1 route(s) with 1 rule(s)"));
}

#[test]
fn routes_prints_the_table_in_matching_order() {
    let out = Command::new(BIN)
        .args(["routes", "tests/golden/valid/input"])
        .current_dir(config_crate())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HOST"));
    assert!(lines[1].starts_with("api.example.com"), "{text}");
    assert!(lines[2].starts_with("*.example.com"), "{text}");
    assert!(
        lines[1].contains("prefix /v1/tasks")
            && lines[1]
                .contains("GET,POST header:x-env=staging header:x-trace query:version~[0-9]+"),
        "{text}"
    );
    assert!(
        lines[1]
            .contains("forward team-tasks/tasks (95), default/shared (5) rewrite prefix /tasks"),
        "{text}"
    );
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gatehouse "));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("gatehouse check config/"));
}

/// The config, its responses marked with `header`.
fn write_config(dir: &Path, up: &Upstream, header: &str) {
    let rule = format!("      responseHeaders: {{set: {{x-config: {header}}}}}");
    let documents = to_upstream(up.addr, &rule);
    let spec = "  drainTimeout: 10s\n  accessLog: {enabled: false}";
    common::write_config(dir, spec, "127.0.0.1:0", &documents);
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let up = Upstream::start("slow").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &up, "one");
    let mut gw = spawn(dir.path());
    let url = format!("http://{}", gw.web);
    // Seconds longer than a loaded machine takes to act on SIGTERM, and within the drain.
    let slow =
        tokio::spawn(async move { Client::new().get(&format!("{url}/slow/5000"), &[]).await });
    wait_for("the slow request to reach the upstream", || async {
        up.requests() > 0
    })
    .await;
    signal(&gw.child, "-TERM");
    // New connections are refused while the slow request is still being served.
    let web = gw.web;
    wait_for("the listener to close after SIGTERM", || refuses(web)).await;
    assert!(
        !slow.is_finished(),
        "the slow request was still in flight when accepting stopped"
    );
    let r = tokio::time::timeout(LIMIT, slow)
        .await
        .unwrap()
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept 5000ms\n");
    let status = tokio::task::spawn_blocking(move || gw.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &up, "one");
    let gw = spawn(dir.path());
    let c = Client::new();
    let url = format!("http://{}/x", gw.web);
    assert_eq!(
        c.get(&url, &[]).await.unwrap().header("x-config"),
        Some("one")
    );
    write_config(dir.path(), &up, "two");
    signal(&gw.child, "-HUP");
    // The file watcher may win the race to reload; either way the new config must be served.
    let admin = format!("http://{}/config", gw.admin);
    wait_for("the reload", || async {
        let cfg = c.get(&admin, &[]).await.unwrap().json();
        cfg["lastReload"]["ok"] == true && cfg["lastReload"]["trigger"] != "startup"
    })
    .await;
    assert_eq!(
        c.get(&url, &[]).await.unwrap().header("x-config"),
        Some("two")
    );
}
