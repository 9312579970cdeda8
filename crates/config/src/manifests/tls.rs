//! Config flow, written back (TLS): a listener's `tls.clientAuth` and a backend's `tls`, in the
//! manifest field names, so `/config` shows them and they load back.

use crate::model::{ClientAuth, ClientAuthMode, UpstreamTls};
use serde_json::{json, Value};

/// `tls.clientAuth`.
pub(super) fn client_auth(c: &ClientAuth) -> Value {
    let mode = match c.mode {
        ClientAuthMode::Optional => "Optional",
        ClientAuthMode::Required => "Required",
    };
    json!({"caFile": c.ca_file.display().to_string(), "mode": mode})
}

/// A backend's `tls`.
pub(super) fn upstream_tls(t: &UpstreamTls) -> Value {
    let mut v = json!({});
    if let Some(ca) = &t.ca_file {
        v["caFile"] = json!(ca.display().to_string());
    }
    if let Some(name) = &t.server_name {
        v["serverName"] = json!(name);
    }
    if let Some((cert, key)) = &t.client_cert {
        v["certFile"] = json!(cert.display().to_string());
        v["keyFile"] = json!(key.display().to_string());
    }
    v
}
