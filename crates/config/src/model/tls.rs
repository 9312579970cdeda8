//! Config flow, step 5 (validated model): client certificates on a listener and TLS to a
//! backend's endpoints.

use serde::Serialize;
use std::path::PathBuf;

/// `tls.clientAuth` of an HTTPS listener: client certificates checked against a CA bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    /// PEM bundle of the CAs whose certificates are accepted.
    pub ca_file: PathBuf,
    /// Whether a client without a certificate is let in.
    pub mode: ClientAuthMode,
}

/// Whether a listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClientAuthMode {
    /// A client may present a certificate (then it must verify) or none.
    Optional,
    /// The handshake fails without a certificate from one of the CAs.
    Required,
}

/// `tls` of a backend: its endpoints are reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTls {
    /// PEM bundle of the CAs that sign the endpoints' certificates; `None`: the system's bundle.
    pub ca_file: Option<PathBuf>,
    /// The name sent as SNI and checked against the endpoint's certificate; `None`: the host of
    /// the endpoint's address.
    pub server_name: Option<String>,
    /// The client certificate chain and key presented to the endpoints (mTLS), both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}
