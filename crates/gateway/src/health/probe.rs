//! Control plane, active health checks: one probe of one endpoint — a TCP connect, an HTTP GET, or
//! a call of the gRPC health protocol (`grpc.health.v1.Health/Check`) — bounded by the check's
//! timeout. Each probe uses a connection of its own, never a pooled one, so it sees what a new
//! request would — over the same transport (TCP, or TLS for backends with `tls`).

use crate::upstream::transport::{TlsConnect, Transport};
use bytes::{Buf, Bytes};
use gatehouse_config::{BackendProtocol, Probe};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Where to connect: the endpoint's address, resolved now when it is a host name.
pub(super) async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = address.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolved to no address"))
}

/// Runs one probe (over TLS when the backend has `tls`: the handshake is part of it); `Ok` means
/// healthy, `Err` says why not.
pub(super) async fn check(
    probe: &Probe,
    protocol: BackendProtocol,
    tls: Option<&TlsConnect>,
    address: &str,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, attempt(probe, protocol, tls, address)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn attempt(
    probe: &Probe,
    protocol: BackendProtocol,
    tls: Option<&TlsConnect>,
    address: &str,
) -> Result<(), String> {
    let addr = resolve(address).await?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tcp = match tls {
        None => Transport::Tcp(tcp),
        Some(tls) => tls
            .handshake(tcp, address)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?,
    };
    match probe {
        Probe::Tcp => Ok(()),
        Probe::Http {
            path,
            expected_statuses,
            host,
        } => {
            let host = host.as_deref().unwrap_or(address);
            let status = http_get(tcp, protocol, host, path).await?;
            if expected_statuses
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&status))
            {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
        Probe::Grpc { service } => grpc_check(tcp, address, service).await,
    }
}

async fn http_get(
    tcp: Transport,
    protocol: BackendProtocol,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let req = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "gatehouse-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let io = TokioIo::new(tcp);
    let resp = match protocol {
        BackendProtocol::HTTP1 => {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            send.send_request(req).await
        }
        BackendProtocol::HTTP2 => {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            let mut req = req;
            *req.uri_mut() = format!("http://{host}{path}")
                .parse()
                .map_err(|e| format!("bad path: {e}"))?;
            send.send_request(req).await
        }
    }
    .map_err(|e| format!("request: {e}"))?;
    Ok(resp.status().as_u16())
}

/// `HealthCheckRequest { service }` in a gRPC frame. The message has one string field, so it is
/// written by hand rather than pulling in a protobuf code generator.
fn grpc_request(service: &str) -> Bytes {
    let mut msg = vec![0x0a];
    let mut len = service.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            msg.push(b);
            break;
        }
        msg.push(b | 0x80);
    }
    msg.extend_from_slice(service.as_bytes());
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    Bytes::from(frame)
}

/// The `status` of a framed `HealthCheckResponse` (field 1, varint); 1 is SERVING.
fn grpc_status_of(mut body: Bytes) -> Option<u64> {
    if body.len() < 5 {
        return None;
    }
    body.advance(5);
    let mut i = 0;
    while i < body.len() {
        let key = body[i];
        i += 1;
        let mut value = 0u64;
        let mut shift = 0;
        match key & 7 {
            0 => loop {
                let b = *body.get(i)?;
                i += 1;
                value |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            },
            _ => return None,
        }
        if key >> 3 == 1 {
            return Some(value);
        }
    }
    // A missing field is its default: UNKNOWN (0).
    Some(0)
}

async fn grpc_check(tcp: Transport, address: &str, service: &str) -> Result<(), String> {
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "gatehouse-health-check")
        .body(Full::new(grpc_request(service)))
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("HTTP status {}", resp.status()));
    }
    let head_status = resp.headers().get("grpc-status").cloned();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response: {e}"))?;
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status").cloned())
        .or(head_status);
    match grpc_status.as_ref().map(|v| v.as_bytes()) {
        Some(b"0") => {}
        Some(s) => return Err(format!("grpc-status {}", String::from_utf8_lossy(s))),
        None => return Err("no grpc-status".into()),
    }
    match grpc_status_of(collected.to_bytes()) {
        Some(1) => Ok(()),
        Some(s) => Err(format!("serving status {s}")),
        None => Err("malformed HealthCheckResponse".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_health_messages_encode_and_decode() {
        assert_eq!(&grpc_request("")[..], &[0, 0, 0, 0, 2, 0x0a, 0]);
        assert_eq!(
            &grpc_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
        assert_eq!(
            grpc_status_of(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1])),
            Some(1)
        );
        assert_eq!(
            grpc_status_of(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 2])),
            Some(2)
        );
        assert_eq!(
            grpc_status_of(Bytes::from_static(&[0, 0, 0, 0, 0])),
            Some(0)
        );
        assert_eq!(grpc_status_of(Bytes::from_static(&[0, 0])), None);
    }
}
