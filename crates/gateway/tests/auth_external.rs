//! `externalAuth` against a separate real auth process (a Python `http.server`): a 2xx lets the
//! request through with the fields the service vouches for, any other answer reaches the client
//! as the service gave it, a slow, failing or absent service is decided by `failureMode`, and
//! decisions are cached per credential — counted by the service's own hit counter.

use gatehouse_testkit::{Client, PythonPeer, TestGateway, Upstream};

/// The auth service. `Bearer good`: 200 with `x-user: alice`; `Bearer slow`: 200 after 3 s;
/// `Bearer broken`: 500; anything else: 401 with its own challenge and JSON body. Every
/// question is counted and the last one kept: `GET /__stats` (not counted) reports them.
const AUTH_SERVICE: &str = r#"
import http.server, json, sys, threading, time

hits = 0
last = {}
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        global hits, last
        if self.path == "/__stats":
            body = json.dumps({"hits": hits, "last": last}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with lock:
            hits += 1
            last = {"method": self.command, "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()}}
        auth = self.headers.get("authorization", "")
        if auth == "Bearer slow":
            time.sleep(3)
        if auth in ("Bearer good", "Bearer slow"):
            self.send_response(200)
            self.send_header("x-user", "alice")
            self.send_header("x-internal", "not listed")
            self.send_header("content-length", "0")
            self.end_headers()
        elif auth == "Bearer broken":
            self.send_response(500)
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            body = b'{"denied": "by the auth service"}'
            self.send_response(401)
            self.send_header("www-authenticate", 'Bearer realm="test"')
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *a):
        pass

class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
threading.Thread(target=s.serve_forever, daemon=True).start()
sys.stdin.read()
"#;

/// A Gateway, the `web` listener and the `app` Backend at `backend`, then `documents`, with
/// `AUTH_PORT` in them standing for the auth service's port.
fn with_app(backend: std::net::SocketAddr, auth_port: u16, documents: &str) -> String {
    format!(
        r#"
kind: Gateway
metadata: {{name: g}}
spec: {{accessLog: {{enabled: false}}}}
---
kind: Listener
metadata: {{name: web}}
spec: {{address: "127.0.0.1:0", protocol: HTTP}}
---
kind: Backend
metadata: {{name: app}}
spec: {{endpoints: ["{backend}"]}}
---
{documents}"#
    )
    .replace("AUTH_PORT", &auth_port.to_string())
}

/// Routes `/strict` (failureMode Deny, cached) and `/lenient` (failureMode Allow, not cached)
/// to `backend`, both asking the service on `auth_port`.
fn config(backend: std::net::SocketAddr, auth_port: u16) -> String {
    with_app(
        backend,
        auth_port,
        r#"
kind: Policy
metadata: {name: strict}
spec:
  externalAuth:
    url: "http://127.0.0.1:AUTH_PORT/check"
    timeout: 300ms
    headers: [authorization]
    upstreamHeaders: [x-user]
    cache: {ttl: 1h, maxEntries: 100}
---
kind: Policy
metadata: {name: lenient}
spec:
  externalAuth:
    url: "http://127.0.0.1:AUTH_PORT/check"
    timeout: 300ms
    upstreamHeaders: [x-user]
    failureMode: Allow
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /strict}}
      backends: [{backend: app}]
      policies: [strict]
    - match: {path: {prefix: /lenient}}
      backends: [{backend: app}]
      policies: [lenient]
"#,
    )
}

struct Setup {
    _auth: PythonPeer,
    stats_url: String,
    up: Upstream,
    gw: TestGateway,
    url: String,
    c: Client,
}

async fn setup() -> Setup {
    let auth = PythonPeer::start(AUTH_SERVICE);
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(up.addr, auth.port)).await;
    let url = gw.url("web").await;
    Setup {
        stats_url: format!("http://127.0.0.1:{}/__stats", auth.port),
        _auth: auth,
        up,
        gw,
        url,
        c: Client::new(),
    }
}

impl Setup {
    async fn get(&self, path: &str, auth: &str) -> gatehouse_testkit::client::Reply {
        let mut h = vec![("x-user", "mallory")];
        if !auth.is_empty() {
            h.push(("authorization", auth));
        }
        (self.c.get(&format!("{}{path}", self.url), &h).await).expect("the gateway answers")
    }

    async fn stats(&self) -> serde_json::Value {
        self.c
            .get(&self.stats_url, &[])
            .await
            .expect("stats")
            .json()
    }
}

#[tokio::test]
async fn the_service_allows_with_its_fields_and_its_refusals_reach_the_client() {
    let s = setup().await;
    let r = s.get("/strict/%61/./x?q=1", "Bearer good").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-user"], "alice",
        "the service's field, not the client's: {h}"
    );
    assert!(
        h.get("x-internal").is_none(),
        "only upstreamHeaders pass: {h}"
    );
    // What the service was asked: the method, the normalised target, the listed field.
    let last = &s.stats().await["last"];
    assert_eq!(last["method"], "GET");
    assert_eq!(last["path"], "/check");
    assert_eq!(last["headers"]["x-forwarded-uri"], "/strict/a/x?q=1");
    assert_eq!(last["headers"]["x-forwarded-method"], "GET");
    assert_eq!(last["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(last["headers"]["authorization"], "Bearer good");
    assert!(
        last["headers"].get("x-user").is_none(),
        "unlisted fields stay: {last}"
    );

    let before = s.up.requests();
    let r = s.get("/strict/x", "Bearer bad").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"test\""));
    assert_eq!(r.text(), r#"{"denied": "by the auth service"}"#);
    assert!(r.header("x-request-id").is_some());
    let r = s.get("/strict/x", "").await;
    assert_eq!(r.status, 401, "no credential is the service's call too");
    assert_eq!(
        s.up.requests(),
        before,
        "a refused request never reaches the backend"
    );
}

#[tokio::test]
async fn a_slow_failing_or_absent_service_is_decided_by_failure_mode() {
    let s = setup().await;
    for auth in ["Bearer slow", "Bearer broken"] {
        let t = std::time::Instant::now();
        let r = s.get("/strict/x", auth).await;
        assert_eq!(r.status, 403, "{auth}: {}", r.text());
        assert_eq!(r.json()["error"], "forbidden", "{auth}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{auth}: the timeout holds"
        );
        let r = s.get("/lenient/x", auth).await;
        assert_eq!(r.status, 200, "{auth}: failureMode Allow lets it through");
        let h = &r.json()["headers"];
        assert!(
            h.get("x-user").is_none(),
            "{auth}: no vouched field, and the client's copy is gone: {h}"
        );
    }
    // Failures are not cached: the next good answer counts.
    assert_eq!(s.get("/strict/x", "Bearer good").await.status, 200);
    // No service at all: the gateway answers at once, as configured.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    s.gw.write(&config(s.up.addr, port));
    let admin = format!("http://{}/reload", s.gw.admin);
    let reload = http::Request::post(admin)
        .body(Default::default())
        .expect("request");
    assert_eq!(s.c.send(reload).await.expect("reload").status, 200);
    assert_eq!(s.get("/strict/other", "Bearer other").await.status, 403);
    assert_eq!(s.get("/lenient/x", "Bearer other").await.status, 200);
}

#[tokio::test]
async fn decisions_are_cached_per_credential_and_survive_a_reload() {
    let s = setup().await;
    for _ in 0..5 {
        assert_eq!(s.get("/strict/x", "Bearer good").await.status, 200);
    }
    assert_eq!(s.stats().await["hits"], 1, "one question for five requests");
    for _ in 0..3 {
        assert_eq!(s.get("/strict/y", "Bearer bad").await.status, 401);
    }
    assert_eq!(s.stats().await["hits"], 2, "refusals are cached too");
    // A cached pass still sets the vouched field and strips the client's.
    let r = s.get("/strict/z", "Bearer good").await;
    assert_eq!(r.json()["headers"]["x-user"], "alice");
    // The route without a cache asks every time.
    for _ in 0..3 {
        assert_eq!(s.get("/lenient/x", "Bearer good").await.status, 200);
    }
    assert_eq!(s.stats().await["hits"], 5);
    // A reload that keeps the policy keeps its decisions.
    s.gw.write(&(config(s.up.addr, s._auth.port) + "\n---\nkind: Backend\nmetadata: {name: extra}\nspec: {endpoints: [\"127.0.0.1:9\"]}\n"));
    let admin = format!("http://{}/reload", s.gw.admin);
    let reload = http::Request::post(admin)
        .body(Default::default())
        .expect("request");
    assert_eq!(s.c.send(reload).await.expect("reload").status, 200);
    assert_eq!(s.get("/strict/x", "Bearer good").await.status, 200);
    assert_eq!(s.stats().await["hits"], 5, "the cache outlived the reload");
}

/// An auth service that decides by the body: 200 when it contains `approve`, else 403 with its
/// own body. It counts questions and keeps the last body it was sent and the partial-body mark.
const BODY_SERVICE: &str = r#"
import http.server, json, sys, threading

hits = 0
last = {}
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        global hits, last
        if self.path == "/__stats":
            body = json.dumps({"hits": hits, "last": last}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        n = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(n)
        with lock:
            hits += 1
            last = {"body": body.decode("latin-1"), "length": n,
                    "partial": self.headers.get("x-gatehouse-partial-body"),
                    "chunked": self.headers.get("transfer-encoding")}
        if b"approve" in body:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            msg = b"not approved"
            self.send_response(403)
            self.send_header("content-length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
    do_GET = do_POST = do_PUT = answer
    def log_message(self, *a):
        pass

class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
threading.Thread(target=s.serve_forever, daemon=True).start()
sys.stdin.read()
"#;

/// `/whole` sends bodies up to 64 bytes (longer: 413), `/partial` the first 64 bytes of any
/// body, `/cached` caches decisions keyed by credential and body.
fn body_config(backend: std::net::SocketAddr, auth_port: u16) -> String {
    with_app(
        backend,
        auth_port,
        r#"
kind: Policy
metadata: {name: whole}
spec:
  externalAuth:
    url: "http://127.0.0.1:AUTH_PORT/check"
    timeout: 5s
    body: {maxSize: 64}
---
kind: Policy
metadata: {name: partial}
spec:
  externalAuth:
    url: "http://127.0.0.1:AUTH_PORT/check"
    timeout: 5s
    body: {maxSize: 64, allowPartial: true}
---
kind: Policy
metadata: {name: cached}
spec:
  externalAuth:
    url: "http://127.0.0.1:AUTH_PORT/check"
    timeout: 5s
    body: {maxSize: 1KiB}
    cache: {ttl: 1h}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /whole}}
      backends: [{backend: app}]
      policies: [whole]
    - match: {path: {prefix: /partial}}
      backends: [{backend: app}]
      policies: [partial]
    - match: {path: {prefix: /cached}}
      backends: [{backend: app}]
      policies: [cached]
"#,
    )
}

struct BodySetup {
    auth: PythonPeer,
    up: Upstream,
    _gw: TestGateway,
    url: String,
    c: Client,
}

async fn body_setup() -> BodySetup {
    let auth = PythonPeer::start(BODY_SERVICE);
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&body_config(up.addr, auth.port)).await;
    let url = gw.url("web").await;
    BodySetup {
        auth,
        up,
        _gw: gw,
        url,
        c: Client::new(),
    }
}

impl BodySetup {
    async fn post(&self, path: &str, body: &[u8]) -> gatehouse_testkit::client::Reply {
        let req = http::Request::post(format!("{}{path}", self.url))
            .header("authorization", "Bearer same")
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                body,
            )))
            .expect("request");
        self.c.send(req).await.expect("the gateway answers")
    }

    async fn stats(&self) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/__stats", self.auth.port);
        self.c.get(&url, &[]).await.expect("stats").json()
    }
}

/// `body`, as the upstream echo reports it: its size and FNV-64.
fn echoed(r: &gatehouse_testkit::client::Reply) -> (u64, String) {
    let j = r.json();
    let size = j["bodyBytes"].as_u64().expect("bodyBytes");
    (size, j["bodyHash"].as_str().expect("bodyHash").to_string())
}

fn sent(body: &[u8]) -> (u64, String) {
    (body.len() as u64, gatehouse_testkit::fnv64(body))
}

#[tokio::test]
async fn the_service_decides_by_the_body_and_the_backend_still_gets_it_whole() {
    let s = body_setup().await;
    let body = br#"{"order": 7, "approve": true}"#;
    let r = s.post("/whole", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        echoed(&r),
        sent(body),
        "the body reached the backend intact"
    );
    let last = &s.stats().await["last"];
    assert_eq!(last["body"], std::str::from_utf8(body).expect("utf-8"));
    assert!(last["partial"].is_null(), "a whole body is not marked");

    let before = s.up.requests();
    let r = s.post("/whole", br#"{"order": 8}"#).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (403, "not approved")
    );
    assert_eq!(
        s.up.requests(),
        before,
        "refused by its body: never forwarded"
    );

    // A chunked body arriving in several pieces is read ahead across them and replayed whole.
    let pieces: [&[u8]; 3] = [b"{\"chunked\": ", b"\"yes\", \"appr", b"ove\": 1}"];
    let whole: Vec<u8> = pieces.concat();
    let mut raw = b"POST /whole HTTP/1.1\r\nhost: x\r\nauthorization: Bearer same\r\n\
        transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec();
    for p in pieces {
        raw.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        raw.extend_from_slice(p);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&s.url, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = answer.split("\r\n\r\n").nth(1).expect("a body");
    let hash = gatehouse_testkit::fnv64(&whole);
    assert!(
        json.contains(&hash),
        "the backend got the whole body: {answer}"
    );
    assert_eq!(
        s.stats().await["last"]["body"],
        std::str::from_utf8(&whole).expect("utf-8")
    );
}

/// Sends `raw` on a new connection to the gateway at `url` and reads until it closes.
async fn raw_exchange(url: &str, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let read = tcp.read_to_end(&mut out);
    (tokio::time::timeout(std::time::Duration::from_secs(10), read).await)
        .expect("the gateway answers and closes")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_longer_body_is_refused_unless_a_partial_one_may_be_sent() {
    let s = body_setup().await;
    let mut long = b"approve ".to_vec();
    long.resize(10_000, b'x');
    let r = s.post("/whole", &long).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    assert_eq!(s.stats().await["hits"], 0, "the service is not asked");

    let r = s.post("/partial", &long).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echoed(&r), sent(&long), "the backend got all 10,000 bytes");
    let last = &s.stats().await["last"];
    assert_eq!(last["length"], 64, "the service got the first 64 bytes");
    assert_eq!(
        last["body"],
        std::str::from_utf8(&long[..64]).expect("utf-8")
    );
    assert_eq!(last["partial"], "true", "and was told they are a part");
    // Exactly the limit is a whole body.
    let r = s.post("/partial", &long[..64]).await;
    assert_eq!(r.status, 200);
    assert!(s.stats().await["last"]["partial"].is_null());
}

#[tokio::test]
async fn cached_decisions_are_keyed_by_the_body_too() {
    let s = body_setup().await;
    assert_eq!(s.post("/cached", b"approve 1").await.status, 200);
    assert_eq!(s.post("/cached", b"approve 1").await.status, 200);
    assert_eq!(
        s.stats().await["hits"],
        1,
        "the same credential and body: cached"
    );
    // The same credential with another body is another question.
    assert_eq!(s.post("/cached", b"deny 1").await.status, 403);
    assert_eq!(s.post("/cached", b"deny 1").await.status, 403);
    assert_eq!(s.stats().await["hits"], 2);
    let r = s.post("/cached", b"approve 1").await;
    assert_eq!((r.status.as_u16(), echoed(&r)), (200, sent(b"approve 1")));
    assert_eq!(s.stats().await["hits"], 2);
}

/// `/either`: an API key or, when it does not pass, the auth service (`anyOf`).
fn any_of_config(backend: std::net::SocketAddr, auth_port: u16) -> String {
    with_app(
        backend,
        auth_port,
        r#"
kind: Policy
metadata: {name: either}
spec:
  apiKey:
    keys: [{consumer: acme, sha256: "be2974546978e3739e6d6da85c4be9f334ce32df2b9fd4b6ff1b55c0d57e9d44"}]
  externalAuth:
    url: "http://127.0.0.1:AUTH_PORT/check"
    timeout: 5s
    upstreamHeaders: [x-user]
  anyOf: [externalAuth, apiKey]
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /either}}
      backends: [{backend: app}]
      policies: [either]
"#,
    )
}

#[tokio::test]
async fn in_any_of_the_service_is_asked_only_when_the_cheaper_alternative_did_not_pass() {
    let auth = PythonPeer::start(AUTH_SERVICE);
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&any_of_config(up.addr, auth.port)).await;
    let url = format!("{}/either", gw.url("web").await);
    let c = Client::new();
    let stats = format!("http://127.0.0.1:{}/__stats", auth.port);
    let hits = || async { c.get(&stats, &[]).await.expect("stats").json()["hits"].clone() };
    let get = |h: &'static [(&'static str, &'static str)]| {
        let (c, url) = (&c, &url);
        async move { c.get(url, h).await.expect("the gateway answers") }
    };

    // The key passes: the service is not asked, even with a credential it would look at.
    let r = get(&[
        ("x-api-key", "key-1"),
        ("authorization", "Bearer good"),
        ("x-user", "mallory"),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(hits().await, 0, "a passing key spares the auth service");
    let h = &r.json()["headers"];
    assert!(
        h.get("x-user").is_none(),
        "a vouched field is never the client's: {h}"
    );

    // No key, or a wrong one: the service decides, and its fields reach the backend.
    for h in [
        &[("authorization", "Bearer good"), ("x-user", "mallory")][..],
        &[("x-api-key", "wrong"), ("authorization", "Bearer good")][..],
    ] {
        let r = get(h).await;
        assert_eq!(r.status, 200, "{h:?}: {}", r.text());
        assert_eq!(r.json()["headers"]["x-user"], "alice", "{h:?}");
    }
    assert_eq!(hits().await, 2);

    // Neither passes: one 401 for the policy, never forwarded.
    let before = up.requests();
    let r = get(&[("authorization", "Bearer bad")]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "unauthenticated");
    assert_eq!(up.requests(), before);
    assert_eq!(hits().await, 3);
}
