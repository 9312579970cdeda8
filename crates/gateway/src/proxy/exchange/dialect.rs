//! Request flow, forwarding: what makes an exchange another protocol's than plain HTTP. On the way
//! up, an upgrade the request asks for (WebSocket, `upgrade.rs`) and gRPC-Web (`grpc_web.rs`);
//! on the way back, a 101 that becomes a tunnel, gRPC-Web framing, and gRPC streams watched for
//! reloads that remove their route (`grpc.rs`). A plain request to an HTTP/1.1 backend costs an
//! empty-extensions check and two comparisons.

use super::Exchange;
use crate::proxy::body::{Completion, ResponseBody};
use crate::proxy::{grpc, grpc_web, upgrade};
use crate::upstream::backend::{BackendRt, EndpointRt};
use crate::upstream::client::UpstreamBody;
use gatehouse_config::BackendProtocol;
use http::request::Parts;
use http::{Response, StatusCode};
use std::sync::Arc;

/// What the request asked for beyond plain HTTP.
pub(super) struct Dialect {
    upgrade: Option<upgrade::Pending>,
    web: Option<grpc_web::Web>,
}

impl Dialect {
    /// Takes what the request asks for, before `prepare` removes `Upgrade` as hop-by-hop.
    /// gRPC-Web is looked for only on the way to an HTTP/2 backend.
    pub(super) fn take(parts: &mut Parts, rule: &gatehouse_config::Rule, b: &BackendRt) -> Self {
        Dialect {
            upgrade: upgrade::take(parts, rule, b),
            web: (b.protocol == BackendProtocol::HTTP2)
                .then(|| grpc_web::detect(&parts.headers))
                .flatten(),
        }
    }

    /// After `prepare`: the upgrade's fields put back, gRPC-Web turned into gRPC.
    pub(super) fn apply(&self, parts: &mut Parts) {
        if let Some(u) = &self.upgrade {
            u.restore(&mut parts.headers);
        }
        if let Some(w) = &self.web {
            grpc_web::request(parts, w);
        }
    }

    /// Whether the request body is gRPC-Web text: decoded as it streams, and never replayed.
    pub(super) fn text(&self) -> bool {
        self.web.as_ref().is_some_and(|w| w.text)
    }
}

impl Exchange<'_> {
    /// The client's response from the upstream's: a 101 becomes a tunnel; a gRPC-Web client's
    /// answer is re-framed, a gRPC answer watched for reloads; then `finish`.
    pub(super) fn answer(
        &self,
        resp: Response<UpstreamBody>,
        dialect: Dialect,
        backend: &BackendRt,
        ep: &Arc<EndpointRt>,
        affinity: bool,
        done: Completion,
    ) -> Response<ResponseBody> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return upgrade::switch(self, resp, dialect.upgrade, backend, ep, done);
        }
        let metrics = done.metrics.as_ref();
        let resp = match &dialect.web {
            Some(w) => grpc_web::response(resp, w, metrics),
            None if backend.protocol == BackendProtocol::HTTP2 => {
                let streams = &self.snap.streams;
                grpc::drained(resp, &self.entry.route, &backend.id, streams, metrics)
            }
            None => resp,
        };
        self.finish(resp, backend, ep, affinity, done)
    }
}
