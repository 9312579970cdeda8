//! Request flow, step 1 (HTTPS listeners): the rustls server config — certificates chosen by SNI,
//! ALPN h2 and http/1.1. Built at load time so a bad certificate fails the reload, not a handshake.

use gatehouse_config::Tls;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

/// Picks the first certificate valid for the SNI name; the first certificate when none is or the
/// client sent no name.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n).ok())
        {
            for ck in &self.certs {
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
        self.certs.first().cloned()
    }
}

/// Loads the certificates of a listener and builds its server config.
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut certs = Vec::new();
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
            return Err(format!("no certificate in {}", c.cert_file.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key_file)
            .map_err(|e| format!("cannot read key file {}: {e}", c.key_file.display()))?;
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
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
