//! Request flow, after route lookup and before forwarding, redirecting or answering: the rule's
//! policy chain (`chain`), compiled once per snapshot. A step either lets the request go on or
//! answers it; the answer is a `Rejection`, rendered by `respond` as the one JSON error shape.
//! Steps: `requestLimits` (413 on a declared length), authentication (`auth`: jwt, apiKey,
//! basicAuth; 401/403), `rateLimit` (local or Redis; 429) and the rule's `fault` (delay, abort).
//! Steps read the request through `Input` and write what they decide into `Effects`: the caller's
//! `Identity`, header fields for the upstream request and for the client's response.

pub(crate) mod auth;
pub(crate) mod chain;
pub(crate) mod cors;
pub(crate) mod fault;
pub(crate) mod identity;
pub(crate) mod ip_filter;
pub(crate) mod rate_limit;
pub(crate) mod validate;

use crate::error::ProxyError;
use crate::proxy::body::{Completion, ResponseBody};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::ErrorCounters;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Extensions, Method, Response, StatusCode, Uri};
use identity::Identity;
use ipnet::IpNet;
use std::net::IpAddr;

pub(crate) use chain::Chain;

/// What the chain reads of a request: kept small and independent of how forwarding is built.
/// Everything is borrowed from the request; building one costs nothing.
pub(crate) struct Input<'a> {
    /// The method.
    #[allow(dead_code)] // read by the CORS and external auth steps
    pub(crate) method: &'a Method,
    /// The request target (path and query; see `path`, `query`, `query_param`).
    pub(crate) uri: &'a Uri,
    /// Request header fields (cookies: `cookie`).
    pub(crate) headers: &'a HeaderMap,
    /// The request's extensions: what the connection learned, such as the verified client
    /// certificate the TLS listener puts there (read it with `extensions.get::<T>()`).
    #[allow(dead_code)] // read by policies on client certificates
    pub(crate) extensions: &'a Extensions,
    /// The downstream peer.
    pub(crate) peer: IpAddr,
    /// `Gateway.trustedProxies`: peers whose `X-Forwarded-For` is believed.
    pub(crate) trusted: &'a [IpNet],
    /// The matched route's name (`namespace/name`).
    pub(crate) route: &'a str,
}

impl<'a> Input<'a> {
    /// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (read from the right, as
    /// only the entries our trusted proxies appended can be believed).
    pub(crate) fn client_ip(&self) -> IpAddr {
        client_ip(self.peer, self.headers, self.trusted)
    }

    /// A GET of `target` from 127.0.0.1 on route `default/api` (unit tests).
    #[cfg(test)]
    pub(crate) fn for_test(headers: &'a HeaderMap, target: &str) -> Self {
        let uri: &'static Uri = Box::leak(Box::new(target.parse().expect("a request target")));
        Input {
            method: &Method::GET,
            uri,
            headers,
            extensions: Box::leak(Box::default()),
            peer: IpAddr::from([127, 0, 0, 1]),
            trusted: &[],
            route: "default/api",
        }
    }

    /// The path, as routing saw it.
    #[allow(dead_code)] // read by the external auth step
    pub(crate) fn path(&self) -> &'a str {
        self.uri.path()
    }

    /// The query string, without `?`.
    pub(crate) fn query(&self) -> Option<&'a str> {
        self.uri.query()
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub(crate) fn query_param(&self, name: &str) -> Option<std::borrow::Cow<'a, str>> {
        form_urlencoded::parse(self.query()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The value of cookie `name`, if the request sends it.
    pub(crate) fn cookie(&self, name: &str) -> Option<&'a [u8]> {
        for line in self.headers.get_all(http::header::COOKIE) {
            for pair in line.as_bytes().split(|b| *b == b';') {
                let pair = pair.trim_ascii_start();
                if let Some(rest) = pair.strip_prefix(name.as_bytes()) {
                    if let Some(value) = rest.strip_prefix(b"=") {
                        return Some(value.trim_ascii_end());
                    }
                }
            }
        }
        None
    }
}

/// What the steps of a chain decided besides letting the request go on: written by steps, applied
/// by the handler once the chain let the request through (`apply_request`, `apply_response`).
/// Empty — no allocation — unless a step wrote something.
#[derive(Default)]
pub(crate) struct Effects {
    /// The caller, set by authentication steps (merged when several pass); read by later steps
    /// (rate-limit keys), then lent by the handler to the exchange (overrides by claim) and
    /// cloned into the access log's context.
    pub(crate) identity: Option<Identity>,
    /// Header fields of the upstream request: `Some` replaces every field of that name, `None`
    /// removes them (a client-supplied copy of a header the gateway sets, such as a forwarded
    /// claim, must never reach the backend). Applied in order.
    pub(crate) upstream: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Header fields added to the client's response, whatever answers it (upstream, a local
    /// action or a rejection): CORS.
    pub(crate) response: Vec<(HeaderName, HeaderValue)>,
}

impl Effects {
    /// Sets (or merges into) the request's identity.
    pub(crate) fn identify(&mut self, id: Identity) {
        match &mut self.identity {
            Some(have) => have.merge(id),
            None => self.identity = Some(id),
        }
    }

    /// Applies the upstream header edits (the identity stays here: the handler lends it to the
    /// exchange and the access log, with no map insert per request).
    pub(crate) fn apply_request<B>(&mut self, req: &mut http::Request<B>) {
        // Most chains edit no field: not even a `Drain` then.
        if self.upstream.is_empty() {
            return;
        }
        for (name, value) in self.upstream.drain(..) {
            match value {
                Some(v) => {
                    req.headers_mut().insert(name, v);
                }
                None => {
                    req.headers_mut().remove(name);
                }
            }
        }
    }

    /// Adds the response header fields to the client's response.
    pub(crate) fn apply_response<B>(self, resp: &mut Response<B>) {
        if self.response.is_empty() {
            return;
        }
        for (name, value) in self.response {
            resp.headers_mut().append(name, value);
        }
    }
}

fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Later header lines were appended later: walk them, and their entries, from the right.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    client
}

/// A step's answer instead of the upstream's: a proxy error, its status when the step chooses
/// one (a fault's abort status), and header fields to add (rate limit headers,
/// `WWW-Authenticate`). A step that answers without an error (a CORS preflight) sets `answer`.
pub(crate) struct Rejection {
    /// The error (kind and message for the JSON body, logs and metrics).
    pub(crate) error: ProxyError,
    /// The status, when not the kind's own.
    pub(crate) status: Option<StatusCode>,
    /// Extra response header fields.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Why, in a word for the access log (`expired`, `bad_signature`...); never a credential.
    pub(crate) reason: Option<&'static str>,
    /// A complete answer sent instead of the error (not counted as an error): its status and
    /// body; `headers` are added to it.
    pub(crate) answer: Option<(StatusCode, bytes::Bytes)>,
}

impl Rejection {
    /// A rejection with the kind's own status and no extra header fields.
    pub(crate) fn new(error: ProxyError) -> Box<Self> {
        Box::new(Rejection {
            error,
            status: None,
            headers: Vec::new(),
            reason: None,
            answer: None,
        })
    }
}

/// The response for a rejected request: the JSON error with the request id, counted and logged
/// like every proxy error.
pub(crate) fn respond(
    snap: &Snapshot,
    r: Rejection,
    rid: &HeaderValue,
    errors: &ErrorCounters,
    mut done: Completion,
) -> Response<ResponseBody> {
    if let Some((status, body)) = r.answer {
        done.status = status.as_u16();
        // An answer made elsewhere (an auth service's refusal) still says why in the log.
        if let Some(l) = done.log.as_mut() {
            l.reason = r.reason;
        }
        let mut resp = Response::new(ResponseBody::full(body, Some(done)));
        *resp.status_mut() = status;
        for (name, value) in r.headers {
            resp.headers_mut().append(name, value);
        }
        resp.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), rid.clone());
        return resp;
    }
    tracing::debug!(request_id = rid.to_str().unwrap_or(""), "{}", r.error);
    errors.inc(&snap.metrics, r.error.kind);
    let (mut parts, body) = r.error.to_response(rid).into_parts();
    if let Some(status) = r.status {
        parts.status = status;
    }
    for (name, value) in r.headers {
        parts.headers.append(name, value);
    }
    parts
        .headers
        .insert(HeaderName::from_static("x-request-id"), rid.clone());
    if let Some(l) = done.log.as_mut() {
        l.error = Some(r.error.kind.as_str());
        l.reason = r.reason;
    }
    done.status = parts.status.as_u16();
    // Kept for `grpc::render_error`, which answers gRPC clients with the error's gRPC status.
    parts.extensions.insert(r.error);
    Response::from_parts(parts, ResponseBody::full(body, Some(done)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_first_untrusted_address_from_the_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.7".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &trusted).to_string(), "1.2.3.4");
        // An untrusted peer's header is not believed.
        let peer: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &trusted), peer);
        assert_eq!(client_ip(peer, &h, &[]), peer);
        // Garbage stops the walk at the last address that could be believed.
        let mut bad = HeaderMap::new();
        bad.append("x-forwarded-for", "not-an-ip, 10.0.0.9".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &bad, &trusted).to_string(), "10.0.0.9");
    }
}
