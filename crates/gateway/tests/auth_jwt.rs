//! JWT policies over real sockets, with keys served by a real JWKS server (a Python process):
//! the table of hostile tokens — forged, expired, not yet valid, wrong issuer, wrong audience,
//! `alg: none`, HS/RS confusion, an embedded key, an unknown `kid` — each answered 401 with its
//! reason in the access log (and never the token), valid RS256/PS256/ES256/EdDSA tokens let
//! through with their claims forwarded (a client's own copy stripped), scopes answered 403, a
//! token from a cookie or the query; key rotation picked up on an unknown `kid` at most once per
//! interval and the keys kept when the server breaks; an inline HMAC secret; a JWKS served over
//! HTTPS by a server whose certificate a private CA signed (`caFile`), and refused without it.

mod auth_common;
mod tls_common;

use auth_common::*;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};
use jsonwebtoken::Algorithm;
use serde_json::json;

/// Policy `jwt` on rule `/api`; `JWKS` is replaced by the JWKS block.
const ROUTES: &str = r#"
kind: Policy
metadata: {name: jwt}
spec:
  jwt:
    issuer: https://issuer.test/
    audiences: [tasks]
    jwks: JWKS
    from: [{header: authorization, prefix: "Bearer "}, {cookie: session}, {query: access_token}]
    forwardClaims: {sub: x-user-id}
    requiredScopes: [tasks.read]
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /api}}
      backends: [{backend: up}]
      policies: [jwt]
"#;

struct Setup {
    gw: TestGateway,
    log: Log,
    jwks: JwksServer,
    _up: Upstream,
    keys: tempfile::TempDir,
}

async fn setup(jwks_block: &str, doc: impl FnOnce(&std::path::Path) -> String) -> Setup {
    let keys = tempfile::tempdir().unwrap();
    let jwks = JwksServer::start(keys.path(), &doc(keys.path()));
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = Log(dir.path().join("access.log"));
    let block = jwks_block.replace("URL", &jwks.url());
    let yaml = config(&log.0, up.addr, &ROUTES.replace("JWKS", &block));
    let gw = TestGateway::start_in(dir, &yaml).await;
    Setup {
        gw,
        log,
        jwks,
        _up: up,
        keys,
    }
}

async fn get(s: &Setup, path: &str, headers: &[(&str, &str)]) -> gatehouse_testkit::client::Reply {
    let url = format!("{}{path}", s.gw.url("web").await);
    Client::new().get(&url, headers).await.unwrap()
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_their_reason_and_valid_ones_pass() {
    let mut good = None;
    let s = setup("{url: \"URL\"}", |dir| {
        let k = rsa_key(dir, "k1", Algorithm::RS256);
        let doc = jwks(&[&k]);
        good = Some(k);
        doc
    })
    .await;
    let good = good.unwrap();
    let attacker = rsa_key(s.keys.path(), "k1", Algorithm::RS256);
    let other_kid = rsa_key(s.keys.path(), "k9", Algorithm::RS256);
    let valid = claims(json!({}));

    // HS256 signed with the RSA public key as the HMAC secret, naming the RSA key's kid.
    let mut hs = jsonwebtoken::Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &valid,
        &jsonwebtoken::EncodingKey::from_secret(&good.public_pem),
    )
    .unwrap();
    // A token carrying its own key in the header, signed by that key.
    let mut embedded = jsonwebtoken::Header::new(Algorithm::RS256);
    embedded.kid = Some("k1".into());
    embedded.jwk = serde_json::from_value(attacker.jwk.clone()).ok();
    let embedded = jsonwebtoken::encode(&embedded, &valid, &attacker.encoding).unwrap();

    let table: Vec<(&str, String, &str)> = vec![
        ("forged", token(&attacker, &valid), "bad_signature"),
        (
            "expired",
            token(&good, &claims(json!({"exp": now() - 3600}))),
            "expired",
        ),
        (
            "not-yet-valid",
            token(&good, &claims(json!({"nbf": now() + 3600}))),
            "not_yet_valid",
        ),
        (
            "wrong-issuer",
            token(&good, &claims(json!({"iss": "https://evil.test/"}))),
            "wrong_issuer",
        ),
        (
            "wrong-audience",
            token(&good, &claims(json!({"aud": "billing"}))),
            "wrong_audience",
        ),
        ("alg-none", unsigned("k1", &valid), "alg_none"),
        ("hs-rs-confusion", confused, "algorithm_not_allowed"),
        ("embedded-jwk", embedded, "embedded_key"),
        ("unknown-kid", token(&other_kid, &valid), "unknown_key"),
        ("garbage", "not.a.token".to_string(), "malformed_token"),
        (
            "no-exp",
            token(
                &good,
                &json!({"sub": "alice", "iss": "https://issuer.test/", "aud": "tasks", "scope": "tasks.read"}),
            ),
            "missing_claim",
        ),
    ];
    for (case, tok, reason) in &table {
        let bearer = format!("Bearer {tok}");
        let r = get(
            &s,
            "/api/x",
            &[("authorization", &bearer), ("x-request-id", case)],
        )
        .await;
        assert_eq!(r.status, 401, "{case}: {}", r.text());
        assert_eq!(r.json()["error"], "unauthenticated", "{case}");
        assert_eq!(r.json()["requestId"], *case);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"gatehouse\""),
            "{case}"
        );
        let line = s.log.of(case).await;
        assert_eq!(line["reason"], *reason, "{case}: {line}");
        assert_eq!(line["status"], 401);
    }
    let log = s.log.text();
    for (case, tok, _) in &table {
        let signature = tok.rsplit('.').next().unwrap_or("");
        assert!(
            signature.len() < 8 || !log.contains(signature),
            "{case}: the token reached the access log"
        );
    }

    let none = get(&s, "/api/x", &[("x-request-id", "none")]).await;
    assert_eq!(none.status, 401);
    assert_eq!(s.log.of("none").await["reason"], "missing_credentials");

    let tok = token(&good, &valid);
    let bearer = format!("bearer {tok}");
    let ok = get(
        &s,
        "/api/x",
        &[
            ("authorization", &bearer),
            ("x-user-id", "mallory"),
            ("x-request-id", "ok"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.json()["headers"]["x-user-id"],
        "alice",
        "the claim replaces the client's copy"
    );
    let line = s.log.of("ok").await;
    assert_eq!(line["subject"], "alice");
    assert!(line.get("reason").is_none());

    let cookie = format!("theme=dark; session={tok}");
    assert_eq!(get(&s, "/api/c", &[("cookie", &cookie)]).await.status, 200);
    assert_eq!(
        get(&s, &format!("/api/q?access_token={tok}"), &[])
            .await
            .status,
        200
    );

    let narrow = token(&good, &claims(json!({"scope": "tasks.write"})));
    let bearer = format!("Bearer {narrow}");
    let r = get(
        &s,
        "/api/x",
        &[("authorization", &bearer), ("x-request-id", "scope")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(s.log.of("scope").await["reason"], "missing_scope");

    // No claim: the client's copy is stripped all the same.
    let bare = token(&good, &claims(json!({"sub": null})));
    let bearer = format!("Bearer {bare}");
    let r = get(
        &s,
        "/api/x",
        &[("authorization", &bearer), ("x-user-id", "mallory")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("x-user-id").is_none(),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn every_asymmetric_algorithm_verifies_with_a_key_of_its_kind() {
    let mut keys = Vec::new();
    let s = setup("{url: \"URL\"}", |dir| {
        keys = vec![
            rsa_key(dir, "rs", Algorithm::RS256),
            rsa_key(dir, "ps", Algorithm::PS384),
            ec_key("es"),
            ed_key("ed"),
        ];
        jwks(&keys.iter().collect::<Vec<_>>())
    })
    .await;
    for k in &keys {
        let bearer = format!("Bearer {}", token(k, &claims(json!({}))));
        let r = get(&s, "/api/x", &[("authorization", &bearer)]).await;
        assert_eq!(r.status, 200, "{:?}: {}", k.alg, r.text());
    }
    // The EC key with the RSA key's kid and alg: the kid's key cannot verify ES256.
    let mut wrong = ec_key("rs");
    wrong.alg = Algorithm::ES256;
    let bearer = format!("Bearer {}", token(&wrong, &claims(json!({}))));
    let r = get(
        &s,
        "/api/x",
        &[("authorization", &bearer), ("x-request-id", "mismatch")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(s.log.of("mismatch").await["reason"], "algorithm_mismatch");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_per_interval_and_kept_when_the_server_breaks() {
    let mut first = None;
    // An interval of seconds: the twenty requests of the burst below must all arrive within one,
    // however slowly a loaded machine starts them (with 300 ms, a second fetch was possible).
    let block = "{url: \"URL\", minRefreshInterval: 2s, refreshInterval: 1h}";
    let s = setup(block, |dir| {
        let k = rsa_key(dir, "old", Algorithm::RS256);
        let doc = jwks(&[&k]);
        first = Some(k);
        doc
    })
    .await;
    let old = first.unwrap();
    let old_bearer = format!("Bearer {}", token(&old, &claims(json!({}))));
    assert_eq!(
        get(&s, "/api/x", &[("authorization", &old_bearer)])
            .await
            .status,
        200
    );
    let after_start = s.jwks.hits().await;
    assert_eq!(after_start, 1, "one fetch at start");

    let new = rsa_key(s.keys.path(), "new", Algorithm::RS256);
    let new_bearer = format!("Bearer {}", token(&new, &claims(json!({}))));
    // Twenty tokens with an unknown kid at once: at most one fetch for all of them.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = format!("{}/api/x", s.gw.url("web").await);
        let b = new_bearer.clone();
        tasks.push(tokio::spawn(async move {
            Client::new()
                .get(&url, &[("authorization", &b)])
                .await
                .unwrap()
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let after_burst = s.jwks.hits().await;
    assert!(after_burst - after_start <= 1, "{after_burst} fetches");

    s.jwks.serve(&jwks(&[&old, &new]));
    wait_for("the rotated key to be fetched", || async {
        get(&s, "/api/x", &[("authorization", &new_bearer)])
            .await
            .status
            == 200
    })
    .await;

    // The server now answers garbage: a refresh (forced by an unknown kid) fails and the keys
    // in use stay.
    s.jwks.serve("not json");
    let before = s.jwks.hits().await;
    let stranger = rsa_key(s.keys.path(), "stranger", Algorithm::RS256);
    let stranger_bearer = format!("Bearer {}", token(&stranger, &claims(json!({}))));
    wait_for("a refresh against the broken server", || async {
        let _ = get(&s, "/api/x", &[("authorization", &stranger_bearer)]).await;
        s.jwks.hits().await > before
    })
    .await;
    assert_eq!(
        get(&s, "/api/x", &[("authorization", &old_bearer)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&s, "/api/x", &[("authorization", &new_bearer)])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_inline_secret_verifies_hs256_and_nothing_else() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = Log(dir.path().join("access.log"));
    let secret = "0123456789abcdef0123456789abcdef";
    let routes = r#"
kind: Policy
metadata: {name: jwt}
spec:
  jwt: {secret: {value: "SECRET"}, leeway: 0s}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
      policies: [jwt]
"#
    .replace("SECRET", secret);
    let gw = TestGateway::start_in(dir, &config(&log.0, up.addr, &routes)).await;
    let url = format!("{}/x", gw.url("web").await);
    let c = json!({"sub": "svc", "exp": now() + 60});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let good =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &c, &key).unwrap();
    let r = Client::new()
        .get(&url, &[("authorization", &format!("Bearer {good}"))])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let bad_key = jsonwebtoken::EncodingKey::from_secret(b"another secret another secret 12");
    let bad =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS512), &c, &bad_key).unwrap();
    let r = Client::new()
        .get(
            &url,
            &[
                ("authorization", &format!("Bearer {bad}")),
                ("x-request-id", "hs"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(log.of("hs").await["reason"], "bad_signature");
}

#[tokio::test]
async fn a_remembered_token_stops_passing_when_its_key_leaves_the_file_or_it_expires() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = Log(dir.path().join("access.log"));
    let a = rsa_key(dir.path(), "a", Algorithm::RS256);
    let b = ec_key("b");
    // Outside the config directory, where every JSON file is read as manifests.
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&a])).unwrap();
    let routes = r#"
kind: Policy
metadata: {name: jwt}
spec:
  jwt: {jwks: {file: "FILE"}, leeway: 0s}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: up}]
      policies: [jwt]
"#
    .replace("FILE", &file.display().to_string());
    let gw = TestGateway::start_in(dir, &config(&log.0, up.addr, &routes)).await;
    let url = format!("{}/x", gw.url("web").await);
    let c = Client::new();
    let status = |tok: String| {
        let (c, url) = (&c, &url);
        async move {
            let bearer = format!("Bearer {tok}");
            c.get(url, &[("authorization", &bearer)])
                .await
                .unwrap()
                .status
        }
    };
    let token_a = token(&a, &json!({"sub": "alice", "exp": now() + 3600}));
    for _ in 0..3 {
        assert_eq!(status(token_a.clone()).await, 200);
    }
    let token_b = token(&b, &json!({"sub": "bob", "exp": now() + 3600}));
    assert_eq!(status(token_b.clone()).await, 401);

    let tmp = keys.path().join("jwks.tmp");
    std::fs::write(&tmp, jwks(&[&b])).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    wait_for("the new key file", || async {
        status(token_b.clone()).await == 200
    })
    .await;
    assert_eq!(
        status(token_a.clone()).await,
        401,
        "the removed key's token is forgotten"
    );

    let short = token(&b, &json!({"sub": "bob", "exp": now() + 2}));
    assert_eq!(status(short.clone()).await, 200);
    wait_for("the short token to expire", || async {
        status(short.clone()).await == 401
    })
    .await;
}

/// A JWKS over HTTPS: Python's `ssl` around the same kind of server, serving `dir/jwks.json`
/// with `dir/server.pem` (signed by the test's private CA).
const HTTPS_JWKS_SERVER: &str = r#"
import http.server, ssl, sys, threading
DIR = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(DIR + "/jwks.json", "rb").read()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(DIR + "/server.pem", DIR + "/server-key.pem")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
threading.Thread(target=s.serve_forever, daemon=True).start()
sys.stdin.read()
"#;

#[tokio::test]
async fn a_jwks_over_https_is_trusted_through_its_ca_file_and_refused_without_it() {
    let keys = tempfile::tempdir().unwrap();
    let ca = tls_common::Ca::new("JWKS Test CA");
    ca.server(&["127.0.0.1"]).write(keys.path(), "server");
    tls_common::write_atomic(keys.path(), "ca.pem", &ca.pem);
    let key = rsa_key(keys.path(), "rs", Algorithm::RS256);
    std::fs::write(keys.path().join("jwks.json"), jwks(&[&key])).unwrap();
    let dir_literal = format!("{:?}", keys.path().display().to_string());
    let server = gatehouse_testkit::PythonPeer::start(
        &HTTPS_JWKS_SERVER.replace("sys.argv[1]", &dir_literal),
    );
    let url = format!("https://127.0.0.1:{}/jwks.json", server.port);
    let ca_file = keys.path().join("ca.pem").display().to_string();
    // `/api` trusts the private CA; `/system` only the system's roots, which do not hold it.
    let routes = ROUTES.replace(
        "JWKS",
        &format!("{{url: \"{url}\", caFile: \"{ca_file}\"}}"),
    ) + &format!(
        r#"
---
kind: Policy
metadata: {{name: system-roots}}
spec:
  jwt:
    issuer: https://issuer.test/
    audiences: [tasks]
    jwks: {{url: "{url}"}}
---
kind: Route
metadata: {{name: system}}
spec:
  rules:
    - match: {{path: {{prefix: /system}}}}
      backends: [{{backend: up}}]
      policies: [system-roots]
"#
    );
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = Log(dir.path().join("access.log"));
    let gw = TestGateway::start_in(dir, &config(&log.0, up.addr, &routes)).await;
    let base = gw.url("web").await;
    let bearer = format!("Bearer {}", token(&key, &claims(json!({}))));
    let c = Client::new();
    let r = c
        .get(&format!("{base}/api/x"), &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the key came over HTTPS: {}", r.text());
    let r = c
        .get(
            &format!("{base}/system/x"),
            &[("authorization", &bearer), ("x-request-id", "untrusted")],
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        401,
        "an untrusted server gives no keys: {}",
        r.text()
    );
    assert_eq!(log.of("untrusted").await["reason"], "unknown_key");
}
