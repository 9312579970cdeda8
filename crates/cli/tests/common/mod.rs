//! The `gatehouse` binary as a child process for the CLI tests: its config written into a
//! directory, started on it, its log read until the listener and admin addresses are known, killed
//! and reaped when dropped.

// Each test file uses a part of this.
#![allow(dead_code)]

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::gateway::with_api_version;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
pub const LIMIT: Duration = Duration::from_secs(20);

/// The Gateway (admin API on a free port, then `{spec}`: its other spec lines) and listener `web`
/// on `{web}` that every config here starts with.
const PREAMBLE: &str = r#"
kind: Gateway
metadata: {name: g}
spec:
  admin: {address: "127.0.0.1:0"}
{spec}
---
kind: Listener
metadata: {name: web}
spec: {address: "{web}", protocol: HTTP}
"#;

/// Backend `up` at `{up}` and route `r` whose one rule sends every request there, with `{rule}`:
/// that rule's other lines, indented six spaces.
const TO_UPSTREAM: &str = r#"
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["{up}"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
{rule}
"#;

/// The documents of backend `up` at `up` and of route `r` sending every request there, `rule`
/// being the rule's other lines (indented six spaces), for `write_config`.
pub fn to_upstream(up: SocketAddr, rule: &str) -> String {
    let up = up.to_string();
    fill(
        TO_UPSTREAM,
        &[("up", &up), ("rule", rule.trim_matches('\n'))],
    )
}

/// Writes `dir/gatehouse.yaml`: the Gateway with `spec` (its spec lines besides `admin`, indented
/// two spaces), listener `web` on `web` (`127.0.0.1:0`: a free port), then `documents` (starting
/// with `---`); every document gets the apiVersion line. Written then renamed, so that a running
/// gatehouse's file watcher never reads half a file.
pub fn write_config(dir: &Path, spec: &str, web: &str, documents: &str) {
    let yaml = fill(PREAMBLE, &[("spec", spec.trim_matches('\n')), ("web", web)]) + documents;
    let tmp = dir.join(".gatehouse.yaml.tmp");
    std::fs::write(&tmp, with_api_version(&yaml)).expect("write config");
    std::fs::rename(&tmp, dir.join("gatehouse.yaml")).expect("rename config");
}

/// A running `gatehouse run`, killed when dropped.
pub struct Running {
    pub child: Child,
    pub web: SocketAddr,
    pub admin: SocketAddr,
    /// Lines the process writes to stderr after its addresses, as they come.
    pub stderr: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gatehouse run -c dir` and reads its log until listener `web` and the admin API listen.
pub fn spawn(dir: &Path) -> Running {
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(dir)
        .env("GATEHOUSE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gatehouse binary starts");
    let err = child.stderr.take().expect("piped stderr");
    let (tx, stderr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("gatehouse: {line}");
            let _ = tx.send(line);
        }
    });
    let addr_in = |line: &str| -> Option<SocketAddr> {
        let rest = &line[line.find("address=")? + 8..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let (mut web, mut admin) = (None, None);
    while web.is_none() || admin.is_none() {
        let line = stderr
            .recv_timeout(LIMIT)
            .expect("gatehouse logs its addresses");
        if line.contains("admin listening") {
            admin = addr_in(&line);
        } else if line.contains("listening") && line.contains("default/web") {
            web = addr_in(&line);
        }
    }
    Running {
        child,
        web: web.expect("web address"),
        admin: admin.expect("admin address"),
        stderr,
    }
}
