//! Request flow, before routing: the request target and Host are checked (RFC 9112 §3.2, RFC 9113
//! §8.3.1) and the path brought to its normal form, once, so that the route table, every policy
//! and the upstream all see the same request. Anything ambiguous is a 400 here rather than a
//! disagreement between the gateway and a backend later.

use super::normalize::{self, EscapedSlashes};
use crate::error::{ErrorKind, ProxyError};
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri, Version};
use std::borrow::Cow;

/// What the checks decided about a request that may go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// An origin-form or absolute-form request, ready for routing.
    Route,
    /// `OPTIONS *`: a question about the gateway itself, answered by it.
    ServerOptions,
}

fn bad(message: &'static str) -> ProxyError {
    ProxyError::new(ErrorKind::BadRequest, message)
}

/// Checks the target form and Host of `req`, and rewrites its URI to the normal path. On the way,
/// an absolute-form target's authority replaces the Host field (RFC 9112 §3.2.2).
pub(crate) fn check<B>(
    req: &mut Request<B>,
    slashes: EscapedSlashes,
) -> Result<Admission, ProxyError> {
    // A gateway is not a forward proxy: tunnels are not routed. An extended CONNECT (RFC 8441,
    // `:protocol`, a WebSocket over HTTP/2) is the HTTP/2 form of an upgrading GET, and is
    // routed and checked as one (`upgrade.rs` turns it into an HTTP/1.1 upgrade upstream).
    if req.method() == Method::CONNECT {
        if req.extensions().get::<hyper::ext::Protocol>().is_none() {
            return Err(bad("CONNECT is not supported"));
        }
        *req.method_mut() = Method::GET;
    }
    let uri = req.uri();
    if uri.scheme().is_none() {
        if uri.authority().is_some() {
            // `GET admin HTTP/1.1` parses as authority-form, which only CONNECT may use.
            return Err(bad("the request target must start with `/`"));
        }
        if uri.path() == "*" {
            return if req.method() == Method::OPTIONS && uri.query().is_none() {
                host(req).map(|_| Admission::ServerOptions)
            } else {
                Err(bad("the asterisk-form target is only for OPTIONS"))
            };
        }
    }
    check_framing(req)?;
    check_authority(req)?;
    match normalize::normalize(req.uri().path(), slashes) {
        Ok(None) => {}
        Ok(Some(path)) => *req.uri_mut() = with_path(req.uri(), &path)?,
        Err(e) => {
            return Err(ProxyError::new(
                ErrorKind::BadRequest,
                format!("invalid request path: {e}"),
            ))
        }
    }
    Ok(Admission::Route)
}

/// RFC 9112 §6.1 and §6.3, RFC 9110 §8.6: a message whose body could be delimited two ways is
/// refused rather than forwarded with one reading of it, which is how requests are smuggled past
/// a proxy (CL.TE, TE.CL, and the TE.TE obfuscations). hyper has already refused what it cannot
/// parse (a non-numeric length, a last coding that is not `chunked`); what is left to refuse here
/// is what it tolerates: a length beside a transfer coding, a repeated or listed length (even of
/// equal values), and any Transfer-Encoding other than one `chunked`. Two hashed lookups for the
/// usual request, which carries neither field.
fn check_framing<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let h = req.headers();
    let mut te = h.get_all(header::TRANSFER_ENCODING).iter();
    let mut cl = h.get_all(header::CONTENT_LENGTH).iter();
    let (te1, te2, cl1, cl2) = (te.next(), te.next(), cl.next(), cl.next());
    if te1.is_some() && cl1.is_some() {
        return Err(bad(
            "the request has both Content-Length and Transfer-Encoding",
        ));
    }
    if let Some(te) = te1 {
        if te2.is_some() || !te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(bad("the only transfer coding accepted is one `chunked`"));
        }
    }
    if let Some(cl) = cl1 {
        let digits = cl.as_bytes().trim_ascii();
        if cl2.is_some() || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad(
                "the request needs at most one Content-Length, a decimal number",
            ));
        }
    }
    Ok(())
}

/// A target with an authority (absolute-form, or HTTP/2's `:authority`): well formed, and either
/// replacing the Host field (HTTP/1.1) or in agreement with it (HTTP/2). Origin-form requests get
/// their Host checked in `host`, the one lookup of the field on the way to routing.
fn check_authority<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    let Some(a) = req.uri().authority() else {
        return Ok(());
    };
    if !valid_authority(a.as_str().as_bytes()) {
        return Err(bad(
            "the request target's authority is not a valid host[:port]",
        ));
    }
    let version = req.version();
    if version == Version::HTTP_2 || version == Version::HTTP_3 {
        // Both `:authority` and `host` may be sent; a request that names two hosts is routed by
        // one and served by the other somewhere.
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let (first, second) = (hosts.next(), hosts.next());
        if second.is_some() {
            return Err(bad("the request has more than one Host field"));
        }
        if first.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())) {
            return Err(bad("`:authority` and `host` disagree"));
        }
    } else {
        // Absolute-form: the target's authority wins over any Host field (RFC 9112 §3.2.2).
        let value = HeaderValue::from_str(a.as_str())
            .map_err(|_| bad("the request target's authority is not a valid host"))?;
        req.headers_mut().insert(header::HOST, value);
    }
    Ok(())
}

/// The request's host (lower case, without port) and port: the target's authority, or the one
/// Host field, which must be well formed and, in HTTP/1.1, present.
pub(crate) fn host<B>(req: &Request<B>) -> Result<(Cow<'_, str>, Option<&str>), ProxyError> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => {
            let mut hosts = req.headers().get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                (Some(_), Some(_)) => return Err(bad("the request has more than one Host field")),
                // Only ASCII passes `parse_authority` below.
                (Some(h), None) => h.to_str().unwrap_or("\u{0}"),
                (None, _) if req.version() == Version::HTTP_11 => {
                    return Err(bad("an HTTP/1.1 request needs a Host field"))
                }
                (None, _) => return Ok((Cow::Borrowed(""), None)),
            }
        }
    };
    let Some(a) = parse_authority(raw.as_bytes()) else {
        return Err(bad("the Host field is not a valid host[:port]"));
    };
    let (host, rest) = raw.split_at(a.host_end);
    let port = rest.strip_prefix(':');
    let host = if a.upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Ok((host, port))
}

/// Bytes of a DNS name or IPv4 address as a Host may carry them: 1, or 2 for an upper-case
/// letter; 0 for anything else.
static REG_NAME: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_uppercase() {
            t[i] = 2;
        } else if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_' || c == b'~' {
            t[i] = 1;
        }
        i += 1;
    }
    t
};

/// `host[:port]` where host is a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`, `~`)
/// or a bracketed IPv6 literal, and port is up to five digits. Userinfo (`user@host`), lists
/// (`a, b`) and anything else a backend might read differently are refused.
pub(crate) fn valid_authority(b: &[u8]) -> bool {
    parse_authority(b).is_some()
}

/// A checked authority: where its host ends, and whether the host has upper-case letters.
struct Authority {
    host_end: usize,
    upper: bool,
}

/// Checks `host[:port]` in one pass over its bytes (by table), finding the host/port split and
/// whether the host needs lower-casing on the way: a request's Host is read once.
fn parse_authority(b: &[u8]) -> Option<Authority> {
    let (host_end, upper) = if b.first() == Some(&b'[') {
        let end = b.iter().position(|&c| c == b']')?;
        let inner = &b[1..end];
        let ok = !inner.is_empty()
            && inner
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        if !ok {
            return None;
        }
        (end + 1, inner.iter().any(u8::is_ascii_uppercase))
    } else {
        let mut upper = false;
        let mut end = b.len();
        for (i, &c) in b.iter().enumerate() {
            match REG_NAME[c as usize] {
                0 => {
                    end = i;
                    break;
                }
                2 => upper = true,
                _ => {}
            }
        }
        if end == 0 {
            return None;
        }
        (end, upper)
    };
    let port_ok = match b[host_end..].split_first() {
        None => true,
        Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok.then_some(Authority { host_end, upper })
}

/// `uri` with its path replaced, query and authority kept.
fn with_path(uri: &Uri, path: &str) -> Result<Uri, ProxyError> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| bad("invalid request path"))?);
    Uri::from_parts(parts).map_err(|_| bad("invalid request path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder()
            .method(method)
            .uri(target)
            .version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    fn verdict(r: &mut Request<()>) -> Result<Admission, String> {
        let admitted = check(r, EscapedSlashes::Reject).map_err(|e| e.message)?;
        host(r).map_err(|e| e.message)?;
        Ok(admitted)
    }

    #[test]
    fn host_is_required_once_and_well_formed_in_http_1_1() {
        let v11 = Version::HTTP_11;
        assert!(verdict(&mut req("GET", "/", v11, &[])).is_err());
        assert!(verdict(&mut req("GET", "/", v11, &["a", "b"])).is_err());
        assert!(verdict(&mut req("GET", "/", v11, &["a, b"])).is_err());
        assert!(verdict(&mut req("GET", "/", v11, &["user@h"])).is_err());
        assert!(verdict(&mut req("GET", "/", v11, &["h:80x"])).is_err());
        assert!(verdict(&mut req("GET", "/", v11, &["h:123456"])).is_err());
        assert!(verdict(&mut req("GET", "/", v11, &["[::1"])).is_err());
        for ok in [
            "a.example.com",
            "a.example.com:8080",
            "127.0.0.1:80",
            "[::1]:443",
            "h:",
        ] {
            assert_eq!(
                verdict(&mut req("GET", "/", v11, &[ok])),
                Ok(Admission::Route),
                "{ok}"
            );
        }
        // HTTP/1.0 never required Host.
        assert_eq!(
            verdict(&mut req("GET", "/", Version::HTTP_10, &[])),
            Ok(Admission::Route)
        );
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let mut r = req("GET", "http://real.example/x", Version::HTTP_11, &["decoy"]);
        assert_eq!(verdict(&mut r), Ok(Admission::Route));
        assert_eq!(r.headers()[header::HOST], "real.example");
        let mut r = req(
            "GET",
            "http://user@real.example/x",
            Version::HTTP_11,
            &["a"],
        );
        assert!(verdict(&mut r).is_err());
    }

    #[test]
    fn http2_authority_and_host_must_agree() {
        let v2 = Version::HTTP_2;
        let mut r = req("GET", "http://a.example/", v2, &["b.example"]);
        assert!(verdict(&mut r).is_err());
        let mut r = req("GET", "http://a.example/", v2, &["A.example"]);
        assert_eq!(verdict(&mut r), Ok(Admission::Route));
        let mut r = req("GET", "http://a.example/", v2, &[]);
        assert_eq!(verdict(&mut r), Ok(Admission::Route));
    }

    #[test]
    fn target_forms_are_checked() {
        let v11 = Version::HTTP_11;
        assert!(verdict(&mut req("GET", "admin", v11, &["h"])).is_err());
        assert!(verdict(&mut req("GET", "*", v11, &["h"])).is_err());
        assert!(verdict(&mut req("CONNECT", "h:443", v11, &["h"])).is_err());
        assert_eq!(
            verdict(&mut req("OPTIONS", "*", v11, &["h"])),
            Ok(Admission::ServerOptions)
        );
        let mut r = req("GET", "/a//b/../c?x=1", v11, &["h"]);
        assert_eq!(verdict(&mut r), Ok(Admission::Route));
        assert_eq!(r.uri(), "/a/c?x=1");
    }

    #[test]
    fn a_body_is_delimited_one_way_only() {
        let post = |fields: &[(&str, &str)]| {
            let mut b = Request::post("/x").header(header::HOST, "h");
            for (n, v) in fields {
                b = b.header(*n, *v);
            }
            b.body(()).unwrap()
        };
        let (cl, te) = ("content-length", "transfer-encoding");
        for bad in [
            vec![(cl, "3"), (te, "chunked")],
            vec![(cl, "3"), (cl, "3")],
            vec![(cl, "3, 3")],
            vec![(cl, "")],
            vec![(cl, "+3")],
            vec![(te, "chunked"), (te, "chunked")],
            vec![(te, "chunked, chunked")],
            vec![(te, "gzip, chunked")],
            vec![(te, "identity")],
        ] {
            assert!(verdict(&mut post(&bad)).is_err(), "{bad:?}");
        }
        for good in [
            vec![],
            vec![(cl, "0")],
            vec![(cl, " 12 ")],
            vec![(te, "Chunked")],
        ] {
            assert_eq!(verdict(&mut post(&good)), Ok(Admission::Route), "{good:?}");
        }
    }
}
