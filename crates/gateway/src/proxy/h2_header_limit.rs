//! Connection flow, HTTP/2, as each request arrives (before `conn::respond`): a header list past
//! the listener's `limits.maxRequestHeadersSize` gets the gateway's JSON 431
//! (`request_header_too_large`, with `x-request-id`, counted under `route="none"`), as an
//! HTTP/1.1 head past it does (`parse_error.rs`).
//!
//! The h2 layer would refuse such a list itself, with a bare 431, so it is given a higher hard
//! ceiling (`ceiling`: twice the limit) and the list is measured here, the way RFC 7541 §4.1 and
//! h2 measure it: name + value + 32 per field, pseudo-fields included. Past the ceiling h2's own
//! bare 431 still answers (a stream holds at most that much). HTTP/1.1 requests never come here.

use super::body::ResponseBody;
use super::handler::request_id;
use crate::error::{ErrorKind, ProxyError};
use crate::snapshot::Snapshot;
use http::{Request, Response};

/// RFC 7541 §4.1's per-field overhead.
const FIELD_OVERHEAD: usize = 32;

/// The header list size h2 is told to refuse by itself, for a listener `limit`.
pub(crate) fn ceiling(limit: usize) -> u32 {
    u32::try_from(limit.saturating_mul(2)).unwrap_or(u32::MAX)
}

/// The size of `req`'s header list as HTTP/2 counts it: its pseudo-fields (`:method`, `:scheme`,
/// `:authority`, `:path`) and fields.
pub(crate) fn header_list_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let field = |name: usize, value: usize| name + value + FIELD_OVERHEAD;
    let pseudo = field(":method".len(), req.method().as_str().len())
        + uri
            .scheme_str()
            .map_or(0, |s| field(":scheme".len(), s.len()))
        + (uri.authority()).map_or(0, |a| field(":authority".len(), a.as_str().len()))
        + (uri.path_and_query()).map_or(0, |p| field(":path".len(), p.as_str().len()));
    let fields: usize = (req.headers().iter())
        .map(|(n, v)| field(n.as_str().len(), v.len()))
        .sum();
    pseudo + fields
}

/// The gateway's 431 to `req`, whose header list of `size` bytes is past `limit`.
#[cold]
pub(crate) fn too_large(
    snap: &Snapshot,
    req: &Request<hyper::body::Incoming>,
    size: usize,
    limit: usize,
) -> Response<ResponseBody> {
    let kind = ErrorKind::HeaderTooLarge;
    snap.no_route_errors.inc(&snap.metrics, kind);
    let rid = request_id(req);
    let err = ProxyError::new(
        kind,
        format!("the request's header list is {size} bytes, past this listener's limit of {limit} (limits.maxRequestHeadersSize)"),
    );
    let (mut parts, body) = err.to_response(&rid).into_parts();
    parts
        .headers
        .insert(http::HeaderName::from_static("x-request-id"), rid);
    let resp = Response::from_parts(parts, ResponseBody::full(body, None));
    match super::grpc::client(req) {
        Some(client) => super::grpc::render_error(resp, client),
        None => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_counted_as_rfc_7541_counts_it() {
        let req = Request::get("https://a.test/p?q")
            .header("x-a", "bc")
            .body(())
            .expect("request");
        // :method GET, :scheme https, :authority a.test, :path /p?q, x-a: bc.
        let expected = (7 + 3) + (7 + 5) + (10 + 6) + (5 + 4) + (3 + 2) + 5 * 32;
        assert_eq!(header_list_size(&req), expected);
    }

    #[test]
    fn h2_is_left_a_ceiling_above_the_limit() {
        assert_eq!(ceiling(16 * 1024), 32 * 1024);
        assert_eq!(ceiling(usize::MAX), u32::MAX);
    }
}
