//! Request flow, after route lookup and before forwarding, redirecting or answering: the rule's
//! policy chain (`chain`), compiled once per snapshot. A step either lets the request go on or
//! answers it; the answer is a `Rejection`, rendered by `respond` as the one JSON error shape.
//! Steps: `requestLimits` (413 on a declared length), `rateLimit` (local or Redis; 429) and the
//! rule's `fault` (delay, abort). Authentication, CORS and IP filters come with the security issue.

pub(crate) mod chain;
pub(crate) mod fault;
pub(crate) mod rate_limit;

use crate::error::ProxyError;
use crate::proxy::body::{Completion, ResponseBody};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::ErrorCounters;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use ipnet::IpNet;
use std::net::IpAddr;

pub(crate) use chain::Chain;

/// What the chain reads of a request: kept small and independent of how forwarding is built.
pub(crate) struct Input<'a> {
    /// Request header fields.
    pub(crate) headers: &'a HeaderMap,
    /// The downstream peer.
    pub(crate) peer: IpAddr,
    /// `Gateway.trustedProxies`: peers whose `X-Forwarded-For` is believed.
    pub(crate) trusted: &'a [IpNet],
    /// The matched route's name (`namespace/name`).
    pub(crate) route: &'a str,
}

impl Input<'_> {
    /// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (read from the right, as
    /// only the entries our trusted proxies appended can be believed).
    pub(crate) fn client_ip(&self) -> IpAddr {
        client_ip(self.peer, self.headers, self.trusted)
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
/// one (a fault's abort status), and header fields to add (rate limit headers).
pub(crate) struct Rejection {
    /// The error (kind and message for the JSON body, logs and metrics).
    pub(crate) error: ProxyError,
    /// The status, when not the kind's own.
    pub(crate) status: Option<StatusCode>,
    /// Extra response header fields.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection with the kind's own status and no extra header fields.
    pub(crate) fn new(error: ProxyError) -> Box<Self> {
        Box::new(Rejection {
            error,
            status: None,
            headers: Vec::new(),
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
    tracing::debug!(request_id = rid.to_str().unwrap_or(""), "{}", r.error);
    errors.inc(&snap.metrics, r.error.kind);
    let (mut parts, body) = r.error.to_response(rid).into_parts();
    if let Some(status) = r.status {
        parts.status = status;
    }
    for (name, value) in r.headers {
        parts.headers.insert(name, value);
    }
    parts
        .headers
        .insert(HeaderName::from_static("x-request-id"), rid.clone());
    if let Some(l) = done.log.as_mut() {
        l.error = Some(r.error.kind.as_str());
    }
    done.status = parts.status.as_u16();
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
