//! Request flow, before routing: the request target and Host are checked (RFC 9112 §3.2, RFC 9113
//! §8.3.1) and the path brought to its normal form, once, so that the route table, every policy
//! and the upstream all see the same request. Anything ambiguous is a 400 here rather than a
//! disagreement between the gateway and a backend later.

use super::normalize::{self, EscapedSlashes};
use crate::error::{ErrorKind, ProxyError};
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri, Version};

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
    // A gateway is not a forward proxy: tunnels are not routed (WebSocket upgrades arrive later).
    if req.method() == Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    let uri = req.uri();
    if uri.scheme().is_none() {
        if uri.authority().is_some() {
            // `GET admin HTTP/1.1` parses as authority-form, which only CONNECT may use.
            return Err(bad("the request target must start with `/`"));
        }
        if uri.path() == "*" {
            return if req.method() == Method::OPTIONS && uri.query().is_none() {
                check_host(req).map(|()| Admission::ServerOptions)
            } else {
                Err(bad("the asterisk-form target is only for OPTIONS"))
            };
        }
    }
    check_host(req)?;
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

/// One Host per request, well formed, and in agreement with the target's authority.
fn check_host<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("the request has more than one Host field"));
    }
    if let Some(h) = host {
        if !valid_authority(h.as_bytes()) {
            return Err(bad("the Host field is not a valid host[:port]"));
        }
    }
    let version = req.version();
    match req.uri().authority() {
        Some(a) => {
            if !valid_authority(a.as_str().as_bytes()) {
                return Err(bad(
                    "the request target's authority is not a valid host[:port]",
                ));
            }
            if version == Version::HTTP_2 || version == Version::HTTP_3 {
                // Both `:authority` and `host` may be sent; a request that names two hosts is
                // routed by one and served by the other somewhere.
                if host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())) {
                    return Err(bad("`:authority` and `host` disagree"));
                }
            } else {
                // Absolute-form: the target's authority wins over any Host field.
                let value = HeaderValue::from_str(a.as_str())
                    .map_err(|_| bad("the request target's authority is not a valid host"))?;
                req.headers_mut().insert(header::HOST, value);
            }
        }
        None if host.is_none() && version == Version::HTTP_11 => {
            return Err(bad("an HTTP/1.1 request needs a Host field"));
        }
        None => {}
    }
    Ok(())
}

/// `host[:port]` where host is a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`, `~`)
/// or a bracketed IPv6 literal, and port is up to five digits. Userinfo (`user@host`), lists
/// (`a, b`) and anything else a backend might read differently are refused.
pub(crate) fn valid_authority(b: &[u8]) -> bool {
    let (host_ok, rest) = if b.first() == Some(&b'[') {
        match b.iter().position(|&c| c == b']') {
            Some(end) => (
                end > 1
                    && b[1..end]
                        .iter()
                        .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
                &b[end + 1..],
            ),
            None => return false,
        }
    } else {
        let end = b.iter().position(|&c| c == b':').unwrap_or(b.len());
        (
            end > 0
                && b[..end]
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')),
            &b[end..],
        )
    };
    let port_ok = match rest.split_first() {
        None => true,
        Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
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
        check(r, EscapedSlashes::Reject).map_err(|e| e.message)
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
}
