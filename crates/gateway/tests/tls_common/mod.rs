//! Shared by the `tls*` tests: a rustls client (trusting chosen PEM certificates, optionally
//! presenting a client certificate) that keeps one HTTP/1.1 connection open, and certificate
//! files written with rcgen.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// A self-signed certificate for `names`, written as `{stem}.pem` and `{stem}-key.pem` in `dir`
/// (through a rename, so the gateway's watch never reads half a file); returns the cert PEM.
pub fn write_self_signed(dir: &Path, stem: &str, names: &[&str]) -> String {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let pem = c.cert.pem();
    write_atomic(dir, &format!("{stem}-key.pem"), &c.key_pair.serialize_pem());
    write_atomic(dir, &format!("{stem}.pem"), &pem);
    pem
}

/// Writes `name` in `dir` through a temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A client config trusting only `roots` (PEM), with `identity` (cert chain PEM, key PEM)
/// presented when the server asks; ALPN http/1.1; no session resumption.
pub fn client_config(roots: &[&str], identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store);
    let mut config = match identity {
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every handshake a full one: a resumed session would skip the certificate under test.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Opens a TLS connection to `addr` for SNI `name` and starts HTTP/1.1 on it; the error is the
/// handshake's.
pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(tx)
}

/// `GET path` on an open connection: status and body, or the error's text.
pub async fn get(
    tx: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    tx.ready().await.map_err(|e| e.to_string())?;
    let req = hyper::Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// One request on a new connection: status and body, or the handshake's / request's error.
pub async fn get_once(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let mut tx = connect(addr, name, config).await?;
    get(&mut tx, name, path).await
}

/// Waits (up to 20 s, checking every 20 ms) until `check` holds; panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A private certificate authority that issues server and client certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// An issued certificate: chain PEM (leaf only) and key PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// Writes `{stem}.pem` and `{stem}-key.pem` in `dir`.
    pub fn write(&self, dir: &Path, stem: &str) {
        write_atomic(dir, &format!("{stem}-key.pem"), &self.key);
        write_atomic(dir, &format!("{stem}.pem"), &self.cert);
    }
}

impl Ca {
    /// A new CA whose subject is `CN={name}`.
    pub fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    fn issue(&self, names: &[&str], cn: &str, usage: rcgen::ExtendedKeyUsagePurpose) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Gatehouse Tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for `names` (the first is its CN).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, names[0], rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose subject is `CN={cn},O=Gatehouse Tests`.
    pub fn client(&self, cn: &str) -> Issued {
        self.issue(&[], cn, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }
}
