//! Request flow, step 10: the bodies streamed through the proxy, frame by frame, never buffered whole.
//!
//! `ResponseBody` also ends the exchange: when it ends or is dropped it records metrics and the
//! access log — with the error that cut the body short (`timeout` for an upstream that went
//! quiet for longer than its backend's read timeout, `upstream_protocol` for a broken body), or
//! 499 when the client left first. (An HTTP/1.1 upstream body returns its connection to the pool
//! by itself, and only after a clean end.)

use crate::error::{ErrorKind, ProxyError};
use crate::telemetry::access_log::{AccessLogger, Record};
use crate::telemetry::metrics::RequestMetrics;
use crate::upstream::client::UpstreamBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// What a failed downstream request body means for the exchange: a body that breaks its own
/// framing (hyper reports a bad chunk as invalid input or data) is the client's error, 400;
/// anything else (an early end of stream, a reset, a dropped stream) is the client going away.
pub(crate) fn request_body_fault(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    if crate::body::limited::is_too_large(e) {
        return ErrorKind::PayloadTooLarge;
    }
    if e.is::<crate::proxy::grpc_web::BadBase64>() {
        return ErrorKind::BadRequest;
    }
    let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
    match io.map(std::io::Error::kind) {
        Some(std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData) => {
            ErrorKind::BadRequest
        }
        _ => ErrorKind::ClientClosed,
    }
}

/// A downstream request body on its way upstream, counting bytes when the access log wants them.
pub struct RequestBody {
    inner: Option<Incoming>,
    counter: Option<Arc<AtomicU64>>,
    /// An attempt of a retried exchange reads the shared, replayable body instead.
    replay: Option<crate::body::replay::Replay>,
    /// `requestLimits.maxBodySize`, when a policy of the rule sets it.
    limit: Option<crate::body::limited::BodyLimit>,
    /// A gRPC-Web text body, decoded from base64 as it streams.
    text: Option<Box<crate::proxy::grpc_web::TextDecoder>>,
    /// A copy kept for the rule's mirror, when this request is mirrored.
    tee: Option<Box<crate::body::tee::Tee>>,
    /// The start of the body, read before the policy chain (`externalAuth.body`): passed on
    /// before anything more is read.
    ahead: Option<Box<crate::body::ahead::Pending>>,
}

impl RequestBody {
    /// Wraps a downstream body.
    pub fn new(inner: Incoming, counter: Option<Arc<AtomicU64>>) -> Self {
        RequestBody {
            inner: Some(inner),
            counter,
            replay: None,
            limit: None,
            text: None,
            tee: None,
            ahead: None,
        }
    }

    /// One attempt's body of a retried exchange (bytes are counted by the source).
    pub(crate) fn replay(replay: crate::body::replay::Replay) -> Self {
        RequestBody {
            inner: None,
            counter: None,
            replay: Some(replay),
            limit: None,
            text: None,
            tee: None,
            ahead: None,
        }
    }

    /// Cuts the body (making it fail) once more than `max` bytes have streamed.
    #[inline]
    pub(crate) fn limited(mut self, max: Option<u64>) -> Self {
        self.limit = max.map(crate::body::limited::BodyLimit::new);
        self
    }

    /// The same body, with what was read of it ahead of the policy chain passed on first.
    #[inline]
    pub(crate) fn ahead(mut self, read: Option<crate::body::ahead::ReadAhead>) -> Self {
        self.ahead = read.map(|r| Box::new(r.pending()));
        self
    }

    /// Whether the downstream body has ended and nothing read ahead of it is left.
    fn downstream_ended(&self) -> bool {
        ended(&self.ahead, &self.inner)
    }

    /// The same body, decoded from base64 as it streams (a `grpc-web-text` request).
    pub(crate) fn grpc_web_text(mut self) -> Self {
        self.text = Some(Box::default());
        self
    }

    /// Keeps a copy of the body for a mirror as it streams (see `body::tee`).
    pub(crate) fn teed(mut self, tee: crate::body::tee::Tee) -> Self {
        self.tee = Some(Box::new(tee));
        self
    }

    /// Whether the body was cut at its limit, readable after the body has been handed away.
    pub(crate) fn limit_tripped(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        self.limit.as_ref().map(|l| l.tripped())
    }

    /// The body validation read whole (`policy::validate`), sent from what was kept; the
    /// downstream body it came from has ended.
    pub(crate) fn with_kept(mut self, body: Bytes) -> Self {
        if let Some(c) = &self.counter {
            c.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        self.replay = Some(crate::body::replay::ReplaySource::kept(body).reader());
        self
    }

    /// No body (a request sent again after its body-less first attempt met a closed connection).
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            counter: None,
            replay: None,
            limit: None,
            text: None,
            tee: None,
            ahead: None,
        }
    }
}

/// Whether a downstream body has ended and nothing read ahead of it is left.
fn ended(ahead: &Option<Box<crate::body::ahead::Pending>>, inner: &Option<Incoming>) -> bool {
    ahead.as_ref().is_none_or(|a| a.is_empty()) && inner.as_ref().is_none_or(Body::is_end_stream)
}

impl Body for RequestBody {
    type Data = Bytes;
    // Boxed: a body fails because the client broke it (hyper's error) or because it went past
    // `requestLimits.maxBodySize` (`limited::TooLarge`); `request_body_fault` tells them apart.
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(r) = this.replay.as_mut() {
            let poll = ready!(Pin::new(&mut *r).poll_frame(cx));
            // A kept body (request validation) may be mirrored too.
            if let Some(t) = this.tee.as_mut() {
                t.observe(&poll, r.is_end_stream());
            }
            return Poll::Ready(poll);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let poll = match this.ahead.as_mut().and_then(|a| a.next_frame()) {
            Some(frame) => Some(Ok(frame)),
            None => ready!(Pin::new(inner).poll_frame(cx)),
        };
        if let Some(Ok(frame)) = &poll {
            if let Some(d) = frame.data_ref() {
                if let Some(c) = &this.counter {
                    c.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                if let Some(Err(e)) = this.limit.as_mut().map(|l| l.count(d.len())) {
                    this.inner = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
        if let Some(t) = this.tee.as_mut() {
            let ended = ended(&this.ahead, &this.inner);
            t.observe(&poll, ended);
        }
        if let Some(dec) = this.text.as_mut() {
            let end = ended(&this.ahead, &this.inner);
            let decoded = match poll {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => dec.decode(&d, end).map(|d| Some(Frame::data(d))),
                    Err(frame) => Ok(Some(frame)),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => dec.decode(&[], true).map(|_| None),
            };
            return Poll::Ready(decoded.map_err(|e| Box::new(e).into()).transpose());
        }
        Poll::Ready(poll.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        if let Some(r) = &self.replay {
            return r.is_end_stream();
        }
        self.downstream_ended()
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(r) = &self.replay {
            return r.size_hint();
        }
        let rest = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        match &self.ahead {
            None => rest,
            Some(a) => {
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + a.bytes());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + a.bytes());
                }
                hint
            }
        }
    }
}

/// What the access log needs beyond the status and sizes; built only when logging is on.
pub struct LogContext {
    /// The logger.
    pub logger: Arc<AccessLogger>,
    /// Request id.
    pub request_id: http::HeaderValue,
    /// Peer address, as formatted for X-Forwarded-For.
    pub client: http::HeaderValue,
    /// Method.
    pub method: http::Method,
    /// Request URI (its path, and its authority for HTTP/2).
    pub uri: http::Uri,
    /// Host header (HTTP/1.1).
    pub host: Option<http::HeaderValue>,
    /// Route.
    pub route: Option<Arc<str>>,
    /// Backend.
    pub backend: Option<Arc<str>>,
    /// Endpoint.
    pub upstream: Option<Arc<str>>,
    /// Time to upstream headers.
    pub upstream_duration: Option<Duration>,
    /// Request bytes, counted by `RequestBody`.
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// Proxy error kind.
    pub error: Option<&'static str>,
    /// Attempts made upstream, when the rule retries (`retry`).
    pub attempts: Option<u32>,
    /// The verified client certificate's subject (`tls.clientAuth`).
    pub client_cert: Option<Arc<str>>,
    /// What a rule's `overrides` did (`applied`, `fallback`), when one matched.
    pub override_use: Option<&'static str>,
    /// Why a policy refused the request (`expired`, `unknown_key`...), never a credential.
    pub reason: Option<&'static str>,
    /// Who the auth policies found the caller to be.
    pub identity: Option<crate::policy::identity::Identity>,
}

/// Records the end of an exchange exactly once: metrics, the access log line and the endpoint's
/// in-flight count. It records when dropped, so an exchange abandoned half-way (the client went
/// away while the upstream was still answering) is counted too, with status 499 as nginx does.
pub struct Completion {
    /// When the request arrived.
    pub start: Instant,
    /// Status sent; 499 until a response exists.
    pub status: u16,
    /// Metric handles of the route/backend pair.
    pub metrics: Option<Arc<RequestMetrics>>,
    /// Access log data, when logging.
    pub log: Option<Box<LogContext>>,
    /// In-flight counter of the endpoint, decremented at the end.
    pub in_flight: Option<Arc<crate::upstream::EndpointShared>>,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// The backend circuit breaker's request slot, given back at the end.
    pub(crate) breaker: Option<crate::state::breaker::Slot>,
}

/// Status recorded for an exchange the client abandoned before its response was complete.
pub const CLIENT_CLOSED: u16 = crate::error::CLIENT_CLOSED.as_u16();

impl Completion {
    /// A pending exchange.
    pub fn new(start: Instant, metrics: Arc<RequestMetrics>, log: Option<Box<LogContext>>) -> Self {
        Completion {
            start,
            status: CLIENT_CLOSED,
            metrics: Some(metrics),
            log,
            in_flight: None,
            bytes_out: 0,
            breaker: None,
        }
    }

    fn record(&mut self) {
        let elapsed = self.start.elapsed();
        if let Some(m) = self.metrics.take() {
            m.record(self.status, elapsed.as_secs_f64());
        }
        if let Some(ep) = self.in_flight.take() {
            ep.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        self.breaker = None;
        if let Some(l) = self.log.take() {
            let host = match l.uri.authority() {
                Some(a) => a.as_str(),
                None => l.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
            };
            l.logger.log(&Record {
                request_id: l.request_id.to_str().unwrap_or(""),
                client: l.client.to_str().unwrap_or(""),
                method: l.method.as_str(),
                host,
                path: l.uri.path(),
                status: self.status,
                bytes_in: l.bytes_in.as_ref().map_or(0, |c| c.load(Ordering::Relaxed)),
                bytes_out: self.bytes_out,
                duration: elapsed,
                route: l.route.as_deref().unwrap_or("none"),
                backend: l.backend.as_deref().unwrap_or(""),
                upstream: l.upstream.as_deref(),
                upstream_duration: l.upstream_duration,
                attempts: l.attempts,
                client_cert: l.client_cert.as_deref(),
                override_use: l.override_use,
                reason: l.reason,
                consumer: l.identity.as_ref().and_then(|i| i.consumer.as_deref()),
                subject: l.identity.as_ref().and_then(|i| i.subject.as_deref()),
                // A request cut off at a drain deadline says so.
                error: l
                    .error
                    .or_else(|| crate::proxy::conn::cutting().then_some("shutdown")),
            });
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.record();
    }
}

enum Inner {
    H1(crate::upstream::h1::UpstreamBody),
    H2(Incoming),
    Mapped(crate::upstream::client::MappedBody),
    Full(Option<Bytes>),
}

/// Errors a response body can end with, from either kind of upstream.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The read-gap timer of an upstream body. It costs nothing until the body has to wait for the
/// upstream: a small response arrives with its head and never does. After that it reads the clock
/// once per wait and keeps one timer per response, re-armed only when it fires early (the body
/// made progress since it was set), not on every read.
struct ReadGap {
    /// The limit in milliseconds; 0: none (`timeouts.read: 0s`).
    limit_ms: u64,
    /// Made on the first wait only, and boxed so that a response body (moved several times on
    /// its way to the client) carries one pointer for it rather than the whole timer state.
    wait: Option<Box<Wait>>,
}

struct Wait {
    /// When the current wait for upstream bytes began; `None` while data flows.
    idle_since: Option<tokio::time::Instant>,
    /// Boxed: it is not `Unpin`.
    timer: Pin<Box<Sleep>>,
}

impl ReadGap {
    fn new(limit: Duration) -> Self {
        ReadGap {
            limit_ms: limit.as_millis().min(u128::from(u64::MAX)) as u64,
            wait: None,
        }
    }

    fn progress(&mut self) {
        if let Some(w) = self.wait.as_mut() {
            w.idle_since = None;
        }
    }

    /// Called when the body is pending: `Ready` once it has been pending for the whole limit.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Duration> {
        if self.limit_ms == 0 {
            return Poll::Pending;
        }
        let limit = Duration::from_millis(self.limit_ms);
        let wait = self.wait.get_or_insert_with(|| {
            let now = tokio::time::Instant::now();
            Box::new(Wait {
                idle_since: Some(now),
                timer: Box::pin(tokio::time::sleep_until(now + limit)),
            })
        });
        let since = *wait
            .idle_since
            .get_or_insert_with(tokio::time::Instant::now);
        let deadline = since + limit;
        let timer = &mut wait.timer;
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= deadline {
                return Poll::Ready(limit);
            }
            // Set during an earlier wait: the body moved since, so the gap starts later.
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

/// The body sent downstream: an upstream body streamed through, or a body the proxy made.
pub struct ResponseBody {
    inner: Inner,
    done: Option<Completion>,
    /// Keeps the request counted as in flight on its connection while the body lives.
    held: Option<crate::proxy::conn::InFlight>,
    bytes: u64,
    gap: Option<ReadGap>,
}

impl ResponseBody {
    /// Streams an upstream body, failing it with `timeout` once the upstream has sent nothing
    /// for `read_timeout` (zero: never).
    pub fn upstream(inner: UpstreamBody, done: Option<Completion>, read_timeout: Duration) -> Self {
        ResponseBody {
            inner: match inner {
                UpstreamBody::H1(b) => Inner::H1(b),
                UpstreamBody::H2(b) => Inner::H2(b),
                UpstreamBody::Mapped(b) => Inner::Mapped(b),
            },
            done,
            held: None,
            bytes: 0,
            gap: Some(ReadGap::new(read_timeout)),
        }
    }

    /// Ties `guard` to this body's life.
    pub fn hold(&mut self, guard: crate::proxy::conn::InFlight) {
        self.held = Some(guard);
    }

    /// A body the proxy made (errors, direct responses, redirects).
    pub fn full(data: Bytes, done: Option<Completion>) -> Self {
        ResponseBody {
            inner: Inner::Full(if data.is_empty() { None } else { Some(data) }),
            done,
            held: None,
            bytes: 0,
            gap: None,
        }
    }

    /// The metric handles of the exchange this body ends (read to count a gRPC error's status).
    pub(crate) fn metrics(&self) -> Option<&Arc<RequestMetrics>> {
        self.done.as_ref()?.metrics.as_ref()
    }

    /// The same body with no content: a gateway-made body replaced by a gRPC status in headers.
    pub(crate) fn into_empty(mut self) -> Self {
        self.inner = Inner::Full(None);
        self
    }

    /// Records the exchange: complete, or cut short by `failure`.
    fn end(&mut self, failure: Option<ErrorKind>) {
        if let Some(mut done) = self.done.take() {
            done.bytes_out = self.bytes;
            if let Some(kind) = failure {
                if let Some(m) = &done.metrics {
                    m.late_error(kind);
                }
                // The status line has gone out already; the log says why the body stopped.
                if kind == ErrorKind::ClientClosed {
                    done.status = CLIENT_CLOSED;
                }
                if let Some(l) = done.log.as_mut() {
                    l.error = Some(kind.as_str());
                }
            }
        }
    }
}

/// The kind of a body error: the HTTP/1.1 upstream body says; any other is the upstream's.
fn failure_kind(e: &BodyError) -> ErrorKind {
    e.downcast_ref::<ProxyError>()
        .map_or(ErrorKind::UpstreamProtocol, |p| p.kind)
}

impl ResponseBody {
    fn poll_upstream<B>(
        body: Pin<&mut B>,
        bytes: &mut u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BodyError>,
    {
        let poll = ready!(body.poll_frame(cx));
        if let Some(Ok(frame)) = &poll {
            if let Some(d) = frame.data_ref() {
                *bytes += d.len() as u64;
            }
        }
        Poll::Ready(poll.map(|r| r.map_err(Into::into)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let poll = match &mut this.inner {
            Inner::Full(data) => {
                let frame = data.take();
                if let Some(d) = &frame {
                    this.bytes += d.len() as u64;
                }
                Poll::Ready(frame.map(|d| Ok(Frame::data(d))))
            }
            Inner::H1(b) => Self::poll_upstream(Pin::new(b), &mut this.bytes, cx),
            Inner::H2(b) => Self::poll_upstream(Pin::new(b), &mut this.bytes, cx),
            Inner::Mapped(b) => Self::poll_upstream(Pin::new(b), &mut this.bytes, cx),
        };
        let poll = match (poll, this.gap.as_mut()) {
            (Poll::Pending, Some(gap)) => match gap.poll_expired(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(limit) => {
                    // Dropping the upstream body closes its connection.
                    this.inner = Inner::Full(None);
                    let err = ProxyError::new(
                        ErrorKind::Timeout,
                        format!(
                            "the upstream sent nothing for {}",
                            gatehouse_config::units::DisplayDuration(limit)
                        ),
                    );
                    Poll::Ready(Some(Err(err.into())))
                }
            },
            (poll, Some(gap)) => {
                gap.progress();
                poll
            }
            (poll, None) => poll,
        };
        // hyper may stop polling once the body says it is complete, so the exchange is recorded
        // as soon as that is true rather than on a later poll.
        match &poll {
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!("response body cut short: {e}");
                this.end(Some(failure_kind(e)));
            }
            Poll::Ready(None) => this.end(None),
            _ if this.is_end_stream() => this.end(None),
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(d) => d.is_none(),
            Inner::H1(b) => b.is_end_stream(),
            Inner::H2(b) => b.is_end_stream(),
            Inner::Mapped(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::H1(b) => b.size_hint(),
            Inner::H2(b) => b.size_hint(),
            Inner::Mapped(b) => b.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // An upstream body dropped before its end: the client's connection ended first (hyper
        // drops the body when it cannot deliver it). A body the proxy made may be dropped unread
        // (a HEAD request), which is not abandonment.
        let abandoned = self.gap.is_some() && !self.is_end_stream();
        self.end(abandoned.then_some(ErrorKind::ClientClosed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, Duration};

    async fn poll_gap(gap: &mut ReadGap) -> Poll<Duration> {
        std::future::poll_fn(|cx| Poll::Ready(gap.poll_expired(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn the_read_gap_counts_from_the_last_progress_and_fires_once_it_has_passed() {
        let ms = Duration::from_millis;
        let mut gap = ReadGap::new(ms(100));
        assert!(poll_gap(&mut gap).await.is_pending(), "armed at 0, for 100");
        advance(ms(60)).await;
        gap.progress();
        assert!(
            poll_gap(&mut gap).await.is_pending(),
            "waiting again from 60"
        );
        // The first timer (100) fires early: it is re-armed for 160, not reported.
        advance(ms(50)).await;
        assert!(poll_gap(&mut gap).await.is_pending(), "110: 50 idle");
        advance(ms(49)).await;
        assert!(poll_gap(&mut gap).await.is_pending(), "159: 99 idle");
        advance(ms(1)).await;
        assert_eq!(
            poll_gap(&mut gap).await,
            Poll::Ready(ms(100)),
            "160: 100 idle"
        );

        // `0s` is no limit: never armed.
        let mut off = ReadGap::new(Duration::ZERO);
        assert!(poll_gap(&mut off).await.is_pending());
        advance(Duration::from_secs(3600)).await;
        assert!(poll_gap(&mut off).await.is_pending());
        assert!(off.wait.is_none());
    }
}
