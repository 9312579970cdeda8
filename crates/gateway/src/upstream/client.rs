//! Request flow, step 9: the upstream client — connect (or take a pooled connection), send, and
//! hand back the response head with a body that streams the rest.

use super::backend::{BackendRt, EndpointRt};
use super::h1;
use super::pool;
use super::transport::{self, Transport};
use crate::error::{Cause, ErrorKind, Progress, ProxyError};
use crate::proxy::body::RequestBody;
use crate::proxy::forward::Extra;
use crate::state::breaker::{Limit, Slot};
use gatehouse_config::BackendProtocol;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// An upstream body changed on its way (see `UpstreamBody::Mapped`).
pub type MappedBody =
    Box<dyn http_body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + Sync + Unpin>;

/// A response body from an upstream, by protocol.
pub enum UpstreamBody {
    /// Read by the request's own task from a pooled HTTP/1.1 connection.
    H1(h1::UpstreamBody),
    /// A stream of a multiplexed HTTP/2 connection (hyper).
    H2(Incoming),
    /// An HTTP/2 stream passed through a body that changes it on its way (a gRPC-Web client's
    /// framing, a gRPC stream ended after its route was removed).
    Mapped(MappedBody),
}

/// A new connection and its unit of the circuit breaker's `maxConnections` (held as long as the
/// connection lives), after a unit of `maxPendingRequests` held while connecting.
async fn connect_counted(
    backend: &BackendRt,
    ep: &EndpointRt,
) -> Result<(Transport, Option<Slot>), ProxyError> {
    let slot = backend.breaker_slot(Limit::Connections)?;
    let _pending = backend.breaker_slot(Limit::Pending)?;
    let tcp = connect(backend, ep).await?;
    let Some(tls) = &backend.tls else {
        return Ok((Transport::Tcp(tcp), slot));
    };
    // The handshake counts against the connect timeout too: a peer that accepts and then says
    // nothing must not hold the request.
    match tokio::time::timeout(backend.connect_timeout, tls.handshake(tcp, &ep.address)).await {
        Ok(Ok(t)) => Ok((t, slot)),
        Ok(Err(why)) => {
            backend.connect_errors.inc();
            Err(transport::handshake_error(&backend.id, &ep.address, &why))
        }
        Err(_) => {
            backend.connect_errors.inc();
            let why = "no handshake within the connect timeout";
            Err(transport::handshake_error(&backend.id, &ep.address, why))
        }
    }
}

/// A TCP connection to `ep` within the backend's connect timeout (also used by passthrough).
pub(crate) async fn connect(backend: &BackendRt, ep: &EndpointRt) -> Result<TcpStream, ProxyError> {
    let fail = |msg: String| {
        backend.connect_errors.inc();
        ProxyError::new(ErrorKind::UpstreamConnect, msg)
    };
    let attempt = async {
        let addr: SocketAddr = match ep.resolved {
            Some(a) => a,
            None => tokio::net::lookup_host(&*ep.address)
                .await?
                .next()
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "name resolved to no address")
                })?,
        };
        TcpStream::connect(addr).await
    };
    // Messages go to the client and name the backend; the endpoint's address and the OS error go
    // to the operational log (and the address to the access log's `upstream`).
    match tokio::time::timeout(backend.connect_timeout, attempt).await {
        Err(_) => {
            tracing::warn!(
                backend = &*backend.id,
                upstream = &*ep.address,
                "connect timed out"
            );
            Err(fail(format!(
                "connecting to backend {} timed out after {}",
                backend.id,
                gatehouse_config::units::DisplayDuration(backend.connect_timeout)
            )))
        }
        Ok(Err(e)) => {
            tracing::warn!(
                backend = &*backend.id,
                upstream = &*ep.address,
                "cannot connect: {e}"
            );
            Err(fail(format!("cannot connect to backend {}", backend.id)))
        }
        Ok(Ok(s)) => {
            // Latency over throughput: requests are small and already batched by the client.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// An HTTP/2 failure. A stream the upstream refused (`REFUSED_STREAM`) was never acted on, so it
/// counts as nothing sent; otherwise the request may have been seen, and a connection that ends
/// under it is a reset.
fn protocol_error(backend: &BackendRt, ep: &EndpointRt, e: hyper::Error) -> ProxyError {
    tracing::warn!(
        backend = &*backend.id,
        upstream = &*ep.address,
        "HTTP/2 upstream failed: {e}"
    );
    let h2 = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<h2::Error>());
    let err = ProxyError::new(
        ErrorKind::UpstreamProtocol,
        format!("the connection to backend {} failed", backend.id),
    );
    match h2 {
        Some(h) if h.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            err.because(Cause::RefusedStream)
        }
        Some(h) if h.is_reset() || h.is_io() || h.is_go_away() => {
            err.because(Cause::Reset).at(Progress::HeadSent)
        }
        _ => err.at(Progress::HeadSent),
    }
}

/// The endpoint's HTTP/2 connection, made when there is none (or it closed).
async fn h2_sender(
    backend: &BackendRt,
    ep: &EndpointRt,
) -> Result<http2::SendRequest<RequestBody>, ProxyError> {
    if let Some(tx) = ep.shared.h2.load().as_ref().filter(|tx| !tx.is_closed()) {
        return Ok(http2::SendRequest::clone(tx));
    }
    // Boxed: connecting is rare and its state large; inline, it would be copied with every
    // request's future.
    Box::pin(h2_connect(backend, ep)).await
}

async fn h2_connect(
    backend: &BackendRt,
    ep: &EndpointRt,
) -> Result<http2::SendRequest<RequestBody>, ProxyError> {
    let (stream, slot) = connect_counted(backend, ep).await?;
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol_error(backend, ep, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
        drop(slot);
    });
    ep.shared.h2.store(Some(Arc::new(tx.clone())));
    Ok(tx)
}

/// The head of a request to send: owned where it is sent once; borrowed where the exchange keeps
/// it for another attempt (retries), so that the HTTP/1.1 codec, which writes it from a
/// reference, needs no copy of it per attempt. HTTP/2 (hyper's client) takes an owned head: a
/// borrowed one is copied for it.
// Unboxed on purpose: the owned head is every request's case, and a box would be an allocation
// per request; the value lives in the send future, never in a collection.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Head<'a> {
    Owned(http::request::Parts),
    Kept(&'a http::request::Parts),
}

impl Head<'_> {
    fn get(&self) -> &http::request::Parts {
        match self {
            Head::Owned(p) => p,
            Head::Kept(p) => p,
        }
    }

    fn into_owned(self) -> http::request::Parts {
        match self {
            Head::Owned(p) => p,
            Head::Kept(p) => {
                // `Parts` has a private field: start from an empty one.
                let (mut head, ()) = Request::new(()).into_parts();
                head.method = p.method.clone();
                head.uri = p.uri.clone();
                head.version = p.version;
                head.headers = p.headers.clone();
                head
            }
        }
    }
}

/// Sends the request (`head` and `body`), with the `extra` header fields, to `ep` and waits for
/// the response head. `now` is a recent clock reading.
pub(crate) async fn send(
    backend: &BackendRt,
    ep: &EndpointRt,
    head: Head<'_>,
    body: RequestBody,
    extra: &Extra<'_>,
    now: Instant,
) -> Result<Response<UpstreamBody>, ProxyError> {
    match backend.protocol {
        BackendProtocol::HTTP2 => {
            let mut req = Request::from_parts(head.into_owned(), body);
            for (name, value) in extra.0.iter().flatten() {
                req.headers_mut().insert(*name, (*value).clone());
            }
            let mut tx = h2_sender(backend, ep).await?;
            // hyper reports a request body cut at its limit only as a reset stream.
            let cut = req.body().limit_tripped();
            let mut resp = tx.send_request(req).await.map_err(|e| match cut {
                Some(c) if c.load(std::sync::atomic::Ordering::Relaxed) => ProxyError::new(
                    ErrorKind::PayloadTooLarge,
                    "the request body is larger than this route accepts",
                ),
                _ => protocol_error(backend, ep, e),
            })?;
            // The client's connection keeps its own version (see `h1::exchange`).
            *resp.version_mut() = http::Version::HTTP_11;
            Ok(resp.map(UpstreamBody::H2))
        }
        BackendProtocol::HTTP1 => {
            let key = ep.shared.pool_key;
            let mut body = body;
            loop {
                let conn = match pool::checkout(key, now) {
                    Some(c) => c,
                    // Boxed: connecting is rare and its state large (see `h2_sender`).
                    None => {
                        let (stream, slot) = Box::pin(connect_counted(backend, ep)).await?;
                        h1::Conn::new(stream).counted(slot)
                    }
                };
                let idle = backend.idle_timeout;
                match h1::exchange(conn, head.get(), body, extra, &ep.address, key, idle).await {
                    Ok(resp) => return Ok(resp.map(UpstreamBody::H1)),
                    // The upstream closed a pooled connection as the request went out; only a
                    // reused connection reports this, so the loop ends on a fresh one at the latest.
                    Err(h1::ExchangeError::Stale) => body = RequestBody::empty(),
                    Err(h1::ExchangeError::Failed(err)) => {
                        tracing::debug!(upstream = &*ep.address, "{err}");
                        return Err(err);
                    }
                }
            }
        }
    }
}

impl UpstreamBody {
    /// The upstream connection of a 101 response (HTTP/1.1 only: HTTP/2 has no 101).
    pub(crate) fn upgraded(&mut self) -> Option<h1::Upgraded> {
        match self {
            UpstreamBody::H1(b) => b.upgraded(),
            UpstreamBody::H2(_) | UpstreamBody::Mapped(_) => None,
        }
    }
}
