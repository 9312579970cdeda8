//! Connection flow, HTTP/1.1, before any request: hyper answers a request head it cannot accept
//! by itself — 431 past the listener's `limits.maxRequestHeadersSize`, 414 for a target past its
//! own 64 KiB, 400 for a head it cannot parse — with a bare status line, before the gateway sees
//! a request. This wrapper around the connection's stream recognises that answer as hyper writes
//! it and writes the gateway's JSON error in its place (same status, `x-request-id`,
//! `Connection: close`), counted in `gatehouse_proxy_errors_total{route="none"}`.
//!
//! How it is recognised: no request of the connection is in flight (every response the gateway
//! makes is written while its request counts as in flight, except a bodiless one, whose guard
//! may end first), and the head is a 400/414/431 without `x-request-id` — which every response
//! of the gateway carries, a forwarded upstream one included. A normal write costs one atomic
//! load. hyper offers no hook for its automatic answers; this is the narrowest place to take one.
//!
//! Reads pass through `framing_guard.rs`, which makes hyper refuse heads with an ambiguous length
//! (both framings, or two `Content-Length` lines) that it would otherwise accept.

use super::framing_guard::FramingGuard;
use super::handler::{new_request_id, ConnInfo, X_REQUEST_ID};
use crate::error::{ErrorKind, ProxyError};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use bytes::{BufMut, Bytes, BytesMut};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's stream whose automatic hyper error answers become the gateway's JSON errors.
pub(crate) struct JsonParseErrors<IO> {
    io: IO,
    info: Arc<ConnInfo>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The gateway's answer being written in place of hyper's, once one was recognised.
    replacing: Option<Replacement>,
    /// Spoils request heads with an ambiguous length as they are read.
    guard: FramingGuard,
}

/// The JSON answer, how much of it is written, and how many of hyper's bytes it stands for.
struct Replacement {
    bytes: Bytes,
    written: usize,
    claimed: usize,
}

impl<IO> JsonParseErrors<IO> {
    pub(crate) fn new(io: IO, info: Arc<ConnInfo>, snapshot: Arc<ArcSwap<Snapshot>>) -> Self {
        JsonParseErrors {
            io,
            info,
            snapshot,
            replacing: None,
            guard: FramingGuard::new(),
        }
    }

    /// Starts replacing `buf` when it is hyper's own error answer.
    fn inspect(&mut self, buf: &[u8]) {
        if self.replacing.is_some() || self.info.in_flight.load(Ordering::Relaxed) != 0 {
            return;
        }
        if let Some(kind) = hyper_answer(buf) {
            let snap = self.snapshot.load();
            snap.no_route_errors.inc(&snap.metrics, kind);
            self.replacing = Some(Replacement {
                bytes: json_answer(kind, self.guard.refused()),
                written: 0,
                claimed: buf.len(),
            });
        }
    }
}

impl<IO: AsyncWrite + Unpin> JsonParseErrors<IO> {
    /// Writes the rest of the replacement; done, it reports hyper's bytes as written.
    fn poll_replace(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        let r = self.replacing.as_mut()?;
        if r.written == r.bytes.len() {
            // Written already: what hyper writes after its head (nothing, for these answers).
            return None;
        }
        while r.written < r.bytes.len() {
            match Pin::new(&mut self.io).poll_write(cx, &r.bytes[r.written..]) {
                Poll::Pending => return Some(Poll::Pending),
                Poll::Ready(Ok(0)) => {
                    return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => r.written += n,
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
            }
        }
        Some(Poll::Ready(Ok(r.claimed)))
    }
}

/// The kind of hyper's automatic answer that `buf` starts with, if it is one: a complete head
/// with status 400, 414 or 431 and no `x-request-id`.
fn hyper_answer(buf: &[u8]) -> Option<ErrorKind> {
    let kind = match buf.get(..13)? {
        b"HTTP/1.1 400 " => ErrorKind::BadRequest,
        b"HTTP/1.1 414 " => ErrorKind::UriTooLong,
        b"HTTP/1.1 431 " => ErrorKind::HeaderTooLarge,
        _ => return None,
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..end];
    let has_id = head
        .split(|&b| b == b'\n')
        .any(|line| line.len() > 13 && line[..13].eq_ignore_ascii_case(b"x-request-id:"));
    (!has_id).then_some(kind)
}

/// The gateway's answer for `kind`, as bytes on the wire; `ambiguous`: the framing guard refused
/// the head.
fn json_answer(kind: ErrorKind, ambiguous: bool) -> Bytes {
    let message = match kind {
        ErrorKind::BadRequest if ambiguous => {
            "the request has both Content-Length and Transfer-Encoding, or Content-Length twice"
        }
        ErrorKind::HeaderTooLarge => {
            "the request head is larger than this listener's limit (limits.maxRequestHeadersSize)"
        }
        ErrorKind::UriTooLong => "the request target is longer than 64 KiB",
        _ => "the request head could not be parsed as HTTP/1.1",
    };
    let rid = new_request_id();
    let resp = ProxyError::new(kind, message).to_response(&rid);
    let status = resp.status();
    let mut out = BytesMut::with_capacity(256 + resp.body().len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in resp.headers() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(X_REQUEST_ID.as_str().as_bytes());
    out.put_slice(b": ");
    out.put_slice(rid.as_bytes());
    let length = resp.body().len().to_string();
    for line in [
        "\r\ncontent-length: ",
        &length,
        "\r\nconnection: close\r\n\r\n",
    ] {
        out.put_slice(line.as_bytes());
    }
    out.put_slice(resp.body());
    out.freeze()
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonParseErrors<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if read.is_ready() {
            this.guard.scan(&mut buf.filled_mut()[before..], &this.info);
        }
        read
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.inspect(buf);
        if let Some(done) = this.poll_replace(cx) {
            return done;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper queues a head as one buffer: its automatic answer is the first one, whole.
        if let Some(first) = bufs.first() {
            this.inspect(first);
        }
        if let Some(done) = this.poll_replace(cx) {
            return done;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_answers_are_told_from_the_gateways_own() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 13:00:00 GMT\r\n\r\n";
        assert_eq!(hyper_answer(hyper_431), Some(ErrorKind::HeaderTooLarge));
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_answer(hyper_400), Some(ErrorKind::BadRequest));
        // The gateway's answers (its own or an upstream's) carry the request id.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nX-Request-Id: abc\r\n\r\n";
        assert_eq!(hyper_answer(ours), None);
        assert_eq!(hyper_answer(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        // An incomplete head is never taken for one.
        assert_eq!(hyper_answer(b"HTTP/1.1 431 Request"), None);
    }

    #[test]
    fn the_replacement_is_a_complete_json_answer() {
        let bytes = json_answer(ErrorKind::HeaderTooLarge, false);
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "request_header_too_large");
    }
}
