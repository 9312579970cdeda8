//! Client certificates on HTTPS listeners (`tls.clientAuth`), with curl, `openssl s_client` and a
//! rustls client: `Required` refuses clients without a certificate from the CA, `Optional` lets
//! both through; the verified subject goes upstream in `x-client-cert-subject` and into the
//! access log, and a client's own copy of that header never reaches the backend.

mod tls_common;

use gatehouse_testkit::{TestGateway, Upstream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tls_common::{client_config, connect, get, Ca};

const CONFIG: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {format: json, path: "ACCESS_LOG"}}
---
kind: Listener
metadata: {name: required}
spec:
  address: "127.0.0.1:0"
  protocol: HTTPS
  tls:
    certificates: [{certFile: server.pem, keyFile: server-key.pem}]
    clientAuth: {caFile: clients-ca.pem, mode: Required}
---
kind: Listener
metadata: {name: optional}
spec:
  address: "127.0.0.1:0"
  protocol: HTTPS
  tls:
    certificates: [{certFile: server.pem, keyFile: server-key.pem}]
    clientAuth: {caFile: clients-ca.pem, mode: Optional}
---
kind: Listener
metadata: {name: plain}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
"#;

struct Setup {
    gw: TestGateway,
    _up: Upstream,
    dir: PathBuf,
    server_ca: String,
}

/// A gateway whose listeners trust `clients-ca.pem`; `alice.pem` is issued by that CA,
/// `mallory.pem` by another one.
async fn setup() -> Setup {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("Server CA");
    server_ca.server(&["a.test"]).write(dir.path(), "server");
    let clients = Ca::new("Clients CA");
    std::fs::write(dir.path().join("clients-ca.pem"), &clients.pem).unwrap();
    clients.client("alice").write(dir.path(), "alice");
    Ca::new("Other CA")
        .client("mallory")
        .write(dir.path(), "mallory");
    let log = dir.path().join("access.log");
    let yaml = CONFIG
        .replace("UPSTREAM", &up.addr.to_string())
        .replace("ACCESS_LOG", &log.display().to_string());
    let path = dir.path().to_path_buf();
    let gw = TestGateway::start_in(dir, &yaml).await;
    Setup {
        gw,
        _up: up,
        dir: path,
        server_ca: server_ca.pem,
    }
}

impl Setup {
    /// curl to listener `listener` with `client` (a stem in the config dir) as its certificate,
    /// and `extra` arguments.
    async fn curl(&self, listener: &str, client: Option<&str>, extra: &[&str]) -> Output {
        let port = self.gw.addr(listener).await.port();
        std::fs::write(self.dir.join("server-ca.pem"), &self.server_ca).unwrap();
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "--max-time".into(),
            "20".into(),
            "--cacert".into(),
            self.path("server-ca.pem"),
            "--resolve".into(),
            format!("a.test:{port}:127.0.0.1"),
        ];
        if let Some(c) = client {
            args.extend([
                "--cert".into(),
                self.path(&format!("{c}.pem")),
                "--key".into(),
                self.path(&format!("{c}-key.pem")),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("https://a.test:{port}/who"));
        tokio::task::spawn_blocking(move || Command::new("curl").args(args).output().unwrap())
            .await
            .unwrap()
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// The upstream's echo of the request's `x-client-cert-subject` (`None`: absent).
fn forwarded_subject(out: &Output) -> Option<String> {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    echo["headers"]["x-client-cert-subject"]
        .as_str()
        .map(str::to_string)
}

fn access_log(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("access.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_lets_in_only_clients_with_a_certificate_from_the_ca() {
    let s = setup().await;
    let alice = s.curl("required", Some("alice"), &[]).await;
    assert_eq!(
        forwarded_subject(&alice).as_deref(),
        Some("CN=alice,O=Gatehouse Tests")
    );
    let h2 = s.curl("required", Some("alice"), &["--http2"]).await;
    assert_eq!(
        forwarded_subject(&h2).as_deref(),
        Some("CN=alice,O=Gatehouse Tests"),
        "the same over HTTP/2"
    );

    let anonymous = s.curl("required", None, &[]).await;
    assert!(!anonymous.status.success(), "no certificate: refused");
    let stranger = s.curl("required", Some("mallory"), &[]).await;
    assert!(
        !stranger.status.success(),
        "a certificate from another CA: refused"
    );

    // openssl s_client, TLS 1.2 so the refusal is part of the handshake itself.
    let port = s.gw.addr("required").await.port();
    let (ca, cert, key) = (
        s.path("server-ca.pem"),
        s.path("alice.pem"),
        s.path("alice-key.pem"),
    );
    let s_client = move |with_cert: bool| {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-tls1_2", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "-servername",
                "a.test",
                "-CAfile",
                &ca,
                "-verify_return_error",
            ])
            .stdin(std::process::Stdio::null());
        if with_cert {
            cmd.args(["-cert", &cert, "-key", &key]);
        }
        cmd.output().unwrap()
    };
    let (without, with) = tokio::task::spawn_blocking(move || (s_client(false), s_client(true)))
        .await
        .unwrap();
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(!without.status.success(), "{}", text(&without));
    assert!(text(&without).contains("alert"), "{}", text(&without));
    assert!(with.status.success(), "{}", text(&with));
    assert!(
        text(&with).contains("Verify return code: 0 (ok)"),
        "{}",
        text(&with)
    );

    let log = access_log(&s.dir);
    let subjects: Vec<_> = log.iter().map(|l| l["clientCert"].clone()).collect();
    assert_eq!(
        subjects,
        vec![
            serde_json::json!("CN=alice,O=Gatehouse Tests"),
            serde_json::json!("CN=alice,O=Gatehouse Tests")
        ],
        "one line per request that got through, each naming the subject: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_lets_both_in_and_only_a_verified_subject_is_forwarded() {
    let s = setup().await;
    let forged = ["-H", "x-client-cert-subject: CN=admin"];
    let alice = s.curl("optional", Some("alice"), &forged).await;
    assert_eq!(
        forwarded_subject(&alice).as_deref(),
        Some("CN=alice,O=Gatehouse Tests"),
        "the verified subject replaces the client's copy"
    );
    let anonymous = s.curl("optional", None, &forged).await;
    assert_eq!(
        forwarded_subject(&anonymous),
        None,
        "no certificate: no header"
    );
    let stranger = s.curl("optional", Some("mallory"), &[]).await;
    assert!(
        !stranger.status.success(),
        "a certificate that is presented must verify"
    );

    // Without any clientAuth, on a plain listener too, a client's copy is removed.
    let url = format!("{}/who", s.gw.url("plain").await);
    let plain = gatehouse_testkit::Client::new()
        .get(&url, &[("x-client-cert-subject", "CN=admin")])
        .await
        .unwrap();
    let echo: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert!(
        echo["headers"].get("x-client-cert-subject").is_none(),
        "{echo}"
    );

    let log = access_log(&s.dir);
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0]["clientCert"], "CN=alice,O=Gatehouse Tests");
    assert!(log[1].get("clientCert").is_none(), "{:?}", log[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_belongs_to_the_connection_and_every_request_on_it() {
    let s = setup().await;
    let alice = (
        std::fs::read_to_string(s.dir.join("alice.pem")).unwrap(),
        std::fs::read_to_string(s.dir.join("alice-key.pem")).unwrap(),
    );
    let config = client_config(&[&s.server_ca], Some((&alice.0, &alice.1)));
    let addr = s.gw.addr("required").await;
    let mut tx = connect(addr, "a.test", config).await.unwrap();
    for path in ["/1", "/2"] {
        let (status, body) = get(&mut tx, "a.test", path).await.unwrap();
        assert_eq!(status, 200);
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            echo["headers"]["x-client-cert-subject"],
            "CN=alice,O=Gatehouse Tests"
        );
    }
}
