//! Request flow, upgrades (WebSocket): a request asking to switch protocols is routed, checked by
//! the rule's policies and balanced like any other, then forwarded with its `Upgrade` (which
//! `prepare` removes as hop-by-hop, and this module puts back). When the HTTP/1.1 upstream answers
//! 101, the client gets the 101 and, once hyper hands over its connection, both connections go to
//! the tunnel (`tunnel.rs`, the one shared with TCP passthrough) until either side is done. A rule
//! with `upgrades: false`, or a backend that is not HTTP/1.1, forwards the request as a plain one.
//! An HTTP/2 client's WebSocket (RFC 8441 extended CONNECT, routed as a GET) goes upstream as
//! the same HTTP/1.1 upgrade, and the upstream's 101 reaches that client as a 200.
//!
//! Cost to a plain request: one look into its (empty) extensions, where hyper leaves an
//! `OnUpgrade` only for requests that ask to upgrade; and one status comparison on the response.

use super::body::{Completion, ResponseBody};
use super::exchange::Exchange;
use super::handler::X_REQUEST_ID;
use crate::error::{ErrorKind, ProxyError};
use crate::upstream::backend::{BackendRt, EndpointRt};
use crate::upstream::client::UpstreamBody;
use bytes::Bytes;
use gatehouse_config::BackendProtocol;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A tunnel whose backend sets `timeouts.read: 0s` still ends after this long with no byte
/// either way: a tunnel must not outlive both its peers unnoticed.
const NO_READ_TIMEOUT_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Keeps the client's connection counted as busy while its tunnel is open: over HTTP/2 the tunnel
/// is one stream of a connection that hyper goes on serving, and that connection's idle timeout
/// must not close it under the tunnel. Handed from the 101 (or 200) response to `conn.rs`, which
/// puts the request's in-flight guard in it instead of in the (empty) body.
#[derive(Clone, Default)]
pub(crate) struct Busy(Arc<std::sync::OnceLock<super::conn::InFlight>>);

impl Busy {
    /// Holds `guard` until the tunnel ends (at once, if it already has).
    pub(crate) fn hold(self, guard: super::conn::InFlight) {
        let _ = self.0.set(guard);
    }
}

/// An upgrade the client asked for and the rule allows: hyper's promise of the client's
/// connection, and the protocol asked for.
pub(crate) struct Pending {
    on: OnUpgrade,
    protocol: HeaderValue,
    /// Asked by an HTTP/2 extended CONNECT (RFC 8441): answered 200, not 101.
    h2: bool,
}

/// Takes the upgrade `parts` asks for, when there is one and it may go through: the rule allows
/// upgrades and the backend speaks HTTP/1.1. Otherwise the request goes on as a plain one.
pub(crate) fn take(
    parts: &mut Parts,
    rule: &gatehouse_config::Rule,
    backend: &BackendRt,
) -> Option<Pending> {
    let on = parts.extensions.remove::<OnUpgrade>()?;
    if !rule.upgrades || backend.protocol != BackendProtocol::HTTP1 {
        return None;
    }
    if parts.version == http::Version::HTTP_2 {
        // An extended CONNECT, already routed as a GET (see `request_target`).
        let p = parts.extensions.remove::<hyper::ext::Protocol>()?;
        let protocol = HeaderValue::from_str(p.as_str()).ok()?;
        return Some(Pending {
            on,
            protocol,
            h2: true,
        });
    }
    let protocol = parts.headers.get(header::UPGRADE)?.clone();
    Some(Pending {
        on,
        protocol,
        h2: false,
    })
}

impl Pending {
    /// Puts back the fields `prepare` removed as hop-by-hop, so the upstream sees the upgrade.
    pub(crate) fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(header::UPGRADE, self.protocol.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        // RFC 8441 §5: an HTTP/2 client sends no key; an HTTP/1.1 server needs one (its accept
        // value goes nowhere: the HTTP/2 client checks none).
        if self.h2 && !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
            let key: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
            let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
            if let Ok(v) = HeaderValue::from_str(&key) {
                headers.insert(header::SEC_WEBSOCKET_KEY, v);
            }
        }
    }

    /// The `protocol` label of the tunnel's metrics.
    fn label(&self) -> &'static str {
        if self.protocol.as_bytes().eq_ignore_ascii_case(b"websocket") {
            "websocket"
        } else {
            "upgrade"
        }
    }
}

/// Answers a 101 from the upstream: the client gets it (with the request id), and a task waits
/// for the client's connection and runs the tunnel. The exchange is recorded (status 101) once
/// the 101 is sent; the tunnel's bytes go to the tunnel metrics, and the endpoint counts as in
/// flight until the tunnel ends.
pub(crate) fn switch(
    ex: &Exchange<'_>,
    resp: Response<UpstreamBody>,
    pending: Option<Pending>,
    backend: &BackendRt,
    ep: &Arc<EndpointRt>,
    mut done: Completion,
) -> Response<ResponseBody> {
    let (mut parts, mut body) = resp.into_parts();
    let (Some(pending), Some(upstream)) = (pending, body.upgraded()) else {
        let err = ProxyError::new(
            ErrorKind::UpstreamProtocol,
            format!("backend {} switched protocols unasked", backend.id),
        );
        return super::handler::error_response(ex.snap, err, ex.rid, &ex.entry.target.errors, done);
    };
    parts.headers.insert(X_REQUEST_ID.clone(), ex.rid.clone());
    if pending.h2 {
        // RFC 8441 §5: a 2xx accepts the extended CONNECT; the HTTP/1.1 handshake's own fields
        // are not HTTP/2's.
        parts.status = http::StatusCode::OK;
        for name in [
            header::UPGRADE,
            header::CONNECTION,
            header::SEC_WEBSOCKET_ACCEPT,
        ] {
            parts.headers.remove(name);
        }
    }
    done.status = parts.status.as_u16();
    let busy = Busy::default();
    parts.extensions.insert(busy.clone());
    // The endpoint's in-flight count moves from the exchange to the tunnel.
    let in_flight = done.in_flight.take();
    let idle = match backend.read_timeout {
        d if d.is_zero() => NO_READ_TIMEOUT_IDLE,
        d => d,
    };
    let metrics = ex.snap.metrics.streams.tunnel(pending.label(), &backend.id);
    let watch = (ex.snap.streams.watch(&ex.entry.route, &backend.id)).on_listener(
        ex.conn.drain.as_ref(),
        ex.snap.config.gateway.stream_drain_timeout,
    );
    let address = ep.address.clone();
    tokio::spawn(async move {
        let run = async {
            let client = match pending.on.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(upstream = &*address, "client upgrade failed: {e}");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            // Bytes the upstream sent right after its 101 belong to the new protocol.
            if !upstream.read.is_empty() && client.write_all(&upstream.read).await.is_err() {
                return;
            }
            let out = super::tunnel::run(client, upstream.io, idle, &metrics).await;
            tracing::debug!(
                upstream = &*address,
                sent = out.to_upstream,
                received = out.to_downstream,
                "upgraded tunnel ended: {:?}",
                out.end
            );
        };
        watch.run(run).await;
        drop(busy);
        if let Some(ep) = in_flight {
            ep.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    });
    Response::from_parts(parts, ResponseBody::full(Bytes::new(), Some(done)))
}
