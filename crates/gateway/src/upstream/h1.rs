//! Request flow, step 9 (HTTP/1.1 upstreams): one exchange on a pooled connection, driven inside
//! the request's own task.
//!
//! Why not hyper's client here: its connection runs as a separate task fed through channels, which
//! on a small proxied request costs more than the proxying itself (a task wake-up and three channel
//! hand-offs per request). The exchange below reads and writes the socket directly from the
//! request task; parsing is `httparse`'s, framing follows RFC 9112 (see `codec`). The request body
//! keeps streaming while the response is read (full duplex), and the connection returns to the
//! pool only when both messages are complete and the upstream allowed reuse.

use super::codec::{self, Chunked, Decoded, Framing, WireError};
use super::pool;
use super::transport::Transport;
use crate::error::{Cause, ErrorKind, Progress, ProxyError};
use crate::proxy::body::{request_body_fault, RequestBody};
use crate::proxy::forward::Extra;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite};

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// An idle upstream connection, with the buffers and state every exchange on it reuses (one
/// allocation for the connection's life rather than several per request).
pub struct Conn(Box<Duplex>);

impl Conn {
    /// A freshly connected socket (TLS already negotiated, for a backend with `tls`).
    pub(crate) fn new(io: Transport) -> Self {
        Conn(Box::new(Duplex {
            io,
            rbuf: BytesMut::new(),
            head: Vec::with_capacity(1024),
            head_pos: 0,
            spans: Vec::new(),
            out: [Bytes::new(), Bytes::new(), Bytes::new()],
            body: None,
            chunked_out: false,
            write_error: None,
            body_fault: None,
            got_bytes: false,
            reused: false,
            _slot: None,
        }))
    }

    /// The same connection, holding its unit of the backend's circuit-breaker `maxConnections`
    /// until it closes.
    pub(crate) fn counted(mut self, slot: Option<crate::state::breaker::Slot>) -> Self {
        self.0._slot = slot;
        self
    }

    /// Whether the upstream has closed (or written to) this idle connection; see
    /// `Transport::is_idle_open`.
    pub fn is_usable(&mut self) -> bool {
        self.0.io.is_idle_open()
    }
}

/// How an exchange failed.
pub enum ExchangeError {
    /// A reused connection was found closed before any response byte, and the request can be
    /// sent again as it was (it has no body): the caller retries on a fresh connection.
    Stale,
    /// Anything else: an upstream failure (502), or the client's request body failing (400, or
    /// 499 when the client went away). The message carries no address or OS error.
    Failed(ProxyError),
}

/// A connection and the state shared by both directions of its current exchange.
struct Duplex {
    io: Transport,
    rbuf: BytesMut,
    /// The encoded request head; `head_pos` of it is written.
    head: Vec<u8>,
    head_pos: usize,
    /// Scratch for the response head parser.
    spans: Vec<codec::Span>,
    /// Body bytes still to write: chunk size line, data, CRLF, sent with the head in one call.
    out: [Bytes; 3],
    body: Option<RequestBody>,
    chunked_out: bool,
    write_error: Option<io::Error>,
    /// The client's request body failed (malformed, or the client went away): the exchange ends
    /// at once, since the upstream would wait for the rest of a body that will never come.
    body_fault: Option<ErrorKind>,
    /// Whether any response byte has arrived.
    got_bytes: bool,
    /// Whether an earlier exchange used this connection.
    reused: bool,
    /// The circuit breaker's count of this connection, when the backend has one.
    _slot: Option<crate::state::breaker::Slot>,
}

impl Duplex {
    fn out_len(&self) -> usize {
        self.head.len() - self.head_pos + self.out.iter().map(Bytes::len).sum::<usize>()
    }

    /// Sends the request: what is queued, then the body frame by frame. `Ready(Ok)` once it has
    /// all been written; a failure is kept in `write_error` and stops the writing.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.write_error.is_some() {
            return Poll::Ready(());
        }
        loop {
            while self.out_len() > 0 {
                let slices = [
                    IoSlice::new(&self.head[self.head_pos..]),
                    IoSlice::new(&self.out[0]),
                    IoSlice::new(&self.out[1]),
                    IoSlice::new(&self.out[2]),
                ];
                match Pin::new(&mut self.io).poll_write_vectored(cx, &slices) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => {
                        self.write_error = Some(io::ErrorKind::WriteZero.into());
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(mut n)) => {
                        let k = n.min(self.head.len() - self.head_pos);
                        self.head_pos += k;
                        n -= k;
                        for part in &mut self.out {
                            let k = n.min(part.len());
                            bytes::Buf::advance(part, k);
                            n -= k;
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        self.write_error = Some(e);
                        return Poll::Ready(());
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(());
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    self.body = None;
                    if self.chunked_out {
                        self.out[0] = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
                Some(Ok(frame)) => {
                    // Trailers of a request are dropped, as every HTTP/1.1 proxy that does not
                    // negotiate them does.
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        if self.chunked_out {
                            self.out = [
                                Bytes::from(codec::chunk_prefix(data.len())),
                                data,
                                Bytes::from_static(b"\r\n"),
                            ];
                        } else {
                            self.out[1] = data;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!("client request body failed: {e}");
                    self.body = None;
                    self.body_fault = Some(request_body_fault(&*e));
                    return Poll::Ready(());
                }
            }
        }
    }

    /// How far the request got onto the wire.
    fn progress(&self) -> Progress {
        if self.head_pos == 0 {
            Progress::NothingSent
        } else if self.head_pos == self.head.len() && self.body.is_none() && self.out_len() == 0 {
            Progress::BodySent
        } else {
            Progress::HeadSent
        }
    }

    fn sent(&self) -> bool {
        self.write_error.is_none()
            && self.body_fault.is_none()
            && self.body.is_none()
            && self.out_len() == 0
    }

    /// Reads more of the response; `Ok(0)` is end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Once the slices handed on from the last read are gone this reuses the buffer from its
        // start, so reads keep landing in the same (cache-warm) memory.
        self.rbuf.reserve(READ_CHUNK);
        let n = ready!(pin!(self.io.read_buf(&mut self.rbuf)).poll(cx))?;
        self.got_bytes |= n > 0;
        Poll::Ready(Ok(n))
    }
}

/// Sends `req` and the `extra` fields on `conn` and waits for the response head. `default_host`
/// fills in a missing Host.
pub async fn exchange(
    conn: Conn,
    parts: &http::request::Parts,
    body: RequestBody,
    extra: &Extra<'_>,
    default_host: &str,
    pool_key: u64,
    max_idle: Duration,
) -> Result<Response<UpstreamBody>, ExchangeError> {
    let has_body = !body.is_end_stream();
    let chunked_out = has_body && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut d = conn.0;
    d.head.clear();
    d.head_pos = 0;
    codec::encode_head(
        &mut d.head,
        &parts.method,
        pq,
        &parts.headers,
        extra,
        default_host,
        chunked_out,
    );
    d.body = has_body.then_some(body);
    d.chunked_out = chunked_out;
    d.write_error = None;
    d.body_fault = None;
    d.got_bytes = false;
    let reused = d.reused;
    let head = poll_fn(|cx| poll_head(&mut d, cx, &parts.method, &parts.headers)).await;
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            let e = match e {
                // Safe to send again only when nothing of it can have been acted on: no response
                // byte came back, and there is no body that was consumed on the way.
                HeadError::Closed if reused && !has_body && !d.got_bytes => {
                    return Err(ExchangeError::Stale);
                }
                HeadError::Closed => {
                    upstream_error("upstream closed the connection before responding")
                        .because(Cause::Reset)
                }
                HeadError::Io(e) => {
                    tracing::debug!("upstream connection failed: {e}");
                    let reset = matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    );
                    let err = upstream_error("upstream connection failed");
                    if reset {
                        err.because(Cause::Reset)
                    } else {
                        err
                    }
                }
                HeadError::Wire(e) => upstream_error(e.0),
                HeadError::Client(kind) => body_error(kind),
            }
            .at(d.progress());
            return Err(ExchangeError::Failed(e));
        }
    };
    if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(switched(d, head, &parts.headers));
    }
    let decoder = match head.framing {
        Framing::Empty => Decoder::Length(0),
        Framing::Length(n) => Decoder::Length(n),
        Framing::Chunked => Decoder::Chunked(Chunked::Size),
        Framing::Close => Decoder::Close,
    };
    let mut resp = Response::new(UpstreamBody {
        d: Some(d),
        decoder,
        keep_alive: head.keep_alive,
        pool_key,
        max_idle,
    });
    // The upstream's version stays on its own connection: the client's connection speaks its own
    // (an HTTP/1.0 upstream must not turn a keep-alive client into a one-shot one), and a body
    // the upstream delimited by closing goes on chunked, or by length when it has one.
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

enum HeadError {
    Closed,
    Io(io::Error),
    Wire(WireError),
    /// The client's request body failed.
    Client(ErrorKind),
}

fn upstream_error(msg: impl Into<String>) -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamProtocol, msg)
}

fn body_error(kind: ErrorKind) -> ProxyError {
    let msg = match kind {
        ErrorKind::ClientClosed => "the client went away before sending its whole request body",
        ErrorKind::PayloadTooLarge => "the request body is larger than this route accepts",
        _ => "malformed request body",
    };
    ProxyError::new(kind, msg)
}

fn poll_head(
    d: &mut Duplex,
    cx: &mut Context<'_>,
    method: &Method,
    req_headers: &HeaderMap,
) -> Poll<Result<codec::Head, HeadError>> {
    loop {
        // Writing may stall on a slow client body; the response can still arrive meanwhile.
        let _ = d.poll_send(cx);
        if let Some(kind) = d.body_fault {
            return Poll::Ready(Err(HeadError::Client(kind)));
        }
        if !d.rbuf.is_empty() {
            match codec::parse_head(&mut d.rbuf, method, &mut d.spans) {
                // Interim responses (100 Continue, 103 Early Hints) are not relayed; the final
                // response follows on the same connection. 101 switches protocols: the answer
                // to a request that asked to (an upgrade the gateway passed on, see
                // `proxy::upgrade`), an error otherwise. Looked at only when a 101 arrives.
                Ok(Some(h)) if h.status.as_u16() == 101 => {
                    if req_headers.contains_key(http::header::UPGRADE) && d.sent() {
                        return Poll::Ready(Ok(h));
                    }
                    return Poll::Ready(Err(HeadError::Wire(WireError(
                        "upstream switched protocols unasked".into(),
                    ))));
                }
                Ok(Some(h)) if h.status.is_informational() => continue,
                Ok(Some(h)) => return Poll::Ready(Ok(h)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(HeadError::Wire(e))),
            }
        }
        match ready!(d.poll_fill(cx)) {
            Ok(0) => {
                return Poll::Ready(Err(match d.write_error.take() {
                    Some(e) if d.got_bytes => HeadError::Io(e),
                    _ if d.got_bytes => HeadError::Wire(WireError(
                        "upstream closed the connection inside the response head".into(),
                    )),
                    _ => HeadError::Closed,
                }))
            }
            Ok(_) => {}
            Err(e) if !d.got_bytes && e.kind() == io::ErrorKind::ConnectionReset => {
                return Poll::Ready(Err(HeadError::Closed))
            }
            Err(e) => return Poll::Ready(Err(HeadError::Io(e))),
        }
    }
}

/// The 101 answer to an upgrade: the connection leaves the pool's world for good. The response
/// gets back the `Upgrade` (the protocol the request asked for) and `Connection` fields the codec
/// leaves out as hop-by-hop, and a body that holds the connection for `UpstreamBody::upgraded`.
fn switched(d: Box<Duplex>, head: codec::Head, req_headers: &HeaderMap) -> Response<UpstreamBody> {
    let mut resp = Response::new(UpstreamBody {
        d: Some(d),
        decoder: Decoder::Switched,
        keep_alive: false,
        pool_key: 0,
        max_idle: Duration::ZERO,
    });
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    if let Some(protocol) = req_headers.get(http::header::UPGRADE) {
        let h = resp.headers_mut();
        h.insert(http::header::UPGRADE, protocol.clone());
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    }
    resp
}

/// An upstream connection that switched protocols: its socket, and the bytes the upstream sent
/// after its 101 that were read with it (they belong to the new protocol, and go first).
pub(crate) struct Upgraded {
    /// The socket.
    pub(crate) io: Transport,
    /// Read past the 101's head.
    pub(crate) read: Bytes,
    /// The circuit breaker's count of the connection, held while the tunnel lives.
    _slot: Option<crate::state::breaker::Slot>,
}

enum Decoder {
    /// The connection switched protocols: no HTTP body follows, and it is never pooled.
    Switched,
    Length(u64),
    Chunked(Chunked),
    Close,
}

/// A response body read straight from the upstream socket. It owns the connection and hands it
/// back to this thread's pool when the exchange has ended cleanly.
pub struct UpstreamBody {
    d: Option<Box<Duplex>>,
    decoder: Decoder,
    keep_alive: bool,
    pool_key: u64,
    max_idle: Duration,
}

impl UpstreamBody {
    fn finish(&mut self) {
        let Some(mut d) = self.d.take() else { return };
        // Unread bytes after the body mean the upstream said more than it framed: not reusable.
        if self.keep_alive && d.sent() && d.rbuf.is_empty() {
            d.reused = true;
            pool::checkin(self.pool_key, Conn(d), self.max_idle);
        }
    }

    /// Ends the body with an error; the connection is closed, never pooled.
    fn fail(&mut self, err: ProxyError) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        self.d = None;
        Poll::Ready(Some(Err(err.at(Progress::ResponseStarted))))
    }
}

impl UpstreamBody {
    /// The connection of a 101 response, taken out of the body (`None` for any other response).
    pub(crate) fn upgraded(&mut self) -> Option<Upgraded> {
        if !matches!(self.decoder, Decoder::Switched) {
            return None;
        }
        let d = *self.d.take()?;
        Some(Upgraded {
            io: d.io,
            read: d.rbuf.freeze(),
            _slot: d._slot,
        })
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body with nothing left to read (204, HEAD, or read to its end) may never be polled
        // again by the server; its connection is still good to reuse.
        if matches!(self.decoder, Decoder::Length(0)) {
            self.finish();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        let this = &mut *self;
        loop {
            let Some(d) = this.d.as_deref_mut() else {
                return Poll::Ready(None);
            };
            let _ = d.poll_send(cx);
            if let Some(kind) = d.body_fault {
                return this.fail(body_error(kind));
            }
            match &mut this.decoder {
                Decoder::Switched => return Poll::Ready(None),
                Decoder::Length(0) => {
                    // An early response leaves the request body unsent: wait for it (the upstream
                    // reads it to keep the connection), unless sending failed.
                    if !d.sent() && d.write_error.is_none() && this.keep_alive {
                        return Poll::Pending;
                    }
                    this.finish();
                    return Poll::Ready(None);
                }
                Decoder::Length(left) => {
                    if !d.rbuf.is_empty() {
                        let n = (*left).min(d.rbuf.len() as u64) as usize;
                        *left -= n as u64;
                        let data = d.rbuf.split_to(n).freeze();
                        if *left == 0 && (d.sent() || !this.keep_alive) {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Decoder::Chunked(state) => match state.decode(&mut d.rbuf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End(trailers)) => {
                        this.decoder = Decoder::Length(0);
                        if let Some(t) = trailers.filter(|t: &HeaderMap| !t.is_empty()) {
                            return Poll::Ready(Some(Ok(Frame::trailers(t))));
                        }
                        continue;
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(upstream_error(e.0)),
                },
                Decoder::Close => {
                    if !d.rbuf.is_empty() {
                        let data = d.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(d.poll_fill(cx)) {
                Ok(0) => {
                    if matches!(this.decoder, Decoder::Close) {
                        this.d = None;
                        return Poll::Ready(None);
                    }
                    return this.fail(upstream_error(
                        "upstream closed the connection inside the body",
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("reading the upstream body failed: {e}");
                    return this.fail(upstream_error("reading the upstream body failed"));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.d.is_none() || matches!(self.decoder, Decoder::Length(0) | Decoder::Switched)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
