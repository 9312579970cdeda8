//! API-key policies over real sockets: keys stored as SHA-256 hashes inline or in a watched
//! `keysFile` (a new key works once the file changes; `watched`'s unit test covers broken files), read
//! from a header or the query; the consumer in the access log and as a rate-limit key (each
//! consumer its own bucket); `anyOf` between a JWT and an API key; 401 JSON without a
//! `WWW-Authenticate` (the scheme has none).

mod auth_common;

use auth_common::*;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};
use serde_json::json;

fn sha256(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

const ROUTES: &str = r#"
kind: Policy
metadata: {name: keys}
spec:
  apiKey:
    from: [{header: x-api-key}, {query: api_key}]
    keys: [{consumer: acme, sha256: "ACME"}]
    keysFile: keys.txt
---
kind: Policy
metadata: {name: per-consumer}
spec:
  rateLimit: {requests: 2, per: 1h, key: {consumer: true}}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /limited}}
      backends: [{backend: up}]
      policies: [keys, per-consumer]
    - backends: [{backend: up}]
      policies: [keys]
"#;

async fn start() -> (TestGateway, Log, Upstream) {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("keys.txt"),
        format!("# consumers\nglobex {}\n", sha256("globex-key-1")),
    )
    .unwrap();
    let log = Log(dir.path().join("access.log"));
    let yaml = config(
        &log.0,
        up.addr,
        &ROUTES.replace("ACME", &sha256("acme-key-1")),
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    (gw, log, up)
}

#[tokio::test]
async fn keys_inline_and_from_the_file_name_their_consumer() {
    let (gw, log, _up) = start().await;
    let base = gw.url("web").await;
    let c = Client::new();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let url = format!("{base}{path}");
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let c = &c;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            c.get(&url, &h).await.unwrap()
        }
    };
    let r = get(
        "/x",
        &[("x-api-key", "acme-key-1"), ("x-request-id", "acme")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(log.of("acme").await["consumer"], "acme");
    let r = get("/x?api_key=globex-key-1", &[("x-request-id", "globex")]).await;
    assert_eq!(r.status, 200, "a key from the file, in the query");
    assert_eq!(log.of("globex").await["consumer"], "globex");

    let r = get(
        "/x",
        &[("x-api-key", "acme-key-2"), ("x-request-id", "wrong")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthenticated");
    assert_eq!(r.json()["requestId"], "wrong");
    assert!(r.header("www-authenticate").is_none());
    let line = log.of("wrong").await;
    assert_eq!(line["reason"], "unknown_api_key");
    assert!(
        !log.text().contains("acme-key-2"),
        "the key reached the log"
    );
    let r = get("/x", &[("x-request-id", "none")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(log.of("none").await["reason"], "missing_credentials");

    // A new key in the file works once the file is read again.
    let file = gw.dir.path().join("keys.txt");
    let tmp = gw.dir.path().join("keys.tmp");
    std::fs::write(
        &tmp,
        format!(
            "globex {}\ninitech {}\n",
            sha256("globex-key-1"),
            sha256("initech-key")
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_for("the new key file to be read", || async {
        get("/x", &[("x-api-key", "initech-key")]).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_keyed_by_consumer_gives_each_consumer_its_bucket() {
    let (gw, _log, _up) = start().await;
    let url = format!("{}/limited", gw.url("web").await);
    let c = Client::new();
    let mut acme = Vec::new();
    for _ in 0..4 {
        acme.push(
            c.get(&url, &[("x-api-key", "acme-key-1")])
                .await
                .unwrap()
                .status
                .as_u16(),
        );
    }
    assert_eq!(acme, [200, 200, 429, 429]);
    let globex = c.get(&url, &[("x-api-key", "globex-key-1")]).await.unwrap();
    assert_eq!(globex.status, 200, "another consumer has its own bucket");
    let anonymous = c.get(&url, &[]).await.unwrap();
    assert_eq!(anonymous.status, 401, "auth runs before the limit");
}

#[tokio::test]
async fn any_of_accepts_either_credential() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = Log(dir.path().join("access.log"));
    let secret = "0123456789abcdef0123456789abcdef";
    let routes = r#"
kind: Policy
metadata: {name: either}
spec:
  jwt: {secret: {value: "SECRET"}, forwardClaims: {sub: x-user-id}}
  apiKey: {keys: [{consumer: acme, sha256: "ACME"}]}
  anyOf: [jwt, apiKey]
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
      policies: [either]
"#
    .replace("SECRET", secret)
    .replace("ACME", &sha256("acme-key-1"));
    let gw = TestGateway::start_in(dir, &config(&log.0, up.addr, &routes)).await;
    let url = format!("{}/x", gw.url("web").await);
    let c = Client::new();
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let tok = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": now() + 60}),
        &key,
    )
    .unwrap();
    let bearer = format!("Bearer {tok}");
    let r = c.get(&url, &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-user-id"], "alice");
    let r = c
        .get(
            &url,
            &[("x-api-key", "acme-key-1"), ("x-user-id", "mallory")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("x-user-id").is_none(),
        "stripped whichever passed"
    );
    let r = c
        .get(&url, &[("x-api-key", "nope"), ("x-request-id", "neither")])
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"gatehouse\"")
    );
    assert_eq!(log.of("neither").await["reason"], "unknown_api_key");
}
