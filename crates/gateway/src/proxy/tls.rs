//! Request flow, step 1 (HTTPS listeners): the rustls server config — certificates chosen by SNI,
//! ALPN h2 and http/1.1, TLS 1.2 and 1.3 only. Built at load time so a bad certificate fails the
//! reload, not a handshake; afterwards the certificate files are watched (`tls_watch`) and a good
//! new pair replaces the old one under the same config, so open connections are untouched.
//! Also the answer to plain HTTP sent to a TLS port, told apart by the connection's first byte.

use arc_swap::ArcSwap;
use gatehouse_config::{ClientAuth, ClientAuthMode, Tls};
use prometheus_client::metrics::counter::Counter;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The certificates of a listener, in config order; swapped whole when their files change.
type CertSet = Arc<ArcSwap<Vec<Arc<CertifiedKey>>>>;

/// Picks the first certificate valid for the SNI name; the first certificate when none is or the
/// client sent no name.
struct SniResolver {
    certs: CertSet,
    /// Keeps the file watch alive as long as the config that uses these certificates: connections
    /// still open on an older config keep theirs, and the watch ends with the last of them.
    _watch: Option<Mutex<notify::RecommendedWatcher>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.certs.load().len())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        if let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n).ok())
        {
            for ck in certs.iter() {
                let Some(leaf) = ck.cert.first() else {
                    continue;
                };
                if let Ok(cert) = webpki::EndEntityCert::try_from(leaf) {
                    if cert.verify_is_valid_for_subject_name(&name).is_ok() {
                        return Some(ck.clone());
                    }
                }
            }
        }
        certs.first().cloned()
    }
}

/// Loads the certificates of a listener and builds its server config (no file watch: for
/// `gatehouse check`).
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, String> {
    let certs = Arc::new(ArcSwap::from_pointee(load_certificates(tls)?));
    build(tls, certs, None)
}

/// As `server_config`, and watches the certificate and key files: when they change, a pair that
/// loads replaces the served one for new handshakes; one that does not (half written, wrong key)
/// is logged, counted in `errors`, and the old certificates stay.
pub(crate) fn watched_server_config(
    tls: &Tls,
    listener: &str,
    errors: Counter,
) -> Result<Arc<ServerConfig>, String> {
    let certs: CertSet = Arc::new(ArcSwap::from_pointee(load_certificates(tls)?));
    let files = tls
        .certificates
        .iter()
        .flat_map(|c| [c.cert_file.clone(), c.key_file.clone()]);
    let reload = {
        let (tls, certs, listener) = (tls.clone(), certs.clone(), listener.to_string());
        move || match load_certificates(&tls) {
            Ok(new) => {
                certs.store(Arc::new(new));
                tracing::info!(listener = %listener, "certificates reloaded");
            }
            Err(e) => {
                errors.inc();
                tracing::warn!(listener = %listener, "certificates not reloaded, the old ones stay: {e}");
            }
        }
    };
    let watch = super::tls_watch::watch(files, reload).map(Mutex::new);
    build(tls, certs, watch)
}

fn build(
    tls: &Tls,
    certs: CertSet,
    watch: Option<Mutex<notify::RecommendedWatcher>>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Safe defaults: TLS 1.2 and 1.3 only, rustls's cipher suites (AEAD, forward secret).
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth, provider)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver {
        certs,
        _watch: watch,
    }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks client certificates against `clientAuth.caFile`; `Optional` also lets clients without
/// one through (a certificate that is presented must still verify).
fn client_verifier(
    auth: &ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let file = auth.ca_file.display();
    for cert in CertificateDer::pem_file_iter(&auth.ca_file)
        .map_err(|e| format!("cannot read clientAuth.caFile {file}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("cannot read clientAuth.caFile {file}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate in {file}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "no certificate in clientAuth.caFile {file}: expected PEM `-----BEGIN CERTIFICATE-----` blocks"
        ));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth.mode {
        ClientAuthMode::Required => builder,
        ClientAuthMode::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| format!("clientAuth.caFile {file}: {e}"))
}

/// Reads every certificate chain and key of a listener; the first error names its file.
fn load_certificates(tls: &Tls) -> Result<Vec<Arc<CertifiedKey>>, String> {
    let provider = rustls::crypto::ring::default_provider();
    let mut certs = Vec::with_capacity(tls.certificates.len());
    for c in &tls.certificates {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_file)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| {
                format!(
                    "cannot read certificate file {}: {e}",
                    c.cert_file.display()
                )
            })?;
        if chain.is_empty() {
            return Err(format!(
                "no certificate in {}: expected a PEM `-----BEGIN CERTIFICATE-----` block",
                c.cert_file.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key_file).map_err(|e| {
            format!(
                "cannot read key file {}: {e} (expected a PEM `-----BEGIN PRIVATE KEY-----`, \
                     `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
                c.key_file.display()
            )
        })?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("unusable key in {}: {e}", c.key_file.display()))?;
        let ck = CertifiedKey::new(chain, signing);
        ck.keys_match().map_err(|e| {
            format!(
                "{} does not match {}: {e}",
                c.key_file.display(),
                c.cert_file.display()
            )
        })?;
        certs.push(Arc::new(ck));
    }
    Ok(certs)
}

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

const PLAIN_HTTP_BODY: &str =
    "{\"error\":\"bad_request\",\"message\":\"The plain HTTP request was sent to HTTPS port\"}\n";

/// Whether the client starts a TLS handshake. When it sends something else (plain HTTP, as a
/// client given `http://` for an HTTPS port does) it gets a plain HTTP/1.1 400 saying so, as nginx
/// answers, instead of a silent close, and `false` is returned. Peeks: the byte stays unread.
pub(crate) async fn starts_with_handshake(stream: &mut TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => return true,
        Ok(1) => {}
        _ => return false,
    }
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    if stream.write_all(head.as_bytes()).await.is_ok() && stream.shutdown().await.is_ok() {
        linger(stream).await;
    }
    false
}

/// Reads and drops what the client still sends, for a bounded time, before the socket is closed:
/// closing with unread bytes makes the kernel send a reset, which can reach the client before it
/// has read the answer.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut budget: usize = 64 * 1024;
    let drain = async {
        while budget > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}
