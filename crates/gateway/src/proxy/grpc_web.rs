//! Request flow, gRPC-Web (browser clients): a request with `content-type: application/grpc-web`
//! or `application/grpc-web-text` (base64 bodies) to a backend speaking HTTP/2 is sent upstream
//! as native gRPC (`application/grpc`, `te: trailers`, the text body decoded), and the answer comes
//! back in the client's dialect: its content type, the messages as they are (base64 for text),
//! and the gRPC trailers as one last frame in the body (flag `0x80`, then `name:value\r\n`
//! lines), since browsers cannot read HTTP trailers. Looked for only when the backend speaks
//! HTTP/2: requests to HTTP/1.1 backends pay nothing.

use crate::telemetry::metrics::RequestMetrics;
use crate::upstream::client::UpstreamBody;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// A gRPC-Web request: its dialect, and its content type (the answer's).
pub(crate) struct Web {
    /// `application/grpc-web-text`: bodies are base64 both ways.
    pub(crate) text: bool,
    content_type: HeaderValue,
}

const PREFIX: &[u8] = b"application/grpc-web";

/// The request's gRPC-Web dialect, when it is one.
pub(crate) fn detect(headers: &HeaderMap) -> Option<Web> {
    let ct = headers.get(header::CONTENT_TYPE)?;
    let b = ct.as_bytes();
    if b.len() < PREFIX.len() || !b[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &b[PREFIX.len()..];
    let text = rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"-text");
    Some(Web {
        text,
        content_type: ct.clone(),
    })
}

/// Turns the prepared upstream request head into native gRPC's. The body's length changes when
/// it is decoded, so a text request loses its `content-length`.
pub(crate) fn request(parts: &mut Parts, web: &Web) {
    let h = &mut parts.headers;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    if web.text {
        h.remove(header::CONTENT_LENGTH);
    }
}

/// The upstream's native gRPC answer in the client's dialect (hop-by-hop fields removed here, as
/// `finish` does for HTTP/2 bodies). A trailers-only answer keeps its status in the headers,
/// which gRPC-Web allows. The call's final status is counted, from those headers or the trailers.
pub(crate) fn response(
    resp: Response<UpstreamBody>,
    web: &Web,
    metrics: Option<&Arc<RequestMetrics>>,
) -> Response<UpstreamBody> {
    let (mut parts, body) = resp.into_parts();
    let UpstreamBody::H2(inner) = body else {
        return Response::from_parts(parts, body);
    };
    if inner.is_end_stream() {
        super::grpc::count(metrics, &parts.headers);
    }
    super::forward::strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    if parts.headers.contains_key(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, web.content_type.clone());
    }
    let body = WebBody {
        inner,
        text: web.text,
        pending: BytesMut::new(),
        ended: false,
        metrics: metrics.cloned(),
    };
    Response::from_parts(parts, UpstreamBody::Mapped(Box::new(body)))
}

/// A native gRPC response body re-framed for gRPC-Web.
struct WebBody {
    inner: Incoming,
    text: bool,
    /// Text mode: bytes not yet encoded (fewer than 3, so the base64 stream has no padding
    /// until its end).
    pending: BytesMut,
    ended: bool,
    metrics: Option<Arc<RequestMetrics>>,
}

/// The trailers as a gRPC-Web trailer frame.
fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut block = Vec::new();
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.push(b':');
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(5 + block.len());
    out.put_u8(0x80);
    out.put_u32(block.len() as u32);
    out.extend_from_slice(&block);
    out.freeze()
}

impl WebBody {
    /// `data` as it goes to the client: unchanged, or base64 of whole 3-byte groups (the rest
    /// waits for the next frame, or `last`).
    fn encode(&mut self, data: Bytes, last: bool) -> Bytes {
        if !self.text {
            return data;
        }
        self.pending.extend_from_slice(&data);
        let n = if last {
            self.pending.len()
        } else {
            self.pending.len() / 3 * 3
        };
        let chunk = self.pending.split_to(n);
        Bytes::from(STANDARD.encode(&chunk))
    }
}

impl Body for WebBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let data = this.encode(data, false);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().unwrap_or_default();
                    super::grpc::count(this.metrics.as_ref(), &trailers);
                    this.ended = true;
                    let data = this.encode(trailer_frame(&trailers), true);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                this.ended = true;
                let rest = this.encode(Bytes::new(), true);
                Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Decodes a `grpc-web-text` request body as it streams: base64 in whole 4-character groups
/// (the rest waits for the next frame); padding may close a group mid-stream, where a client
/// encoded each message on its own.
#[derive(Default)]
pub(crate) struct TextDecoder {
    pending: BytesMut,
}

/// A request body that is not valid base64.
#[derive(Debug)]
pub(crate) struct BadBase64;

impl std::fmt::Display for BadBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the grpc-web-text request body is not valid base64")
    }
}

impl std::error::Error for BadBase64 {}

impl TextDecoder {
    /// The bytes `data` completes; at the `end`, anything left over is an error.
    pub(crate) fn decode(&mut self, data: &[u8], end: bool) -> Result<Bytes, BadBase64> {
        self.pending
            .extend(data.iter().filter(|b| !b.is_ascii_whitespace()));
        let whole = self.pending.len() / 4 * 4;
        if end && whole != self.pending.len() {
            return Err(BadBase64);
        }
        let groups = self.pending.split_to(whole);
        let mut out = Vec::with_capacity(whole / 4 * 3);
        let mut start = 0;
        for i in (0..whole).step_by(4) {
            if groups[i + 3] == b'=' {
                STANDARD
                    .decode_vec(&groups[start..i + 4], &mut out)
                    .map_err(|_| BadBase64)?;
                start = i + 4;
            }
        }
        STANDARD
            .decode_vec(&groups[start..], &mut out)
            .map_err(|_| BadBase64)?;
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_decoding_takes_any_split_and_padding_between_messages() {
        let a = STANDARD.encode(b"\0\0\0\0\x01x");
        let b = STANDARD.encode(b"\0\0\0\0\x02yz");
        let all = format!("{a}{b}");
        for cut in 0..all.len() {
            let mut d = TextDecoder::default();
            let mut out = d.decode(&all.as_bytes()[..cut], false).unwrap().to_vec();
            out.extend_from_slice(&d.decode(&all.as_bytes()[cut..], true).unwrap());
            assert_eq!(out, b"\0\0\0\0\x01x\0\0\0\0\x02yz", "cut at {cut}");
        }
        let mut d = TextDecoder::default();
        assert!(
            d.decode(b"AAA", true).is_err(),
            "a partial group at the end"
        );
        assert!(TextDecoder::default().decode(b"A*AA", false).is_err());
    }

    #[test]
    fn trailers_become_one_frame_flagged_0x80() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("grpc-message", HeaderValue::from_static("ok"));
        let f = trailer_frame(&t);
        let block = b"grpc-status:0\r\ngrpc-message:ok\r\n";
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[1..5], &(block.len() as u32).to_be_bytes());
        assert_eq!(&f[5..], block);
    }
}
