//! Shared by the `auth_*` tests: keys made at run time (RSA by `openssl`, EC and Ed25519 by
//! rcgen), their JWKs, tokens signed with them, a JWKS server (a Python process that serves a file
//! and counts its hits), and the access log read back. Not every test file uses every helper.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use gatehouse_testkit::{wait_for, PythonPeer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A signing key and its public JWK.
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub jwk: Value,
    pub alg: Algorithm,
    /// PEM of the public key (RSA only: what an HS/RS confusion attack signs with).
    pub public_pem: Vec<u8>,
}

/// A 2048-bit RSA key made by `openssl` in `dir`.
pub fn rsa_key(dir: &Path, kid: &str, alg: Algorithm) -> SigningKey {
    let key = dir.join(format!("{kid}.pem"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(ok.status.success(), "{ok:?}");
    let modulus = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8(modulus.stdout).expect("utf-8");
    let hex = text.trim().strip_prefix("Modulus=").expect("modulus");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    let pem = std::fs::read(&key).expect("key");
    SigningKey {
        encoding: EncodingKey::from_rsa_pem(&pem).expect("rsa pem"),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": B64.encode(n), "e": "AQAB"}),
        alg,
        public_pem: public.stdout,
    }
}

/// A P-256 key (ES256).
pub fn ec_key(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let raw = kp.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed point");
    SigningKey {
        encoding: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("ec pem"),
        jwk: json!({"kty": "EC", "kid": kid, "crv": "P-256",
                    "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..])}),
        alg: Algorithm::ES256,
        public_pem: Vec::new(),
    }
}

/// An Ed25519 key (EdDSA).
pub fn ed_key(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed key");
    SigningKey {
        encoding: EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).expect("ed pem"),
        jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": B64.encode(kp.public_key_raw())}),
        alg: Algorithm::EdDSA,
        public_pem: Vec::new(),
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Claims valid for an hour: `sub`, `iss`, `aud`, then `extra` merged in.
pub fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "alice", "iss": "https://issuer.test/", "aud": "tasks",
                       "exp": now() + 3600, "iat": now(), "scope": "tasks.read tasks.write"});
    if let (Some(map), Value::Object(more)) = (c.as_object_mut(), extra) {
        for (k, v) in more {
            map.insert(k, v);
        }
    }
    c
}

/// A token of `claims` signed by `key`, its `kid` in the header.
pub fn token(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = key.jwk["kid"].as_str().map(String::from);
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

/// An unsigned token: `alg: none`, empty signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// A JWKS served by a Python process from a file it re-reads on every hit; `/hits` says how many
/// times the key set was asked for.
pub struct JwksServer {
    pub peer: PythonPeer,
    pub file: PathBuf,
}

const JWKS_SERVER: &str = r#"
import http.server, sys, threading
FILE = sys.argv[1]
hits = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global hits
        if self.path == "/hits":
            body = str(hits).encode()
        else:
            with lock:
                hits += 1
            try:
                body = open(FILE, "rb").read()
            except OSError:
                self.send_response(500); self.send_header("content-length", "0"); self.end_headers(); return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
threading.Thread(target=s.serve_forever, daemon=True).start()
sys.stdin.read()
"#;

impl JwksServer {
    /// Serves `doc` (written to `dir/jwks.json`).
    pub fn start(dir: &Path, doc: &str) -> JwksServer {
        let file = dir.join("jwks.json");
        std::fs::write(&file, doc).expect("write jwks");
        let script =
            JWKS_SERVER.replace("sys.argv[1]", &format!("{:?}", file.display().to_string()));
        JwksServer {
            peer: PythonPeer::start(&script),
            file,
        }
    }

    /// `http://127.0.0.1:port/jwks.json`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwks.json", self.peer.port)
    }

    /// Replaces the served document at once (write, then rename).
    pub fn serve(&self, doc: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, doc).expect("write jwks");
        std::fs::rename(&tmp, &self.file).expect("rename jwks");
    }

    /// How many times the key set was fetched.
    pub async fn hits(&self) -> usize {
        let url = format!("http://127.0.0.1:{}/hits", self.peer.port);
        let r = gatehouse_testkit::Client::new()
            .get(&url, &[])
            .await
            .expect("hits");
        r.text().trim().parse().expect("a number")
    }
}

/// The access log written to a file.
pub struct Log(pub PathBuf);

impl Log {
    /// Every line written so far.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The line of the request with id `rid`, once written.
    pub async fn of(&self, rid: &str) -> Value {
        let mut found = None;
        wait_for(&format!("an access-log line for request {rid}"), || {
            found = self.lines().into_iter().find(|v| v["requestId"] == rid);
            std::future::ready(found.is_some())
        })
        .await;
        found.expect("found")
    }

    /// The whole file.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }
}

/// The documents of a test: a Gateway logging to `log`, listener `web`, backend `up` at
/// `upstream`, then `rest` (the policies and routes under test).
pub fn config(log: &Path, upstream: std::net::SocketAddr, rest: &str) -> String {
    format!(
        r#"
kind: Gateway
metadata: {{name: g}}
spec: {{accessLog: {{format: json, path: "{}"}}}}
---
kind: Listener
metadata: {{name: web}}
spec: {{address: "127.0.0.1:0", protocol: HTTP}}
---
kind: Backend
metadata: {{name: up}}
spec: {{endpoints: ["{upstream}"]}}
---
{rest}"#,
        log.display()
    )
}
