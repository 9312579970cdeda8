//! Config flow and request flow, `jwt` keys: a JSON Web Key Set read from a file (watched) or
//! fetched from a URL by the control runtime — at start, every `refreshInterval`, and when a
//! token names a `kid` the set does not hold, at most once per `minRefreshInterval` however
//! many such tokens arrive. A fetch that fails keeps the keys in use. Each key says which
//! algorithms it verifies (by its type and curve, narrowed by its `alg`), so a token can never
//! choose an algorithm its key was not made for; symmetric (`oct`) keys in a set are ignored:
//! HMAC takes an explicit `secret`.

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Longest wait for one JWKS fetch (a request waiting on an unknown `kid` waits at most this).
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest JWKS document read.
const MAX_JWKS: usize = 1 << 20;

/// One verification key and the algorithms it verifies.
pub(crate) struct Key {
    pub(crate) decoding: DecodingKey,
    pub(crate) algs: Vec<Algorithm>,
}

/// A key set: keys by `kid`, and keys without one.
#[derive(Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Key>,
    anonymous: Vec<Key>,
}

impl KeySet {
    /// A shared HMAC secret: HS256/384/512.
    pub(crate) fn secret(bytes: &[u8]) -> Self {
        KeySet {
            by_kid: HashMap::new(),
            anonymous: vec![Key {
                decoding: DecodingKey::from_secret(bytes),
                algs: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            }],
        }
    }

    /// A JWKS document. Keys that cannot verify signatures (encryption keys, unknown types and
    /// curves, `oct`) are left out; a document without any usable key is an error.
    pub(crate) fn parse(origin: &str, text: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_str(text)
            .map_err(|e| format!("{origin}: not a JSON Web Key Set: {e}"))?;
        let mut set = KeySet::default();
        for value in doc.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(key) = usable(&jwk) else { continue };
            match &jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid.clone(), key);
                }
                None => set.anonymous.push(key),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err(format!(
                "{origin}: the key set holds no usable signature key"
            ));
        }
        Ok(set)
    }

    /// The keys a token with `kid` and `alg` may be verified with; `None` when it names a
    /// `kid` the set does not hold.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Option<impl Iterator<Item = &'a Key>> {
        let named = match kid {
            Some(k) => Some(self.by_kid.get(k)?),
            None => None,
        };
        let all = (named.is_none()).then(|| self.by_kid.values().chain(self.anonymous.iter()));
        Some(
            named
                .into_iter()
                .chain(all.into_iter().flatten())
                .filter(move |k| k.algs.contains(&alg)),
        )
    }
}

/// The algorithms `jwk` verifies, or `None` when it is not a signature key we accept.
fn usable(jwk: &Jwk) -> Option<Key> {
    use Algorithm::*;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let mut algs = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![EdDSA],
        _ => return None,
    };
    if let Some(ka) = &jwk.common.key_algorithm {
        let named = Algorithm::from_str(&format!("{ka:?}")).ok()?;
        algs.retain(|a| *a == named);
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    (!algs.is_empty()).then_some(Key { decoding, algs })
}

/// A JWKS file's parser for `Watched`.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<KeySet, String> {
    KeySet::parse(&path.display().to_string(), text)
}

/// A secret file's parser for `Watched`: the bytes of the file, a final newline removed.
pub(crate) fn parse_secret(path: &Path, text: &str) -> Result<KeySet, String> {
    let s = text.strip_suffix('\n').unwrap_or(text);
    let s = s.strip_suffix('\r').unwrap_or(s);
    if s.len() < 32 {
        return Err(format!(
            "{}: an HMAC secret must be at least 32 bytes long",
            path.display()
        ));
    }
    Ok(KeySet::secret(s.as_bytes()))
}

/// A key set fetched from a URL, kept across reloads that keep the URL.
pub(crate) struct RemoteJwks {
    url: http::Uri,
    /// `https://` URLs: the TLS client (system roots, or `caFile`), built once.
    tls: Option<Arc<crate::upstream::transport::TlsConnect>>,
    keys: ArcSwap<KeySet>,
    min_refresh: Duration,
    /// When the last fetch started; held while a fetch runs, so concurrent misses wait for it.
    last: tokio::sync::Mutex<Option<Instant>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RemoteJwks {
    /// Starts fetching `url` on the control runtime: now, then every `refresh`.
    /// An `https://` URL is checked against the system's CA bundle, or `ca_file`'s.
    pub(crate) fn start(
        url: &str,
        refresh: Duration,
        min_refresh: Duration,
        ca_file: Option<&Path>,
    ) -> Result<Arc<Self>, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid JWKS URL `{url}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("JWKS URL `{url}`: expected http:// or https://")),
        };
        if uri.host().is_none() {
            return Err(format!("JWKS URL `{url}`: no host"));
        }
        let tls = https.then(|| tls_client(ca_file)).transpose()?;
        let me = Arc::new(RemoteJwks {
            url: uri,
            tls,
            keys: ArcSwap::from_pointee(KeySet::default()),
            min_refresh,
            last: tokio::sync::Mutex::new(None),
            task: std::sync::Mutex::new(None),
        });
        let task = crate::runtime::control().spawn(refresh_loop(Arc::downgrade(&me), refresh));
        *me.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(me)
    }

    /// The keys in force.
    pub(crate) fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// A token named a `kid` we do not hold: fetch again, unless a fetch started less than
    /// `minRefreshInterval` ago (then this waits for a running one, if any, and returns).
    pub(crate) async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        self.fetch_now().await;
    }

    async fn fetch_now(&self) {
        let (url, tls) = (self.url.clone(), self.tls.clone());
        let fetched = crate::runtime::control()
            .spawn(async move { tokio::time::timeout(FETCH_TIMEOUT, fetch(&url, tls)).await })
            .await;
        match fetched {
            Ok(Ok(Ok(set))) => self.keys.store(Arc::new(set)),
            Ok(Ok(Err(e))) => tracing::warn!("JWKS {}: {e}; keeping the keys in use", self.url),
            Ok(Err(_)) => tracing::warn!(
                "JWKS {}: no answer within {FETCH_TIMEOUT:?}; keeping the keys in use",
                self.url
            ),
            Err(e) => tracing::warn!("JWKS {}: {e}", self.url),
        }
    }
}

impl Drop for RemoteJwks {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

async fn refresh_loop(weak: Weak<RemoteJwks>, every: Duration) {
    loop {
        {
            let Some(me) = weak.upgrade() else { return };
            let mut last = me.last.lock().await;
            // A request that met an unknown `kid` may have fetched just now (at start, before
            // this task first ran).
            if !last.is_some_and(|t| t.elapsed() < me.min_refresh) {
                *last = Some(Instant::now());
                me.fetch_now().await;
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// The TLS client of an `https://` JWKS URL: the upstream transport's (the server's name from
/// the URL, ALPN `http/1.1`), with the system's CA bundle or `ca_file`.
fn tls_client(
    ca_file: Option<&Path>,
) -> Result<Arc<crate::upstream::transport::TlsConnect>, String> {
    let tls = gatehouse_config::UpstreamTls {
        ca_file: ca_file.map(Path::to_path_buf),
        server_name: None,
        client_cert: None,
    };
    let connect =
        crate::upstream::transport::TlsConnect::new(&tls, gatehouse_config::BackendProtocol::HTTP1)
            .map_err(|e| format!("JWKS: {}", e.replace("tls.caFile", "jwks.caFile")))?;
    Ok(Arc::new(connect))
}

/// GET `url` over HTTP/1.1 (in TLS when `tls` is given) and parse the key set.
async fn fetch(
    url: &http::Uri,
    tls: Option<Arc<crate::upstream::transport::TlsConnect>>,
) -> Result<KeySet, String> {
    use crate::upstream::transport::Transport;
    let host = url.host().unwrap_or("");
    let port = (url.port_u16()).unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = match &tls {
        None => Transport::Tcp(tcp),
        Some(t) => {
            (t.handshake(tcp, &format!("{host}:{port}")).await).map_err(|e| format!("TLS: {e}"))?
        }
    };
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let authority = url.authority().map(|a| a.as_str()).unwrap_or(host);
    let req = http::Request::get(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS)
        .collect()
        .await
        .map_err(|e| format!("reading the key set: {e}"))?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| "the key set is not UTF-8".to_string())?;
    KeySet::parse(&url.to_string(), text)
}
