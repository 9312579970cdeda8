//! Config flow, step 4 (output) for the developer portal: where the portal is served and what it is
//! called. The gateway's `portal` module serves it; `validate/portal.rs` builds it.

use serde::Serialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// `Gateway.spec.portal`: the developer portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Portal {
    /// Where it is served.
    pub mount: PortalMount,
    /// The site's title.
    pub title: String,
}

/// Where the portal is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PortalMount {
    /// On a listener of its own, started and stopped with the config.
    Address(SocketAddr),
    /// Under this path on every HTTP listener, before routing (`/portal`: no trailing slash).
    PathPrefix(String),
}

/// The title used when the config names none.
pub const DEFAULT_PORTAL_TITLE: &str = "API portal";

impl Portal {
    /// The manifest form (`{address, title}` or `{pathPrefix, title}`), for `GET /config`.
    pub(crate) fn to_manifest(&self) -> Value {
        match &self.mount {
            PortalMount::Address(a) => json!({"address": a.to_string(), "title": self.title}),
            PortalMount::PathPrefix(p) => json!({"pathPrefix": p, "title": self.title}),
        }
    }
}
