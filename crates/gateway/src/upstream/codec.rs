//! Request flow, step 9 (HTTP/1.1 upstreams): the wire format — the request head written to the
//! upstream, its response head parsed (by `httparse`) with the body framing of RFC 9112 §6, and
//! chunked bodies decoded.
//!
//! The upstream side is a trusted-but-fallible peer held to the same rules as a client (RFC 9112
//! §6.3): a length beside a transfer coding, a repeated or listed length, a transfer coding that
//! is not one `chunked`, a folded or malformed field, a head too large — each fails the exchange
//! with a 502 (`upstream_protocol`), never a guess that could desynchronise a reused connection
//! or hand the client a message framed differently than the upstream meant it.

use crate::proxy::forward::{self, Extra};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use std::mem::MaybeUninit;

/// The most header fields accepted in one upstream response head.
const MAX_HEADERS: usize = 128;
/// The largest upstream response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header fields as received (hop-by-hop ones are removed later, by the proxy).
    pub headers: HeaderMap,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection may carry another request after this exchange.
    pub keep_alive: bool,
}

/// Why an upstream message could not be used.
#[derive(Debug)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

/// Writes the request head, with the `extra` fields after the map's. `chunked` adds `Transfer-Encoding: chunked` (the body length is
/// unknown); the headers must already be free of hop-by-hop fields.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    extra: &Extra<'_>,
    default_host: &str,
    chunked: bool,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(default_host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers
        .iter()
        .map(|(n, v)| (n.as_str(), v))
        .chain(extra.iter())
    {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Where one header field lies in a head: name start/end, value start/end.
pub type Span = (usize, usize, usize, usize);

/// Parses a response head from the start of `buf`. `Ok(None)`: more bytes are needed. On success
/// the head's bytes are removed from `buf`; header values share its memory (no copy). `spans` is
/// scratch space, kept by the caller so that parsing allocates nothing but the header map.
pub fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    spans: &mut Vec<Span>,
) -> Result<Option<Head>, WireError> {
    let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(err(format!("response head larger than {MAX_HEAD} bytes")));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(err(format!(
                "more than {MAX_HEADERS} response header fields"
            )))
        }
        Err(e) => return Err(err(format!("malformed response head: {e}"))),
    };
    // httparse takes any three digits; RFC 9110 §15 defines 100-599, and a code outside it has no
    // meaning a client could be given.
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .ok()
        .filter(|_| (100..600).contains(&code))
        .ok_or_else(|| err(format!("bad status {code}")))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Offsets into `buf`, so names and values can be read from one frozen `Bytes` after the
    // parser's borrow ends (values then share its memory instead of being copied).
    let base = buf.as_ptr() as usize;
    spans.clear();
    spans.extend(resp.headers.iter().map(|h| {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        (name, name + h.name.len(), value, value + h.value.len())
    }));
    let head_bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    // The fields that decide framing and reuse are noted while the map is built, which saves
    // a hashed lookup for each of them afterwards.
    let mut framing_fields = FramingFields::default();
    for &(ns, ne, vs, ve) in spans.iter() {
        let name = HeaderName::from_bytes(&head_bytes[ns..ne]).map_err(|_| {
            err(format!(
                "bad header name {:?}",
                String::from_utf8_lossy(&head_bytes[ns..ne])
            ))
        })?;
        // httparse has already refused control characters, so this cannot fail in practice;
        // `from_maybe_shared` keeps the check rather than trusting that.
        let value = HeaderValue::from_maybe_shared(head_bytes.slice(vs..ve))
            .map_err(|_| err(format!("bad value for header {name}")))?;
        // Hop-by-hop fields (RFC 9110 §7.6.1) are read for framing and then left out of the map,
        // which is what goes downstream.
        if framing_fields.note(&name, &value)? {
            headers.append(name, value);
        }
    }
    framing_fields.tidy(&mut headers);
    if framing_fields.transfer_encoding && framing_fields.has_length {
        // RFC 9112 §6.1: a sender must not send both; which one a recipient believes is the
        // whole of a desync attack.
        return Err(err("both content-length and transfer-encoding in response"));
    }
    let (framing, mut keep_alive) = framing(status, method, &framing_fields);
    keep_alive &= version == Version::HTTP_11 && !framing_fields.close;
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// What the framing rules need from a response head.
#[derive(Default)]
struct FramingFields {
    length: Option<u64>,
    /// Whether Transfer-Encoding is present, and whether its codings are exactly `chunked`.
    transfer_encoding: bool,
    chunked: bool,
    /// Transfer codings seen, over all Transfer-Encoding fields.
    codings: usize,
    /// Whether Connection carries `close`.
    close: bool,
    /// Other fields Connection names as hop-by-hop.
    connection_named: Vec<HeaderName>,
    /// Whether a Content-Length was seen.
    has_length: bool,
}

impl FramingFields {
    /// What the fields ask of the map once it is built: drop what Connection named.
    fn tidy(&mut self, headers: &mut HeaderMap) {
        for name in self.connection_named.drain(..) {
            headers.remove(name);
        }
    }

    /// Notes a field; `false` when it is hop-by-hop and must not be passed on.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<bool, WireError> {
        if name == header::CONTENT_LENGTH {
            // RFC 9110 §8.6 lets a recipient collapse a list of equal values; a proxy that does
            // so agrees with some parsers behind or in front of it and not others, so a
            // repeated or listed length is refused like a conflicting one.
            if self.has_length {
                return Err(err("repeated content-length in response"));
            }
            self.has_length = true;
            let part = value.as_bytes().trim_ascii();
            let n = std::str::from_utf8(part)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| err("invalid content-length in response"))?;
            self.length = Some(n);
            return Ok(true);
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            // Codings accumulate over repeated fields. Only `chunked` alone is passed through:
            // the proxy would have to undo any other coding (gzip) to reframe the body, and
            // handing it on as Content-Encoding would change what the representation is
            // (RFC 9110 §8.4), so such a response is refused (502) rather than guessed at.
            for t in tokens(value) {
                self.codings += 1;
                if !t.eq_ignore_ascii_case("chunked") || self.codings > 1 {
                    return Err(err(format!(
                        "unsupported transfer coding {:?} in response",
                        value.to_str().unwrap_or("?")
                    )));
                }
                self.chunked = true;
            }
            return Ok(false);
        } else if name == header::CONNECTION {
            self.close |= tokens(value).any(|t| t.eq_ignore_ascii_case("close"));
            self.connection_named
                .extend(forward::connection_named(value));
            return Ok(false);
        } else if forward::hop_by_hop_index(name.as_str()).is_some() {
            return Ok(false);
        }
        Ok(true)
    }
}

fn tokens(value: &HeaderValue) -> impl DoubleEndedIterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// RFC 9112 §6.3, for a response. Returns the framing and whether it allows reuse.
fn framing(status: StatusCode, method: &Method, fields: &FramingFields) -> (Framing, bool) {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return (Framing::Empty, true);
    }
    if fields.transfer_encoding {
        // Both framings together were refused while parsing.
        return if fields.chunked {
            (Framing::Chunked, true)
        } else {
            (Framing::Close, false)
        };
    }
    match fields.length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Close, false),
    }
}

/// Where a chunked body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
    /// Finished.
    Done,
}

/// What one step of chunked decoding produced.
#[derive(Debug)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section (possibly empty); the body is complete.
    End(Option<HeaderMap>),
    /// More input is needed.
    NeedMore,
}

impl Chunked {
    /// Decodes from the front of `buf`, consuming what it uses.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match *self {
                Chunked::Size => match size_line(buf)? {
                    None => return Ok(Decoded::NeedMore),
                    Some(0) => *self = Chunked::Trailers,
                    Some(size) => *self = Chunked::Data(size),
                },
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    let data = buf.split_to(n).freeze();
                    *self = if left == n as u64 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n as u64)
                    };
                    return Ok(Decoded::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(err("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Decoded::End(None));
                    }
                    let mut fields = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((used, parsed))) => {
                            let mut map = HeaderMap::with_capacity(parsed.len());
                            for f in parsed {
                                if let (Ok(n), Ok(v)) = (
                                    HeaderName::from_bytes(f.name.as_bytes()),
                                    HeaderValue::from_bytes(f.value),
                                ) {
                                    map.append(n, v);
                                }
                            }
                            buf.advance(used);
                            *self = Chunked::Done;
                            return Ok(Decoded::End(Some(map)));
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                            return Ok(Decoded::NeedMore)
                        }
                        _ => return Err(err("malformed trailer section in response body")),
                    }
                }
                Chunked::Done => return Ok(Decoded::End(None)),
            }
        }
    }
}

/// Reads a chunk-size line from the front of `buf`: the size, or `None` when more is needed.
fn size_line(buf: &mut BytesMut) -> Result<Option<u64>, WireError> {
    match httparse::parse_chunk_size(buf) {
        // httparse reads an empty size as 0 (a premature end of body) and takes a bare LF inside
        // an extension; RFC 9112 §7.1 allows neither, and either would let a broken body pass
        // as a complete one.
        _ if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
            Err(err("malformed chunk size in response body"))
        }
        Ok(httparse::Status::Complete((used, _))) if buf[..used - 2].contains(&b'\n') => {
            Err(err("malformed chunk extension in response body"))
        }
        Ok(httparse::Status::Complete((used, size))) => {
            buf.advance(used);
            Ok(Some(size))
        }
        Ok(httparse::Status::Partial) if buf.len() < 4096 => Ok(None),
        _ => Err(err("malformed chunk size in response body")),
    }
}

/// The chunk-size line for `len` bytes of data.
pub fn chunk_prefix(len: usize) -> Vec<u8> {
    let mut out = format!("{len:x}").into_bytes();
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<Head>, WireError> {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, &method, &mut Vec::new())
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        let h = parse("HTTP/1.1 204 No Content\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h = parse("HTTP/1.1 200 OK\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = parse(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        let h = parse("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn bad_heads_are_errors_and_partial_heads_wait() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            // Both framings, either order; a repeated or listed length, even of equal values.
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-length: 7\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +7\r\n\r\n",
            // Field syntax: obs-fold, whitespace before the colon, control characters.
            "HTTP/1.1 200 OK\r\nx-a: a\r\n b\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length : 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-a: a\0b\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx-a: a\rb\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 600 Odd\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
            // Only `chunked`, once, is a transfer coding the proxy can pass through.
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            "SMTP ready\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw:?}");
        }
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-le", Method::GET)
            .unwrap()
            .is_none());
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(parse(&huge, Method::GET).is_err());
    }

    #[test]
    fn hop_by_hop_fields_are_left_out_of_the_map() {
        let h = parse(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-trace\r\nkeep-alive: timeout=5\r\nx-trace: 1\r\nupgrade: h2c\r\nproxy-connection: x\r\nte: trailers\r\ntransfer-encoding: chunked\r\nx-kept: 2\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = h.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
    }

    #[test]
    fn head_is_consumed_and_body_bytes_stay() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nX-A: 1\r\ncontent-length: 2\r\n\r\nhi");
        let h = parse_head(&mut buf, &Method::GET, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..], b"hi");
        assert_eq!(h.headers["x-a"], "1");
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\nNEXT";
        for split in 1..wire.len() {
            let mut dec = Chunked::Size;
            let mut buf = BytesMut::from(&wire[..split]);
            let mut body = Vec::new();
            let mut rest = &wire[split..];
            let trailers = loop {
                match dec.decode(&mut buf).unwrap() {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::End(t) => break t,
                    Decoded::NeedMore => {
                        assert!(!rest.is_empty(), "ran out at split {split}");
                        buf.extend_from_slice(&rest[..1]);
                        rest = &rest[1..];
                    }
                }
            };
            assert_eq!(body, b"hello world", "split {split}");
            assert_eq!(trailers.unwrap()["grpc-status"], "0");
            buf.extend_from_slice(rest);
            assert_eq!(&buf[..], b"NEXT", "split {split}");
        }
        for bad in ["zz\r\n", "\r\n", ";ext\r\n", " 5\r\n", "5;a\nb\r\n"] {
            let mut dec = Chunked::Size;
            assert!(dec.decode(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
        let mut dec = Chunked::Size;
        assert!(dec.decode(&mut BytesMut::from("2\r\nabXY")).is_ok());
        assert!(dec.decode(&mut BytesMut::from("XY")).is_err());
    }

    #[test]
    fn request_heads_carry_host_and_framing() {
        let mut out = Vec::new();
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        let mut extra = Extra::default();
        let two = HeaderValue::from_static("2");
        extra.0[1] = Some(("x-b", &two));
        encode_head(
            &mut out,
            &Method::POST,
            "/p?q=1",
            &h,
            &extra,
            "10.0.0.1:80",
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: 10.0.0.1:80\r\nx-a: 1\r\nx-b: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(chunk_prefix(255), b"ff\r\n");
    }
}
