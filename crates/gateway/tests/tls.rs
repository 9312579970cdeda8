//! HTTPS listeners with curl and a rustls client: certificates chosen by SNI, ALPN h2 and
//! http/1.1, certificate files reloaded in place when they change.

mod tls_common;

use gatehouse_testkit::{TestGateway, Upstream};
use std::process::Command;
use tls_common::{
    client_config, connect, eventually, get, get_once, write_atomic, write_self_signed,
};

fn curl(args: &[String]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_picks_certificates_by_sni_and_negotiates_alpn() {
    let up = Upstream::start("tls-up").await;
    let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["*.b.test".to_string()]).unwrap();
    let yaml = format!(
        r#"
kind: Gateway
metadata: {{name: g}}
spec: {{accessLog: {{enabled: false}}}}
---
kind: Listener
metadata: {{name: secure}}
spec:
  address: "127.0.0.1:0"
  protocol: HTTPS
  tls:
    certificates:
      - {{certFile: a.pem, keyFile: a-key.pem}}
      - {{certFile: certs/b.pem, keyFile: certs/b-key.pem}}
---
kind: Backend
metadata: {{name: up}}
spec: {{endpoints: ["{}"]}}
---
kind: Route
metadata: {{name: r}}
spec:
  rules:
    - backends: [{{backend: up}}]
"#,
        up.addr
    );
    // Write the certificates beside the config before it loads (paths are relative to it).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("a.pem"), a.cert.pem()).unwrap();
    std::fs::write(dir.path().join("a-key.pem"), a.key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("certs/b.pem"), b.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("certs/b-key.pem"),
        b.key_pair.serialize_pem(),
    )
    .unwrap();
    let gw = TestGateway::start_in(dir, &yaml).await;
    let port = gw.addr("secure").await.port();
    let certs = gw.dir.path().to_path_buf();

    let run = move |host: &str, ca: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "--cacert".into(),
            certs.join(ca).display().to_string(),
            "--resolve".into(),
            format!("{host}:{port}:127.0.0.1"),
            "-w".into(),
            "\n%{http_version}".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("https://{host}:{port}/hello"));
        curl(&args)
    };
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || {
            (
                run("a.test", "a.pem", &[]),
                run("x.b.test", "certs/b.pem", &[]),
                run("x.b.test", "certs/b.pem", &["--http1.1"]),
                run("x.b.test", "a.pem", &[]),
            )
        }
    })
    .await
    .unwrap();
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, version) = s.rsplit_once('\n').unwrap();
        let echo: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
        version.to_string()
    };
    assert_eq!(ok(&out.0), "2", "a.test over h2 with a's certificate");
    assert_eq!(ok(&out.1), "2", "x.b.test gets the wildcard certificate");
    assert_eq!(
        ok(&out.2),
        "1.1",
        "ALPN http/1.1 when the client asks for it"
    );
    assert!(
        !out.3.status.success(),
        "x.b.test must not be served a's certificate"
    );
}

#[tokio::test]
async fn a_missing_certificate_fails_startup_with_the_path() {
    let yaml = "kind: Listener\nmetadata: {name: s}\nspec:\n  address: \"127.0.0.1:0\"\n  protocol: HTTPS\n  tls: {certificates: [{certFile: nope.pem, keyFile: nope-key.pem}]}\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        gatehouse_testkit::gateway::with_api_version(yaml),
    )
    .unwrap();
    let source = gatehouse_gateway::ConfigSource::Path(dir.path().to_path_buf());
    let config = source.load().unwrap();
    let err = gatehouse_gateway::Gateway::start(source, config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_a_listener_to_https_on_the_same_socket() {
    let up = Upstream::start("up").await;
    let cert = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("a-key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let yaml = |listener: &str| {
        format!(
            "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{enabled: false}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {listener}\n---\nkind: Backend\nmetadata: {{name: up}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - backends: [{{backend: up}}]\n",
            up.addr
        )
    };
    let gw = TestGateway::start_in(dir, &yaml("{address: \"127.0.0.1:0\", protocol: HTTP}")).await;
    let addr = gw.addr("web").await;
    let c = gatehouse_testkit::Client::new();
    assert_eq!(
        c.get(&format!("http://{addr}/x"), &[])
            .await
            .unwrap()
            .status,
        200
    );
    gw.write(&yaml("{address: \"127.0.0.1:0\", protocol: HTTPS, tls: {certificates: [{certFile: a.pem, keyFile: a-key.pem}]}}"));
    gw.gw.reload("test").await.unwrap();
    assert_eq!(gw.addr("web").await, addr, "same socket");
    let ca = gw.dir.path().join("a.pem").display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        curl(&[
            "--cacert".into(),
            ca,
            "--resolve".into(),
            format!("a.test:{}:127.0.0.1", addr.port()),
            format!("https://a.test:{}/x", addr.port()),
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_sent_to_an_https_port_gets_a_400_then_tls_still_works() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up").await;
    let cert = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("a-key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let yaml = gatehouse_testkit::gateway::one_route(up.addr, "").replace(
        "protocol: HTTP",
        "protocol: HTTPS, tls: {certificates: [{certFile: a.pem, keyFile: a-key.pem}]}",
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    let addr = gw.addr("web").await;

    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answered and closed")
        .expect("no reset before the answer is read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(
        text.contains("The plain HTTP request was sent to HTTPS port"),
        "{text}"
    );
    assert_eq!(up.requests(), 0);

    let ca = gw.dir.path().join("a.pem").display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        curl(&[
            "--cacert".into(),
            ca,
            "--resolve".into(),
            format!("a.test:{}:127.0.0.1", addr.port()),
            format!("https://a.test:{}/x", addr.port()),
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SECURE: &str = r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false}}
---
kind: Listener
metadata: {name: secure}
spec:
  address: "127.0.0.1:0"
  protocol: HTTPS
  tls:
    certificates: [{certFile: certs/a.pem, keyFile: certs/a-key.pem}]
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

fn reload_errors(gw: &TestGateway) -> String {
    gw.gw
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("gatehouse_tls_reload_errors_total{listener=\"default/secure\"}"))
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_to_new_handshakes_and_open_connections_stay() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let old = write_self_signed(&certs, "a", &["a.test"]);
    let gw = TestGateway::start_in(dir, &SECURE.replace("UPSTREAM", &up.addr.to_string())).await;
    let addr = gw.addr("secure").await;
    let trusts_old = client_config(&[&old], None);

    // A keep-alive connection opened with the old certificate.
    let mut open = connect(addr, "a.test", trusts_old.clone())
        .await
        .expect("old cert served");
    assert_eq!(get(&mut open, "a.test", "/1").await.unwrap().0, 200);

    let new = write_self_signed(&certs, "a", &["a.test"]);
    let trusts_new = client_config(&[&new], None);
    eventually("the new certificate is served", || {
        let c = trusts_new.clone();
        async move {
            get_once(addr, "a.test", c, "/2")
                .await
                .is_ok_and(|r| r.0 == 200)
        }
    })
    .await;
    let refused = get_once(addr, "a.test", trusts_old.clone(), "/3").await;
    assert!(refused.is_err(), "the old certificate is gone: {refused:?}");
    assert_eq!(
        get(&mut open, "a.test", "/4").await.unwrap().0,
        200,
        "the connection opened before the swap keeps working"
    );
    assert_eq!(reload_errors(&gw), "0");

    // A broken certificate file: counted, logged, and the last good certificate stays.
    write_atomic(&certs, "a.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    eventually("the broken file is counted", || async {
        reload_errors(&gw) == "1"
    })
    .await;
    let still = get_once(addr, "a.test", trusts_new.clone(), "/5").await;
    assert_eq!(
        still.map(|r| r.0),
        Ok(200),
        "the last good certificate stays"
    );

    // Half a rotation (a new certificate beside the old key) is refused the same way.
    let other = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    write_atomic(&certs, "a.pem", &other.cert.pem());
    eventually("the mismatched pair is counted", || async {
        reload_errors(&gw) == "2"
    })
    .await;
    let still = get_once(addr, "a.test", trusts_new.clone(), "/6").await;
    assert_eq!(
        still.map(|r| r.0),
        Ok(200),
        "a cert without its key is never served"
    );
    assert_eq!(get(&mut open, "a.test", "/7").await.unwrap().0, 200);
}
