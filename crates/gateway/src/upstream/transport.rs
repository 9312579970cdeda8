//! Request flow, step 9 (connecting): what carries bytes to an endpoint — the TCP connection, or
//! TLS over it for backends with `tls` (CA bundle, SNI name, a client certificate for mTLS, ALPN
//! by protocol). The HTTP/1.1 exchange, the HTTP/2 client and the health probes all speak over a
//! `Transport`, so there is one copy of each; a TCP backend pays one enum match per I/O call.

use crate::error::{ErrorKind, ProxyError};
use gatehouse_config::{BackendProtocol, UpstreamTls};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where the system's CA bundle is on Debian-like systems: the roots when `tls.caFile` is not set.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A connection to an endpoint.
pub(crate) enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP. Boxed: the TLS state is large and TCP connections should not carry its size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// Whether an idle connection is still open and quiet. Checks only what the event loop
    /// already saw — no system call — so a healthy pooled TCP connection costs nothing:
    /// readiness is cleared by the last read that drained the socket, and an event since then
    /// means EOF or unsolicited bytes. Over TLS an event can also be a TLS 1.3 session ticket the
    /// server sent after the handshake; it is read (rustls consumes it) and the connection stays
    /// usable unless that read finds data, EOF or an error.
    pub(crate) fn is_idle_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self {
            Transport::Tcp(s) => s.poll_read_ready(&mut cx).is_pending(),
            Transport::Tls(s) => {
                if s.get_ref().0.poll_read_ready(&mut cx).is_pending() {
                    return true;
                }
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(s.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => {
                // Records a write left in rustls's buffer (the socket was full) go out first:
                // the HTTP/1.1 exchange never flushes (TCP needs none), and the upstream would
                // wait for them while the gateway waits for its answer.
                if let Poll::Ready(Err(e)) = Pin::new(s.as_mut()).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                Pin::new(s.as_mut()).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => {
                let n = ready!(Pin::new(s.as_mut()).poll_write(cx, buf))?;
                let _ = Pin::new(s.as_mut()).poll_flush(cx);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => {
                let n = ready!(Pin::new(s.as_mut()).poll_write_vectored(cx, bufs))?;
                // Push the records out now (see `poll_read`); what the socket cannot take yet
                // stays buffered and goes with the next write, read or flush.
                let _ = Pin::new(s.as_mut()).poll_flush(cx);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A backend's TLS client settings, built (files read) with the snapshot so a bad CA bundle or
/// key fails the reload, not a request.
pub(crate) struct TlsConnect {
    connector: tokio_rustls::TlsConnector,
    /// `tls.serverName`; otherwise each endpoint's host.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnect")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsConnect {
    /// Reads the CA bundle (and the client certificate) of `tls`; ALPN offers `h2` to HTTP/2
    /// and gRPC backends, `http/1.1` to HTTP/1.1 ones.
    pub(crate) fn new(tls: &UpstreamTls, protocol: BackendProtocol) -> Result<Self, String> {
        let ca = tls
            .ca_file
            .clone()
            .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read tls.caFile {}: {e}", ca.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "no usable CA certificate in {}: expected PEM `-----BEGIN CERTIFICATE-----` blocks",
                ca.display()
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match &tls.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read tls.certFile {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("cannot read tls.keyFile {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("tls.certFile and tls.keyFile: {e}"))?
            }
        };
        config.alpn_protocols = match protocol {
            BackendProtocol::HTTP2 => vec![b"h2".to_vec()],
            BackendProtocol::HTTP1 => vec![b"http/1.1".to_vec()],
        };
        let server_name = match &tls.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("tls.serverName `{n}`: {e}"))?,
            ),
            None => None,
        };
        Ok(TlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The backend's TLS settings for its health checker. The snapshot that put the backend in
    /// force read the same files moments before; should they have become unreadable since, the
    /// checker probes without TLS, fails, and says so in its log.
    pub(crate) fn for_checks(b: &gatehouse_config::Backend) -> Option<Arc<TlsConnect>> {
        let tls = b.tls.as_ref()?;
        match TlsConnect::new(tls, b.protocol) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                tracing::warn!(backend = %b.id, "health checks without TLS: {e}");
                None
            }
        }
    }

    /// The name checked against `address`'s certificate: `serverName`, or the address's host.
    fn name_for(&self, address: &str) -> Result<ServerName<'static>, String> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string())
            .map_err(|e| format!("`{host}` cannot be a TLS server name ({e}); set tls.serverName"))
    }

    /// The TLS handshake over `tcp`; the error says why, for the operational log.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        address: &str,
    ) -> Result<Transport, String> {
        let name = self.name_for(address)?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Transport::Tls(Box::new(tls)))
    }
}

/// A failed handshake as the client sees it: `upstream_tls`, naming the backend, never the
/// endpoint or the certificate detail (those go to the operational log).
pub(crate) fn handshake_error(backend: &str, address: &str, why: &str) -> ProxyError {
    tracing::warn!(
        backend,
        upstream = address,
        "TLS handshake with the upstream failed: {why}"
    );
    ProxyError::new(
        ErrorKind::UpstreamTls,
        format!("the TLS handshake with backend {backend} failed"),
    )
}
