//! Basic auth over real sockets, against an htpasswd file of bcrypt entries made with the bcrypt
//! crate: the right password passes (user as subject and consumer in the access log), a wrong
//! one, an unknown user and malformed credentials are 401 with `WWW-Authenticate: Basic`; a file
//! with a non-bcrypt entry refuses the config; a changed file takes effect and forgets the
//! remembered checks (an old password stops working at once).

mod auth_common;

use auth_common::*;
use base64::Engine;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};

const ROUTES: &str = r#"
kind: Policy
metadata: {name: basic}
spec:
  basicAuth: {htpasswdFile: users.htpasswd, realm: staff}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
      policies: [basic]
"#;

fn entry(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

fn basic(user: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b}")
}

#[tokio::test]
async fn bcrypt_users_pass_and_everything_else_is_401() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    std::fs::write(&users, entry("alice", "s3cret") + &entry("bob", "hunter2")).unwrap();
    let log = Log(dir.path().join("access.log"));
    let gw = TestGateway::start_in(dir, &config(&log.0, up.addr, ROUTES)).await;
    let url = format!("{}/x", gw.url("web").await);
    let c = Client::new();

    let good = basic("alice", "s3cret");
    for i in 0..3 {
        let rid = format!("alice-{i}");
        let r = c
            .get(&url, &[("authorization", &good), ("x-request-id", &rid)])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let line = log.of(&rid).await;
        assert_eq!(line["subject"], "alice");
        assert_eq!(line["consumer"], "alice");
    }
    let cases = [
        ("wrong", basic("alice", "S3cret"), "bad_credentials"),
        ("unknown", basic("carol", "s3cret"), "bad_credentials"),
        (
            "malformed",
            "Basic !!!".to_string(),
            "malformed_credentials",
        ),
        (
            "no-colon",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice")
            ),
            "malformed_credentials",
        ),
    ];
    for (case, value, reason) in &cases {
        let r = c
            .get(&url, &[("authorization", value), ("x-request-id", case)])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{case}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"staff\""),
            "{case}"
        );
        assert_eq!(log.of(case).await["reason"], *reason, "{case}");
    }
    assert!(!log.text().contains("s3cret") && !log.text().contains("S3cret"));

    // Bob's password changes: the remembered check of the old one is forgotten with the file.
    let old = basic("bob", "hunter2");
    assert_eq!(
        c.get(&url, &[("authorization", &old)])
            .await
            .unwrap()
            .status,
        200
    );
    let tmp = gw.dir.path().join("users.tmp");
    std::fs::write(
        &tmp,
        entry("alice", "s3cret") + &entry("bob", "correct horse"),
    )
    .unwrap();
    std::fs::rename(&tmp, &users).unwrap();
    let new = basic("bob", "correct horse");
    wait_for("the new htpasswd file", || async {
        c.get(&url, &[("authorization", &new)])
            .await
            .unwrap()
            .status
            == 200
    })
    .await;
    assert_eq!(
        c.get(&url, &[("authorization", &old)])
            .await
            .unwrap()
            .status,
        401
    );
}

#[tokio::test]
async fn a_non_bcrypt_entry_refuses_the_config() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.htpasswd"), "alice:$apr1$abc$def\n").unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        dir.path().join("config.yaml"),
        gatehouse_testkit::gateway::with_api_version(&config(&log, up.addr, ROUTES)),
    )
    .unwrap();
    let source = gatehouse_gateway::ConfigSource::Path(dir.path().to_path_buf());
    let cfg = source.load().expect("the config itself is valid");
    let err =
        gatehouse_gateway::Gateway::start_on(source, cfg, vec![tokio::runtime::Handle::current()])
            .await
            .err()
            .expect("the gateway refuses to start");
    let text = err.to_string();
    assert!(
        text.contains("users.htpasswd:1") && text.contains("htpasswd -B"),
        "{text}"
    );
}
