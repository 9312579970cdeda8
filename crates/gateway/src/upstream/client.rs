//! Request flow, step 9: the upstream client — connect, send, and hand back the response with the
//! connection to return to the pool once its body has been read.

use super::backend::{BackendRt, EndpointRt};
use super::pool;
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::body::RequestBody;
use gatehouse_config::BackendProtocol;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// An HTTP/1.1 connection lent to one exchange, returned to the pool when the response body ends.
pub struct Lease {
    /// Pool key of the endpoint.
    pub key: u64,
    /// How long it may then sit idle in the pool.
    pub max_idle: std::time::Duration,
    /// The connection.
    pub tx: http1::SendRequest<RequestBody>,
}

async fn connect(backend: &BackendRt, ep: &EndpointRt) -> Result<TcpStream, ProxyError> {
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
    match tokio::time::timeout(backend.connect_timeout, attempt).await {
        Err(_) => Err(fail(format!(
            "connecting to {} timed out after {:?}",
            ep.address, backend.connect_timeout
        ))),
        Ok(Err(e)) => Err(fail(format!("cannot connect to {}: {e}", ep.address))),
        Ok(Ok(s)) => {
            // Latency over throughput: requests are small and already batched by the client.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

fn protocol_error(ep: &EndpointRt, e: hyper::Error) -> ProxyError {
    ProxyError::new(
        ErrorKind::UpstreamProtocol,
        format!("upstream {} failed: {e}", ep.address),
    )
}

async fn new_h1(
    backend: &BackendRt,
    ep: &EndpointRt,
) -> Result<http1::SendRequest<RequestBody>, ProxyError> {
    let stream = connect(backend, ep).await?;
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol_error(ep, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

async fn h2_sender(
    backend: &BackendRt,
    ep: &EndpointRt,
) -> Result<http2::SendRequest<RequestBody>, ProxyError> {
    if let Some(tx) = ep.shared.h2.load().as_ref().filter(|tx| !tx.is_closed()) {
        return Ok(http2::SendRequest::clone(tx));
    }
    let stream = connect(backend, ep).await?;
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol_error(ep, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    ep.shared.h2.store(Some(Arc::new(tx.clone())));
    Ok(tx)
}

/// Sends `req` to `ep`. For HTTP/1.1 the lease must be handed to the response body.
pub async fn send(
    backend: &BackendRt,
    ep: &EndpointRt,
    req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Option<Lease>), ProxyError> {
    match backend.protocol {
        BackendProtocol::HTTP2 => {
            let mut tx = h2_sender(backend, ep).await?;
            let resp = tx
                .send_request(req)
                .await
                .map_err(|e| protocol_error(ep, e))?;
            Ok((resp, None))
        }
        BackendProtocol::HTTP1 => {
            let key = ep.shared.pool_key;
            let mut req = req;
            // A pooled connection may have been closed by the upstream while idle; when hyper hands
            // the request back unsent, it is safe to try again on a fresh connection.
            while let Some(mut tx) = pool::checkout(key) {
                if tx.ready().await.is_err() {
                    continue;
                }
                match tx.try_send_request(req).await {
                    Ok(resp) => {
                        return Ok((
                            resp,
                            Some(Lease {
                                key,
                                tx,
                                max_idle: backend.idle_timeout,
                            }),
                        ))
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(protocol_error(ep, e.into_error())),
                    },
                }
            }
            let mut tx = new_h1(backend, ep).await?;
            let resp = tx
                .send_request(req)
                .await
                .map_err(|e| protocol_error(ep, e))?;
            Ok((
                resp,
                Some(Lease {
                    key,
                    tx,
                    max_idle: backend.idle_timeout,
                }),
            ))
        }
    }
}
