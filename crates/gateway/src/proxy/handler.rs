//! Request flow, steps 2-7: one request from arrival to response headers — load the snapshot once,
//! find the rule, then forward, redirect or answer directly. Errors go through `ProxyError`.

use super::body::{Completion, LogContext, ResponseBody};
use super::exchange::Exchange;
use super::forward;
use super::normalize::EscapedSlashes;
use super::request_target::{self, Admission};
use crate::error::{ErrorKind, ProxyError};
use crate::policy::identity::Identity;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::ErrorCounters;
use bytes::Bytes;
use gatehouse_config::{Action, Redirect};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A route timeout used when the rule sets none; `0s` in a rule disables it.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the handler knows about the downstream connection.
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The client address as an `X-Forwarded-For` value, formatted once per connection.
    pub forwarded_for: HeaderValue,
    /// Requests started on the connection (for its idle timeout).
    pub requests: AtomicU64,
    /// Requests whose response is not finished yet.
    pub in_flight: AtomicU64,
    /// The listener's choice for `%2F` and `%5C` in paths.
    pub(crate) escaped_slashes: EscapedSlashes,
    /// The client certificate the listener verified (`tls.clientAuth`), if any.
    pub(crate) client_cert: Option<super::client_cert::ClientCert>,
    /// The listener's drain signal (`streams.rs`: a tunnel closes after its grace once it drains).
    pub(crate) drain: Option<super::streams::ListenerDrain>,
}

impl ConnInfo {
    /// Describes a new downstream connection.
    pub fn new(peer: SocketAddr, scheme: &'static str, escaped_slashes: EscapedSlashes) -> Self {
        ConnInfo {
            peer,
            scheme,
            forwarded_for: forward::forwarded_for_value(peer.ip()),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            escaped_slashes,
            client_cert: None,
            drain: None,
        }
    }
}

/// The request's id: the client's `x-request-id` when it is a sane one, else a new one.
pub(super) fn request_id(req: &Request<Incoming>) -> HeaderValue {
    if let Some(v) = req.headers().get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    new_request_id()
}

/// 128 random bits as 32 lowercase hex digits.
pub(super) fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    // Two hex digits per random byte.
    for (pair, b) in buf
        .chunks_exact_mut(2)
        .zip(fastrand::u128(..).to_le_bytes())
    {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // Ids are cut from a per-thread block rather than allocated one by one: an id is cloned into
    // the upstream request, the response and the log, and a block-backed `Bytes` clones by
    // reference count alone.
    ID_BLOCK.with(|block| {
        let mut block = block.borrow_mut();
        if block.capacity() - block.len() < buf.len() {
            block.reserve(ID_BLOCK_SIZE);
        }
        block.extend_from_slice(&buf);
        // SAFETY: the bytes are lowercase hex digits, visible ASCII, which a header value may
        // hold; the checked constructor would only test them again.
        unsafe { HeaderValue::from_maybe_shared_unchecked(block.split().freeze()) }
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

const ID_BLOCK_SIZE: usize = 32 * 1024;

thread_local! {
    static ID_BLOCK: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
}

/// Serves one request; `grpc` says the client speaks gRPC (its deadline applies, and the caller
/// renders gateway-made errors as gRPC statuses).
pub async fn handle(
    snap: Arc<Snapshot>,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    grpc: bool,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let rid = request_id(&req);
    match request_target::check(&mut req, conn.escaped_slashes) {
        Ok(Admission::Route) => {}
        Ok(Admission::ServerOptions) => return server_options(&snap, conn, &req, rid, start),
        Err(err) => {
            let mut resp = unrouted(&snap, conn, &req, &rid, err, start);
            // A message the gateway could not read one way only leaves the rest of an HTTP/1
            // connection in doubt (a smuggled request may follow): it is the connection's last.
            if req.version() <= http::Version::HTTP_11 {
                (resp.headers_mut()).insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    }
    // For policies: the certificate the listener verified, as a typed value.
    if let Some(cert) = &conn.client_cert {
        req.extensions_mut().insert(cert.clone());
    }
    let (host, _port) = match request_target::host(&req) {
        Ok(h) => h,
        Err(err) => return unrouted(&snap, conn, &req, &rid, err, start),
    };
    // The developer portal under `portal.pathPrefix` comes before routing; without it, this is
    // the only cost (an `Option` check).
    if let Some(site) = &snap.portal {
        if let Some(answer) = site.on_listener(req.method(), req.uri().path()) {
            return portal_page(&snap, conn, &req, rid, answer, start);
        }
    }
    let path = req.uri().path();
    let query = req.uri().query();
    let Some(entry) = (snap.router)
        .lookup(&host, req.method(), path, query, req.headers())
        .or_else(|| preflight_route(&snap, &req, &host))
    else {
        let err = ProxyError::new(
            ErrorKind::NoRoute,
            format!("no route for {} {}", req.method(), path),
        );
        return unrouted(&snap, conn, &req, &rid, err, start);
    };
    // TRACE echoes the request, cookies and credentials included, back to whoever can make a
    // browser send it: only a rule that names it in `match.methods` may receive it.
    if req.method() == http::Method::TRACE && !entry.rule.methods.iter().any(|m| m == "TRACE") {
        let err = ProxyError::new(
            ErrorKind::MethodNotAllowed,
            "TRACE is not allowed on this route",
        );
        let log = log_context(&snap, conn, &req, &rid, Some(&entry.route), None);
        let done = Completion::new(start, entry.target.local_metrics.clone(), log);
        return error_response(&snap, err, &rid, &entry.target.errors, done);
    }
    // What the chain decided (identity, header fields); empty, and free, without policies.
    let mut fx = crate::policy::Effects::default();
    if let Some(chain) = &entry.target.policies {
        crate::body::ahead::read_for(chain, &mut req).await;
        let input = crate::policy::Input {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
            peer: conn.peer.ip(),
            trusted: &snap.config.gateway.trusted_proxies,
            route: &entry.route,
        };
        let mut verdict = chain.run(&input, &mut fx).await;
        // Request validation reads a JSON body whole once the rest of the chain let it through.
        if let (Ok(()), Some(v)) = (&verdict, chain.validation()) {
            let timeout = entry.rule.timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
            verdict = v.check_body(&mut req, timeout).await;
        }
        if let Err(mut r) = verdict {
            // A caller identified before a later step refused it (a rate limit) is logged as such.
            let id = fx.identity.as_ref();
            let log = log_context(&snap, conn, &req, &rid, Some(&entry.route), id);
            let done = Completion::new(start, entry.target.local_metrics.clone(), log);
            r.headers.append(&mut fx.response);
            return crate::policy::respond(&snap, *r, &rid, &entry.target.errors, done);
        }
        fx.apply_request(&mut req);
    }
    let id = fx.identity.as_ref();
    let mut resp = match answer_locally(&snap, conn, &req, entry, &rid, start, id) {
        Some(resp) => resp,
        // Awaited here, in this future: behind another `async fn` the exchange's large future
        // would be copied once more per request.
        None => {
            let exchange = Exchange {
                identity: id,
                ..exchange(&snap, conn, &req, entry, &rid, start, grpc)
            };
            let log = log_context(&snap, conn, &req, &rid, Some(&entry.route), id);
            exchange.forward(req, log).await
        }
    };
    fx.apply_response(&mut resp);
    resp
}

/// A CORS preflight asks about another method (`Access-Control-Request-Method`): when no rule
/// takes `OPTIONS` itself, the rule that would serve that method answers it — if it has a `cors`
/// policy, which answers every preflight at the edge (nothing else is let through this way).
fn preflight_route<'s>(
    snap: &'s Snapshot,
    req: &Request<Incoming>,
    host: &str,
) -> Option<&'s Arc<crate::routing::Entry<crate::snapshot::Target>>> {
    if req.method() != http::Method::OPTIONS || !req.headers().contains_key(header::ORIGIN) {
        return None;
    }
    let asked = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let method = http::Method::from_bytes(asked.as_bytes()).ok()?;
    let (path, query) = (req.uri().path(), req.uri().query());
    let entry = (snap.router).lookup(host, &method, path, query, req.headers())?;
    let chain = entry.target.policies.as_ref()?;
    chain.answers_preflights().then_some(entry)
}

/// The answer of a rule that does not forward (a direct response, a redirect); `None` for one
/// that forwards.
fn answer_locally(
    snap: &Arc<Snapshot>,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    entry: &crate::routing::Entry<crate::snapshot::Target>,
    rid: &HeaderValue,
    start: Instant,
    identity: Option<&Identity>,
) -> Option<Response<ResponseBody>> {
    let target = &entry.target;
    let (resp, body) = match &entry.rule.action {
        Action::Forward(_) => return None,
        Action::Direct(d) => {
            let mut resp = Response::new(());
            *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
            if let Some(ct) = &target.content_type {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            (resp, target.body.clone())
        }
        Action::Redirect(r) => {
            // Checked before routing; asked again here rather than kept across the chain.
            let (host, port) = request_target::host(req).unwrap_or_default();
            let (path, query) = (req.uri().path(), req.uri().query());
            let location = redirect_location(r, conn.scheme, &host, port, path, query);
            let mut resp = Response::new(());
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
            if let Ok(loc) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            (resp, Bytes::new())
        }
    };
    let log = log_context(snap, conn, req, rid, Some(&entry.route), identity);
    let done = Completion::new(start, target.local_metrics.clone(), log);
    Some(local_response(resp, body, &entry.rule, rid.clone(), done))
}

/// The exchange of a forwarding rule (for a caller not identified: the handler sets `identity`).
fn exchange<'a>(
    snap: &'a Arc<Snapshot>,
    conn: &'a ConnInfo,
    req: &Request<Incoming>,
    entry: &'a crate::routing::Entry<crate::snapshot::Target>,
    rid: &'a HeaderValue,
    start: Instant,
    grpc: bool,
) -> Exchange<'a> {
    let mut timeout = entry.rule.timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT);
    if grpc {
        // A gRPC client's deadline shortens the route timeout, never lengthens it.
        timeout = super::grpc::capped(timeout, super::grpc::timeout(req.headers()));
    }
    Exchange {
        snap,
        conn,
        entry,
        rid,
        start,
        timeout,
        identity: None,
    }
}

/// The answer to `OPTIONS *`, which asks about the gateway, not about any route.
fn server_options(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    rid: HeaderValue,
    start: Instant,
) -> Response<ResponseBody> {
    let log = log_context(snap, conn, req, &rid, None, None);
    let mut done = Completion::new(start, snap.no_route_metrics.clone(), log);
    done.status = 200;
    let mut resp = Response::new(ResponseBody::full(Bytes::new(), Some(done)));
    let h = resp.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
    );
    h.insert(X_REQUEST_ID.clone(), rid);
    resp
}

/// A developer portal page served on this listener; logged and counted like other answers the
/// gateway makes itself outside any route.
fn portal_page(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    rid: HeaderValue,
    answer: crate::portal::Answer,
    start: Instant,
) -> Response<ResponseBody> {
    let log = log_context(snap, conn, req, &rid, None, None);
    let mut done = Completion::new(start, snap.no_route_metrics.clone(), log);
    done.status = answer.status.as_u16();
    let (mut parts, body) = answer.into_response::<Bytes>().into_parts();
    parts.headers.insert(X_REQUEST_ID.clone(), rid);
    Response::from_parts(parts, ResponseBody::full(body, Some(done)))
}

/// The error response for a request that reached no route.
fn unrouted(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    rid: &HeaderValue,
    err: ProxyError,
    start: Instant,
) -> Response<ResponseBody> {
    let log = log_context(snap, conn, req, rid, None, None);
    let done = Completion::new(start, snap.no_route_metrics.clone(), log);
    error_response(snap, err, rid, &snap.no_route_errors, done)
}

/// Access-log data for a request, when logging is on. Everything is a reference-counted clone of
/// what the request already holds: no string is copied here.
fn log_context(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    rid: &HeaderValue,
    route: Option<&Arc<str>>,
    identity: Option<&Identity>,
) -> Option<Box<LogContext>> {
    let logger = snap.access_log.as_ref()?;
    Some(Box::new(LogContext {
        logger: logger.clone(),
        request_id: rid.clone(),
        client: conn.forwarded_for.clone(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        host: req.headers().get(header::HOST).cloned(),
        route: route.cloned(),
        backend: None,
        upstream: None,
        upstream_duration: None,
        bytes_in: None,
        error: None,
        attempts: None,
        client_cert: conn.client_cert.as_ref().map(|c| c.subject.clone()),
        override_use: None,
        reason: None,
        identity: identity.cloned(),
    }))
}

fn local_response(
    resp: Response<()>,
    body: Bytes,
    rule: &gatehouse_config::Rule,
    rid: HeaderValue,
    mut done: Completion,
) -> Response<ResponseBody> {
    let (mut parts, ()) = resp.into_parts();
    forward::apply_mods(&mut parts.headers, &rule.response_headers);
    parts.headers.insert(X_REQUEST_ID.clone(), rid);
    done.status = parts.status.as_u16();
    Response::from_parts(parts, ResponseBody::full(body, Some(done)))
}

/// The one error response: the `ProxyError` mapping, the request id, the error counted and logged.
pub(crate) fn error_response(
    snap: &Snapshot,
    err: ProxyError,
    rid: &HeaderValue,
    errors: &ErrorCounters,
    mut done: Completion,
) -> Response<ResponseBody> {
    tracing::debug!(request_id = rid.to_str().unwrap_or(""), "{err}");
    errors.inc(&snap.metrics, err.kind);
    let (mut parts, body) = err.to_response(rid).into_parts();
    parts.headers.insert(X_REQUEST_ID.clone(), rid.clone());
    if let Some(l) = done.log.as_mut() {
        l.error = Some(err.kind.as_str());
    }
    done.status = parts.status.as_u16();
    // Kept for `grpc::render_error`, which answers gRPC clients with the error's gRPC status.
    parts.extensions.insert(err);
    Response::from_parts(parts, ResponseBody::full(body, Some(done)))
}

fn redirect_location(
    r: &Redirect,
    scheme: &str,
    host: &str,
    port: Option<&str>,
    path: &str,
    query: Option<&str>,
) -> String {
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let new_host = r.host.as_deref().unwrap_or(host);
    let keep_port = r.host.is_none() && new_scheme == scheme;
    let port = match (r.port, keep_port) {
        (Some(p), _) => Some(Cow::Owned(p.to_string())),
        (None, true) => port.map(Cow::Borrowed),
        (None, false) => None,
    };
    let mut out = format!("{new_scheme}://{new_host}");
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p);
    }
    out.push_str(r.path.as_deref().unwrap_or(path));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_request_ids_are_32_lowercase_hex_digits_and_differ() {
        let ids: Vec<HeaderValue> = (0..2000).map(|_| new_request_id()).collect();
        for id in &ids {
            let b = id.as_bytes();
            assert_eq!(b.len(), 32, "{id:?}");
            assert!(
                b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{id:?}"
            );
        }
        let distinct: std::collections::HashSet<&[u8]> = ids.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(distinct.len(), ids.len());
        // Every digit value turns up (a broken nibble split would leave some out).
        for d in HEX {
            assert!(
                ids.iter().any(|id| id.as_bytes().contains(d)),
                "{}",
                *d as char
            );
        }
    }

    #[test]
    fn redirects_keep_what_they_do_not_change() {
        let r = Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: None,
            status: 301,
        };
        assert_eq!(
            redirect_location(&r, "http", "a.com", Some("8080"), "/x", Some("q=1")),
            "https://a.com/x?q=1"
        );
        let r = Redirect {
            scheme: None,
            host: None,
            port: None,
            path: Some("/new".into()),
            status: 302,
        };
        assert_eq!(
            redirect_location(&r, "http", "a.com", Some("8080"), "/x", None),
            "http://a.com:8080/new"
        );
    }
}
