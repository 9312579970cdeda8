//! Config flow, step 4 (TLS beyond certificates): a listener's `tls.clientAuth` and a backend's
//! `tls` (CA bundle, SNI name, client certificate for mTLS), paths resolved beside the manifest.

use super::{relative_to_manifest, V};
use crate::loader::Ctx;
use crate::model::{ClientAuth, ClientAuthMode, UpstreamTls};
use crate::raw;

/// `spec.tls.clientAuth`; the mode defaults to `Required` (asking for a certificate and letting
/// everyone in anyway must be chosen, not fallen into).
pub(super) fn client_auth(ctx: &Ctx, spec: &raw::ClientAuthSpec) -> ClientAuth {
    ClientAuth {
        ca_file: relative_to_manifest(ctx, &spec.ca_file),
        mode: match spec.mode {
            Some(raw::ClientAuthMode::Optional) => ClientAuthMode::Optional,
            Some(raw::ClientAuthMode::Required) | None => ClientAuthMode::Required,
        },
    }
}

/// `spec.tls` of a backend.
pub(super) fn upstream_tls(v: &mut V, ctx: &Ctx, spec: &raw::UpstreamTlsSpec) -> UpstreamTls {
    let client_cert = match (&spec.cert_file, &spec.key_file) {
        (Some(c), Some(k)) => Some((relative_to_manifest(ctx, c), relative_to_manifest(ctx, k))),
        (None, None) => None,
        (Some(_), None) => {
            v.errors.push(ctx.error(
                "spec.tls.keyFile",
                "`certFile` needs `keyFile` (the client certificate's private key)",
            ));
            None
        }
        (None, Some(_)) => {
            v.errors.push(ctx.error(
                "spec.tls.certFile",
                "`keyFile` needs `certFile` (the client certificate it belongs to)",
            ));
            None
        }
    };
    if let Some(name) = &spec.server_name {
        let ip = name.parse::<std::net::IpAddr>().is_ok();
        let dns = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ip && !dns {
            v.errors.push(ctx.error(
                "spec.tls.serverName",
                format!("`{name}` is not a DNS name or an IP address"),
            ));
        }
    }
    UpstreamTls {
        ca_file: spec
            .ca_file
            .as_deref()
            .map(|f| relative_to_manifest(ctx, f)),
        server_name: spec.server_name.clone(),
        client_cert,
    }
}
