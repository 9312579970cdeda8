//! Request flow, last step on failure: the one proxy error type and its single mapping to a response.
//!
//! Every failure the proxy itself produces (no route, upstream unreachable, timeout...) becomes a
//! `ProxyError`; `ProxyError::into_response` is the only place a status code and body are chosen.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use std::fmt;

/// The status logged for an exchange the client abandoned before its response was complete
/// (nginx's 499; not a registered status, and never sent).
pub(crate) const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// What went wrong; the metric label and the `error` field of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The request could not be understood (bad URI, bad header).
    BadRequest,
    /// The upstream could not be connected to.
    UpstreamConnect,
    /// The upstream broke the protocol or reset the connection.
    UpstreamProtocol,
    /// The TLS handshake with the upstream failed (`Backend.tls`): its certificate is not
    /// trusted or not for the server name, or it refused the gateway's client certificate.
    UpstreamTls,
    /// No endpoint is available in the chosen backend.
    NoHealthyEndpoint,
    /// The upstream did not answer in time, or its response stalled for longer than the
    /// backend's read timeout.
    Timeout,
    /// The route does not accept the request's method (TRACE unless allowed).
    MethodNotAllowed,
    /// The request target is longer than the listener's `limits.maxUriLength`.
    UriTooLong,
    /// The client went away (closed or reset its connection, or its stream) before the exchange
    /// ended. Logged and counted as 499, as nginx does; the response never reaches anyone.
    ClientClosed,
    /// A rate limit policy refused the request (429).
    RateLimited,
    /// The request body is larger than a policy's `requestLimits.maxBodySize` (413).
    PayloadTooLarge,
    /// A rule's `fault.abort` answered instead of the upstream (its status; 503 by default).
    FaultInjected,
    /// The backend's circuit breaker is open (a `circuitBreaker` limit is reached): refused at
    /// once, 503 with `x-gatehouse-overloaded: true`.
    CircuitOpen,
    /// An auth policy found no valid credential (401, with `WWW-Authenticate`).
    Unauthenticated,
    /// An auth policy found a valid credential that may not do this (403): missing scopes or
    /// claims.
    Forbidden,
    /// The request head is larger than the listener's `limits.maxRequestHeadersSize` (431).
    HeaderTooLarge,
    /// The request does not fit the rule's OpenAPI document (`openapi.validateRequests`): an
    /// unknown operation, a parameter or a JSON body against its schema (400).
    InvalidRequest,
}

impl ErrorKind {
    /// How many kinds there are (kinds index arrays with `as usize`).
    pub const COUNT: usize = 18;

    /// The wire name, used in bodies, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::UpstreamTls => "upstream_tls",
            ErrorKind::NoHealthyEndpoint => "no_healthy_endpoint",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::ClientClosed => "client_closed",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::FaultInjected => "fault_injected",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::HeaderTooLarge => "request_header_too_large",
            ErrorKind::InvalidRequest => "invalid_request",
        }
    }

    /// The status code the client sees.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::BadRequest | ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamProtocol | ErrorKind::UpstreamTls => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::NoHealthyEndpoint | ErrorKind::CircuitOpen => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::ClientClosed => CLIENT_CLOSED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::FaultInjected => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The gRPC status code a gRPC client sees for it (gRPC's `statuscodes.md`, and its mapping
    /// of HTTP statuses: 404 is UNIMPLEMENTED, 502/503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).
    pub fn grpc_status(self) -> &'static str {
        match self {
            ErrorKind::ClientClosed => "1", // CANCELLED
            ErrorKind::Timeout => "4",      // DEADLINE_EXCEEDED
            ErrorKind::UriTooLong
            | ErrorKind::HeaderTooLarge
            | ErrorKind::RateLimited
            | ErrorKind::PayloadTooLarge => "8", // RESOURCE_EXHAUSTED
            ErrorKind::NoRoute | ErrorKind::MethodNotAllowed => "12", // UNIMPLEMENTED
            ErrorKind::BadRequest => "13",  // INTERNAL
            ErrorKind::Unauthenticated => "16", // UNAUTHENTICATED
            ErrorKind::Forbidden => "7",    // PERMISSION_DENIED
            ErrorKind::InvalidRequest => "3", // INVALID_ARGUMENT
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamTls
            | ErrorKind::NoHealthyEndpoint
            | ErrorKind::CircuitOpen
            | ErrorKind::FaultInjected => "14", // UNAVAILABLE
        }
    }

    /// Whether the failure says something about the endpoint (for outlier detection): it could not
    /// be reached, broke the exchange or did not answer; a client leaving says nothing.
    pub(crate) fn counts_against_endpoint(self) -> bool {
        matches!(
            self,
            ErrorKind::UpstreamConnect
                | ErrorKind::UpstreamProtocol
                | ErrorKind::UpstreamTls
                | ErrorKind::Timeout
        )
    }

    /// The side a kind of failure comes from, unless whoever raises it knows better.
    fn side(self) -> Side {
        match self {
            ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamTls
            | ErrorKind::Timeout => Side::Upstream,
            ErrorKind::NoHealthyEndpoint | ErrorKind::CircuitOpen => Side::Internal,
            _ => Side::Downstream,
        }
    }
}

/// Which side of the proxy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: a bad request, or it went away.
    Downstream,
    /// The upstream: unreachable, broken, too slow.
    Upstream,
    /// The gateway's own decision (no endpoint, an open circuit breaker).
    Internal,
}

/// How far the exchange with the upstream got before it failed; what may be sent again follows
/// from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    /// Nothing of the request reached the upstream: any request may be sent again.
    NothingSent,
    /// Some or all of the head was written, not all of the body.
    HeadSent,
    /// The whole request was written.
    BodySent,
    /// Response bytes went on to the client: never sent again.
    ResponseStarted,
}

/// What exactly broke, for the retry conditions (`retry.on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing more specific than the kind.
    Other,
    /// No connection could be made (`connect-failure`).
    Connect,
    /// An HTTP/2 upstream refused the stream before acting on it (`refused-stream`).
    RefusedStream,
    /// The upstream closed or reset the connection without an answer (`reset`).
    Reset,
    /// One attempt's `perTryTimeout` ran out.
    PerTryTimeout,
}

/// A failure produced by the proxy, with a message for the client and the logs.
#[derive(Debug, Clone)]
pub struct ProxyError {
    /// The kind.
    pub kind: ErrorKind,
    /// A human-readable detail; never contains secrets.
    pub message: String,
    /// Which side failed.
    pub side: Side,
    /// How far the upstream exchange got.
    pub progress: Progress,
    /// What broke, when the upstream client knows.
    pub cause: Cause,
}

impl ProxyError {
    /// A new error; side from its kind, nothing sent, cause unknown (a connect failure's cause
    /// is the connect).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProxyError {
            kind,
            message: message.into(),
            side: kind.side(),
            progress: Progress::NothingSent,
            cause: match kind {
                // A failed handshake sent nothing of the request: retried as a connect failure.
                ErrorKind::UpstreamConnect | ErrorKind::UpstreamTls => Cause::Connect,
                _ => Cause::Other,
            },
        }
    }

    /// The same error, recorded as having got `progress` far.
    pub(crate) fn at(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// The same error, with its cause.
    pub(crate) fn because(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    /// Whether the request may be sent again after this error, so far as the exchange goes: the
    /// upstream failed, no response byte reached the client, and the request can be sent again
    /// whole — its body is replayable (`replayable`), and once anything of it left, its method may
    /// be repeated (`method_ok`). Whether the retry policy wants it is the policy's business.
    pub(crate) fn may_retry(&self, method_ok: bool, replayable: bool) -> bool {
        self.side == Side::Upstream
            && replayable
            && match self.progress {
                Progress::NothingSent => true,
                Progress::HeadSent | Progress::BodySent => method_ok,
                Progress::ResponseStarted => false,
            }
    }

    /// The JSON error response, carrying the request id.
    pub fn to_response(&self, request_id: &HeaderValue) -> Response<Bytes> {
        let body = serde_json::json!({
            "error": self.kind.as_str(),
            "message": self.message,
            "requestId": request_id.to_str().unwrap_or(""),
        });
        let mut text = body.to_string();
        text.push('\n');
        let mut resp = Response::new(Bytes::from(text));
        *resp.status_mut() = self.kind.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.kind == ErrorKind::CircuitOpen {
            h.insert(
                header::HeaderName::from_static("x-gatehouse-overloaded"),
                HeaderValue::from_static("true"),
            );
        }
        resp
    }
}

impl ProxyError {
    /// The same error for a gRPC client: a trailers-only response (HTTP 200, the status in the
    /// headers, no body), which every gRPC client reads as the call's status. `grpc-message` is
    /// percent-encoded as the gRPC HTTP/2 protocol asks.
    pub fn to_grpc_response(&self) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::new());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(
            "grpc-status",
            HeaderValue::from_static(self.kind.grpc_status()),
        );
        if let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(&self.message)) {
            h.insert("grpc-message", v);
        }
        resp
    }
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kinds_to_statuses_and_json() {
        let e = ProxyError::new(ErrorKind::Timeout, "upstream took longer than 1s");
        let resp = e.to_response(&HeaderValue::from_static("abc"));
        assert_eq!(resp.status(), 504);
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["error"], "timeout");
        assert_eq!(v["requestId"], "abc");
        assert_eq!(ErrorKind::NoRoute.status(), 404);
        assert_eq!(ErrorKind::UpstreamConnect.status(), 502);
        assert_eq!(ErrorKind::NoHealthyEndpoint.status(), 503);
        let open = ProxyError::new(ErrorKind::CircuitOpen, "backend shop/api is overloaded");
        let resp = open.to_response(&HeaderValue::from_static("abc"));
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-gatehouse-overloaded"], "true");
    }

    #[test]
    fn retryability_follows_side_progress_method_and_body() {
        let connect = ProxyError::new(ErrorKind::UpstreamConnect, "x");
        assert_eq!(connect.cause, Cause::Connect);
        // Nothing left: any method may go again, if its body still can.
        assert!(connect.may_retry(false, true));
        assert!(!connect.may_retry(true, false));
        let reset = ProxyError::new(ErrorKind::UpstreamProtocol, "x").at(Progress::BodySent);
        assert!(reset.may_retry(true, true));
        assert!(
            !reset.may_retry(false, true),
            "a POST that left is not repeated"
        );
        let late = ProxyError::new(ErrorKind::UpstreamProtocol, "x").at(Progress::ResponseStarted);
        assert!(!late.may_retry(true, true));
        let client = ProxyError::new(ErrorKind::ClientClosed, "x");
        assert_eq!(client.side, Side::Downstream);
        assert!(!client.may_retry(true, true));
        assert_eq!(ErrorKind::CircuitOpen.side(), Side::Internal);
    }

    #[test]
    fn grpc_errors_are_trailers_only_with_the_status_in_the_headers() {
        let e = ProxyError::new(ErrorKind::NoRoute, "no route for POST /x.Y/Z — 100%");
        let resp = e.to_grpc_response();
        assert_eq!(resp.status(), 200);
        assert!(resp.body().is_empty());
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-status"], "12");
        assert_eq!(
            resp.headers()["grpc-message"],
            "no route for POST /x.Y/Z %E2%80%94 100%25"
        );
        assert_eq!(ErrorKind::Timeout.grpc_status(), "4");
        assert_eq!(ErrorKind::UpstreamConnect.grpc_status(), "14");
    }
}
