//! The few Kubernetes API calls the provider makes (a list and a watch), over hyper: where the API
//! server is (in-cluster service account, or a plain-HTTP URL such as a `kubectl proxy` sidecar or
//! a test's stand-in), and authentication with the service account's token.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use tokio::net::TcpStream;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the API server is and how to authenticate to it.
#[derive(Clone)]
pub(crate) struct Api {
    host: String,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    token: Option<String>,
}

impl Api {
    /// The API server of the cluster this process runs in: `KUBERNETES_SERVICE_HOST`/`_PORT`,
    /// the service account's CA and token. The token is read again on every connection
    /// (kubelet rotates it).
    pub(crate) fn in_cluster() -> Result<Api, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            "not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST is not set"
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443);
        let ca = format!("{SERVICE_ACCOUNT}/ca.crt");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{ca}: {e}"))? {
            let cert = cert.map_err(|e| format!("{ca}: {e}"))?;
            roots.add(cert).map_err(|e| format!("{ca}: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Api {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            tls: Some(Arc::new(config)),
            token: Some(format!("{SERVICE_ACCOUNT}/token")),
        })
    }

    /// An API server reached over plain HTTP without credentials (a `kubectl proxy` sidecar).
    #[cfg(test)]
    pub(crate) fn plain(addr: std::net::SocketAddr) -> Api {
        Api {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: None,
            token: None,
        }
    }

    /// GETs `path_and_query` on a new connection and returns the response once its head arrived
    /// with status 200; the body streams (a watch never ends on its own).
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<Incoming, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        let mut request = http::Request::get(path_and_query)
            .header(http::header::HOST, &self.host)
            .header(http::header::ACCEPT, "application/json");
        if let Some(file) = &self.token {
            let token = tokio::fs::read_to_string(file)
                .await
                .map_err(|e| format!("{file}: {e}"))?;
            request = request.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.trim()),
            );
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = match &self.tls {
            None => send(TokioIo::new(tcp), request).await?,
            Some(config) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS to {}: {e}", self.host))?;
                send(TokioIo::new(tls), request).await?
            }
        };
        let status = response.status();
        if status != http::StatusCode::OK {
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
            return Err(format!(
                "GET {path_and_query}: {status} {}",
                text.unwrap_or_default()
            ));
        }
        Ok(response.into_body())
    }
}

async fn send<IO>(
    io: IO,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // Ends when the response body is dropped or finished.
    tokio::spawn(conn);
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}
