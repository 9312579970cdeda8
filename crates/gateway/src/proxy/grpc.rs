//! Request flow, around the handler, for gRPC requests only (native, and gRPC-Web over either
//! HTTP version): gateway-made errors become trailers-only gRPC responses in the client's dialect
//! (the mapping is `ProxyError::to_grpc_response` in `error.rs`), and a client's `grpc-timeout`
//! shortens the route timeout (never lengthens it); a gRPC stream whose route a reload removed
//! ends after `streamDrainTimeout`. Each call's final `grpc-status` is counted here (gateway
//! errors, trailers-only answers, trailers at a stream's end: `telemetry/grpc_metrics.rs`).

use super::body::ResponseBody;
use crate::error::ProxyError;
use crate::telemetry::metrics::RequestMetrics;
use crate::upstream::client::UpstreamBody;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// Whether the request is gRPC (`application/grpc`, `application/grpc+proto`, gRPC-Web's
/// `application/grpc-web...`): one header lookup and a prefix compare.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
}

/// A gRPC client, as its errors must be rendered. One byte: it is held across the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// Native gRPC (HTTP/2).
    Native,
    /// gRPC-Web, binary messages.
    Web,
    /// gRPC-Web, base64 messages (`application/grpc-web-text`).
    WebText,
}

/// The request's gRPC dialect; `None` for every other request. Native gRPC runs over HTTP/2
/// only, and gRPC-Web calls are POSTs: other HTTP/1.1 requests are told apart by a version and a
/// method comparison, without a header lookup.
#[inline]
pub(crate) fn client<B>(req: &Request<B>) -> Option<Client> {
    let h2 = req.version() == http::Version::HTTP_2;
    if !h2 && req.method() != http::Method::POST {
        return None;
    }
    if !is_grpc(req.headers()) {
        return None;
    }
    match super::grpc_web::detect(req.headers()) {
        Some(web) if web.text => Some(Client::WebText),
        Some(_) => Some(Client::Web),
        None if h2 => Some(Client::Native),
        None => None,
    }
}

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Counts the call's final status when `headers` (trailers, or a trailers-only answer's head)
/// carry one.
pub(crate) fn count(metrics: Option<&Arc<RequestMetrics>>, headers: &HeaderMap) {
    if let (Some(m), Some(code)) = (metrics, headers.get(&GRPC_STATUS)) {
        m.grpc_status(code.as_bytes());
    }
}

/// The client's deadline, `grpc-timeout` (1 to 8 digits and a unit: `H M S m u n`); `None` when
/// absent or malformed (a malformed one is ignored, as gRPC servers do).
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The timeout of a gRPC exchange: the client's deadline capped by the route's (`0s`: none).
pub(crate) fn capped(route: Duration, client: Option<Duration>) -> Duration {
    match client {
        // At least 1 ms: zero means "no timeout" to the caller.
        Some(c) if route.is_zero() || c < route => c.max(Duration::from_millis(1)),
        _ => route,
    }
}

/// A gateway-made error response (marked by its `ProxyError` extension) rewritten for a gRPC
/// client: HTTP 200, the status in the headers (trailers-only, which gRPC-Web allows too), no
/// body, the client's content type; its status counted. Other responses pass unchanged. The
/// exchange's record (metrics, access log) keeps the error's HTTP status, so dashboards count it
/// as the failure it is. Fields other policies added (CORS's) stay.
pub(crate) fn render_error(
    mut resp: Response<ResponseBody>,
    client: Client,
) -> Response<ResponseBody> {
    let Some(err) = resp.extensions_mut().remove::<ProxyError>() else {
        return resp;
    };
    if let Some(m) = resp.body().metrics() {
        m.grpc_status(err.kind.grpc_status().as_bytes());
    }
    let (mut parts, body) = resp.into_parts();
    let (mut grpc, _) = err.to_grpc_response().into_parts();
    let web = match client {
        Client::Native => None,
        Client::Web => Some("application/grpc-web"),
        Client::WebText => Some("application/grpc-web-text"),
    };
    if let Some(ct) = web {
        (grpc.headers).insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    parts.status = grpc.status;
    parts.headers.remove(header::CACHE_CONTROL);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in grpc.headers {
        if let Some(name) = name {
            parts.headers.insert(name, value);
        }
    }
    Response::from_parts(parts, body.into_empty())
}

/// A native gRPC answer from an HTTP/2 backend, watched for reloads: when one removes the call's
/// route or backend, the call runs on for `streamDrainTimeout`, then ends with UNAVAILABLE in its
/// trailers (the upstream stream is reset); its final status is counted. Other answers pass
/// unchanged, and calls already complete (a trailers-only answer) are counted and pass.
pub(crate) fn drained(
    resp: Response<UpstreamBody>,
    route: &Arc<str>,
    backend: &Arc<str>,
    streams: &crate::proxy::streams::Streams,
    metrics: Option<&Arc<RequestMetrics>>,
) -> Response<UpstreamBody> {
    let (mut parts, body) = resp.into_parts();
    let UpstreamBody::H2(inner) = body else {
        return Response::from_parts(parts, body);
    };
    if !is_grpc(&parts.headers) {
        return Response::from_parts(parts, UpstreamBody::H2(inner));
    }
    if inner.is_end_stream() {
        count(metrics, &parts.headers);
        return Response::from_parts(parts, UpstreamBody::H2(inner));
    }
    // As `finish` does for bodies that come straight from HTTP/2.
    super::forward::strip_hop_by_hop(&mut parts.headers);
    let body = Drained {
        inner: Some(inner),
        cut: streams.watch(route, backend).deadline(),
        metrics: metrics.cloned(),
    };
    Response::from_parts(parts, UpstreamBody::Mapped(Box::new(body)))
}

/// A gRPC response body that ends when its drain deadline passes, and counts the status its
/// trailers carry.
struct Drained {
    inner: Option<Incoming>,
    cut: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    metrics: Option<Arc<RequestMetrics>>,
}

impl Body for Drained {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if let Some(t) = frame.as_ref().and_then(|f| f.as_ref().ok()?.trailers_ref()) {
                count(this.metrics.as_ref(), t);
            }
            return Poll::Ready(frame);
        }
        ready!(this.cut.as_mut().poll(cx));
        // Dropping the upstream body resets its stream.
        this.inner = None;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("the route of this call was removed"),
        );
        count(this.metrics.as_ref(), &trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn reads_grpc_timeout_in_every_unit_and_ignores_bad_ones() {
        let t = |v| timeout(&headers("grpc-timeout", v));
        assert_eq!(t("200m"), Some(Duration::from_millis(200)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("3S"), Some(Duration::from_secs(3)));
        assert_eq!(t("2M"), Some(Duration::from_secs(120)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_route_timeout_caps_the_client_deadline() {
        let s = Duration::from_secs;
        assert_eq!(capped(s(5), Some(s(1))), s(1));
        assert_eq!(capped(s(5), Some(s(60))), s(5));
        assert_eq!(capped(s(5), None), s(5));
        assert_eq!(capped(s(0), Some(s(60))), s(60));
        assert_eq!(capped(s(5), Some(s(0))), Duration::from_millis(1));
    }

    #[test]
    fn clients_are_told_apart_by_version_method_and_content_type() {
        let req = |version, method: &str, ct: Option<&'static str>| {
            let mut b = Request::builder().version(version).method(method);
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            client(&b.body(()).unwrap())
        };
        let (h11, h2) = (http::Version::HTTP_11, http::Version::HTTP_2);
        let grpc = Some("application/grpc");
        assert_eq!(req(h2, "POST", grpc), Some(Client::Native));
        assert_eq!(req(h11, "POST", grpc), None, "native gRPC needs HTTP/2");
        let web = Some("application/grpc-web+proto");
        assert_eq!(req(h11, "POST", web), Some(Client::Web));
        assert_eq!(req(h2, "POST", web), Some(Client::Web));
        let text = Some("application/grpc-web-text");
        assert_eq!(req(h11, "POST", text), Some(Client::WebText));
        assert_eq!(req(h11, "GET", web), None, "gRPC-Web calls are POSTs");
        assert_eq!(req(h11, "POST", Some("application/json")), None);
        assert_eq!(req(h2, "POST", None), None);
    }

    #[test]
    fn grpc_content_types_are_recognised() {
        let g = |v| is_grpc(&headers("content-type", v));
        assert!(g("application/grpc"));
        assert!(g("application/grpc+proto"));
        assert!(g("Application/GRPC-web-text"));
        assert!(!g("application/json"));
        assert!(!g("application/gr"));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
