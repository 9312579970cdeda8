//! The developer portal in a real browser: headless Chromium (Debian `chromium`, installed by
//! scripts/test.sh) driven over the DevTools protocol by `portal_browser.py`, against a gateway
//! whose API is served by a real `python3 -m http.server`. Pages render, every link answers, the
//! keyboard reaches the skip link first, every field has a label, try-it shows the upstream's real
//! response, and at phone width (375px) nothing is wider than the screen.
//! `PORTAL_SCREENSHOTS=docs/portal` (relative to this crate: `../../docs/portal`) refreshes the
//! README's two screenshots.

use gatehouse_testkit::TestGateway;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec:
  accessLog: {enabled: false}
  portal: PORTAL
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Route
metadata: {name: tasks-v1}
spec:
  HOSTS
  rules:
    - match: {path: {prefix: /v1/tasks}, methods: [METHODS]}
      backends: [{backend: tasks}]
      timeout: 5s
---
kind: Route
metadata: {name: status}
spec:
  rules:
    - match: {path: {exact: /v2/status}}
      directResponse: {status: 200, body: "ok"}
"#;

/// `python3 -m http.server` on a free loopback port, serving `dir`; killed when dropped.
struct PythonServer {
    child: Child,
    addr: String,
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonServer {
    fn start(dir: &Path) -> PythonServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        // Readiness: it prints its port once the socket listens (or exits, closing stdout).
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonServer {
            addr: format!("127.0.0.1:{port}"),
            child,
        }
    }
}

/// A file the python upstream serves at `/v1/tasks`.
const TASKS: &str = r#"{"tasks": [{"id": 1, "title": "served by python http.server"}]}"#;

/// Starts the upstream and a gateway with the portal mounted as `portal`, reloads once (so the
/// changelog has an entry), drives the browser from the portal's front page, following
/// the catalogue link `card`, and checks what it saw.
async fn browse(portal: &str, hosts: &str, card: &str, api_page: &str, shots: bool) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "headless Chromium is needed at {chromium} (`apt-get install chromium`; scripts/test.sh does it)"
    );
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("v1")).unwrap();
    std::fs::write(site.path().join("v1/tasks"), TASKS).unwrap();
    let upstream = PythonServer::start(site.path());
    let config = |methods: &str| {
        CONFIG
            .replace("PORTAL", portal)
            .replace("HOSTS", hosts)
            .replace("UPSTREAM", &upstream.addr)
            .replace("METHODS", methods)
    };
    let gw = TestGateway::start(&config("GET")).await;
    gw.write(&config("GET, POST"));
    gw.gw.reload("test").await.expect("reload");
    let base = match gw.gw.portal_addr() {
        Some(a) => format!("http://{a}/"),
        None => format!("{}/portal/", gw.url("web").await),
    };

    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal_browser.py");
    // The driver bounds its own waits (60s each) and closes the browser; the gateway keeps
    // serving on this runtime's threads while it runs.
    let mut driver = Command::new("python3");
    driver
        .arg(&script)
        .arg(&base)
        .arg(out.path())
        .arg(card)
        .env("CHROMIUM", &chromium);
    let run = tokio::task::spawn_blocking(move || driver.output())
        .await
        .expect("driver thread")
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "browser driver failed: {stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("driver output: {e}: {stderr}"));

    assert_eq!(seen["indexTitle"], "Example APIs · Example APIs");
    assert_eq!(seen["h1"], "Example APIs");
    assert_eq!(
        seen["firstTab"], "Skip to content",
        "keyboard: the skip link comes first"
    );
    let links = seen["links"].as_array().expect("links");
    assert!(links.len() >= 4, "{links:?}");
    for l in links {
        assert_eq!(l[1], 200, "link {l}");
    }
    assert!(
        seen["apiPage"].as_str().unwrap().starts_with(api_page),
        "{seen}"
    );
    assert_eq!(seen["unlabelled"], 0, "every field has a label");
    let result = seen["tryResult"].as_str().expect("try-it result");
    assert!(result.contains("HTTP 200"), "{result}");
    assert!(
        result.contains("served by python http.server"),
        "the upstream's real body: {result}"
    );
    assert!(
        result.contains("x-request-id"),
        "the gateway's headers: {result}"
    );
    assert!(seen["phoneScrollWidth"].as_u64().unwrap() <= 375, "{seen}");
    assert!(
        seen["changelogScrollWidth"].as_u64().unwrap() <= 375,
        "{seen}"
    );
    assert!(
        seen["changelog"].as_str().unwrap().contains("Reload at"),
        "{seen}"
    );
    for shot in [
        "portal-desktop.png",
        "portal-try.png",
        "portal-phone.png",
        "portal-phone-changelog.png",
    ] {
        let png = std::fs::read(out.path().join(shot)).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
        let for_readme = shots && ["portal-desktop.png", "portal-phone.png"].contains(&shot);
        if let (Ok(keep), true) = (std::env::var("PORTAL_SCREENSHOTS"), for_readme) {
            std::fs::write(Path::new(&keep).join(shot), &png).unwrap();
        }
    }
    drop(upstream);
}

/// On its own address: try-it goes through the portal's proxy, with the operation's `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_on_its_own_address_works_in_headless_chromium() {
    browse(
        r#"{address: "127.0.0.1:0", title: "Example APIs"}"#,
        "hosts: [api.example.com]",
        "v1 API on api.example.com",
        "/apis/api-example-com-v1",
        true,
    )
    .await;
}

/// Under a path prefix: try-it is a same-origin `fetch` from the page to the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_under_a_path_prefix_works_in_headless_chromium() {
    browse(
        r#"{pathPrefix: /portal, title: "Example APIs"}"#,
        "hosts: []",
        "v1 API on any host",
        "/portal/apis/any-host-v1",
        false,
    )
    .await;
}
