//! Request flow, policy chain, after the IP filter: `cors`. A preflight (`OPTIONS` with `Origin`
//! and `Access-Control-Request-Method`) is answered here, at the edge, and never reaches the
//! backend: 204 with the policy's methods, headers, credentials and max-age when the origin is
//! allowed, 403 `forbidden` when it is not. Other requests from an allowed origin go on and their
//! response (whoever makes it) gets `Access-Control-Allow-Origin` and friends; a request from any
//! other origin gets no CORS field at all. Every response of the route carries `Vary: Origin`,
//! so a cache never hands one origin's answer to another.

use super::{Effects, Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use bytes::Bytes;
use gatehouse_config::Cors;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};

static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");
static VARY_PREFLIGHT: HeaderValue =
    HeaderValue::from_static("access-control-request-method, access-control-request-headers");
static ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");

/// A compiled `cors`: the answer's header values built once per snapshot.
pub(crate) struct CorsStep {
    /// Exact origins, lower case.
    origins: Box<[Box<str>]>,
    /// `*` is among the origins (never with credentials: validation refuses it).
    any_origin: bool,
    methods: HeaderValue,
    /// `None`: no header may be asked for; `Some(None)`: any (the request's list is echoed).
    headers: Option<Option<HeaderValue>>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// `a, b, c` as one field value; `None` for an empty list or a value that cannot be one.
fn joined(items: &[String]) -> Option<HeaderValue> {
    (!items.is_empty())
        .then(|| HeaderValue::from_str(&items.join(", ")).ok())
        .flatten()
}

impl CorsStep {
    /// The step of a policy's `cors`.
    pub(crate) fn new(c: &Cors) -> Self {
        let any_header = c.allow_headers.iter().any(|h| h == "*");
        CorsStep {
            origins: (c.allow_origins.iter())
                .filter(|o| *o != "*")
                .map(|o| o.as_str().into())
                .collect(),
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            methods: joined(&c.allow_methods).unwrap_or_else(|| HeaderValue::from_static("GET")),
            headers: if any_header {
                Some(None)
            } else {
                joined(&c.allow_headers).map(Some)
            },
            expose: joined(&c.expose_headers),
            credentials: c.allow_credentials,
            max_age: c.max_age.map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, or `None` when it may not call.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let o = origin.as_bytes();
        if (self.origins.iter()).any(|a| a.as_bytes().eq_ignore_ascii_case(o)) {
            // The origin itself, never `*`, so credentials can go with it.
            Some(origin.clone())
        } else if self.any_origin && o != b"null" {
            Some(ANY.clone())
        } else {
            None
        }
    }

    /// Answers a preflight, or lets the request go on with the CORS fields its response needs.
    pub(crate) fn check(&self, input: &Input, fx: &mut Effects) -> Result<(), Box<Rejection>> {
        fx.response.push((header::VARY, VARY_ORIGIN.clone()));
        let Some(origin) = input.headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let allowed = self.allow_origin(origin);
        let preflight = *input.method == Method::OPTIONS
            && (input.headers).contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return Err(self.preflight(input, allowed));
        }
        if let Some(allow) = allowed {
            fx.response
                .push((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow));
            if self.credentials {
                fx.response
                    .push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone()));
            }
            if let Some(e) = &self.expose {
                fx.response
                    .push((header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
            }
        }
        Ok(())
    }

    /// The answer to a preflight: 204 with the policy, or 403 for an origin it does not allow.
    fn preflight(&self, input: &Input, allowed: Option<HeaderValue>) -> Box<Rejection> {
        let Some(allow) = allowed else {
            let mut r = Rejection::new(ProxyError::new(
                ErrorKind::Forbidden,
                "this origin may not call this route (CORS)",
            ));
            r.reason = Some("cors_origin");
            return r;
        };
        let mut r = Rejection::new(ProxyError::new(ErrorKind::Forbidden, "CORS preflight"));
        r.answer = Some((StatusCode::NO_CONTENT, Bytes::new()));
        let mut add = |name: HeaderName, value: HeaderValue| r.headers.push((name, value));
        add(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        add(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        let asked = input.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        match (&self.headers, asked) {
            (Some(Some(list)), _) => add(header::ACCESS_CONTROL_ALLOW_HEADERS, list.clone()),
            (Some(None), Some(asked)) => add(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone()),
            _ => {}
        }
        if self.credentials {
            add(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        if let Some(m) = &self.max_age {
            add(header::ACCESS_CONTROL_MAX_AGE, m.clone());
        }
        add(header::VARY, VARY_PREFLIGHT.clone());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use std::time::Duration;

    fn policy(origins: &[&str], credentials: bool) -> CorsStep {
        CorsStep::new(&Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec!["GET".into(), "PUT".into()],
            allow_headers: vec!["authorization".into(), "x-trace".into()],
            expose_headers: vec!["x-request-id".into()],
            allow_credentials: credentials,
            max_age: Some(Duration::from_secs(600)),
        })
    }

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn field<'a>(list: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        (list.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_answered_here() {
        let c = policy(&["https://app.example.com"], true);
        let h = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "authorization"),
        ]);
        let options = Method::OPTIONS;
        let mut input = Input::for_test(&h, "/v1/x");
        input.method = &options;
        let mut fx = Effects::default();
        let r = c.check(&input, &mut fx).expect_err("answered at the edge");
        assert_eq!(r.answer.as_ref().map(|a| a.0), Some(StatusCode::NO_CONTENT));
        let f = |n| field(&r.headers, n);
        assert_eq!(
            f("access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(f("access-control-allow-methods"), Some("GET, PUT"));
        assert_eq!(
            f("access-control-allow-headers"),
            Some("authorization, x-trace")
        );
        assert_eq!(f("access-control-allow-credentials"), Some("true"));
        assert_eq!(f("access-control-max-age"), Some("600"));
        assert_eq!(field(&fx.response, "vary"), Some("origin"));
    }

    #[test]
    fn other_origins_get_no_cors_fields_and_preflights_from_them_are_refused() {
        let c = policy(&["https://app.example.com"], true);
        let h = headers(&[("origin", "https://evil.example")]);
        let mut fx = Effects::default();
        assert!(c.check(&Input::for_test(&h, "/"), &mut fx).is_ok());
        assert_eq!(fx.response.len(), 1, "only Vary: {:?}", fx.response);
        // A look-alike is not the origin: matching is exact, not by suffix or prefix.
        let h = headers(&[("origin", "https://app.example.com.evil.example")]);
        let mut fx = Effects::default();
        assert!(c.check(&Input::for_test(&h, "/"), &mut fx).is_ok());
        assert_eq!(field(&fx.response, "access-control-allow-origin"), None);
        let h = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        let options = Method::OPTIONS;
        let mut input = Input::for_test(&h, "/");
        input.method = &options;
        let r = c
            .check(&input, &mut Effects::default())
            .expect_err("refused");
        assert!(r.answer.is_none());
        assert_eq!(r.error.kind, ErrorKind::Forbidden);
        assert_eq!(field(&r.headers, "access-control-allow-origin"), None);
    }

    #[test]
    fn simple_requests_from_an_allowed_origin_get_the_fields_and_vary() {
        let c = policy(&["https://app.example.com"], true);
        let h = headers(&[("origin", "https://APP.example.com")]);
        let mut fx = Effects::default();
        assert!(c.check(&Input::for_test(&h, "/"), &mut fx).is_ok());
        let f = |n| field(&fx.response, n);
        assert_eq!(
            f("access-control-allow-origin"),
            Some("https://APP.example.com")
        );
        assert_eq!(f("access-control-allow-credentials"), Some("true"));
        assert_eq!(f("access-control-expose-headers"), Some("x-request-id"));
        assert_eq!(f("vary"), Some("origin"));
        // Without an Origin there is nothing to allow, but caches still learn that it matters.
        let mut fx = Effects::default();
        assert!(c
            .check(&Input::for_test(&HeaderMap::new(), "/"), &mut fx)
            .is_ok());
        assert_eq!(field(&fx.response, "vary"), Some("origin"));
        assert_eq!(fx.response.len(), 1);
    }

    #[test]
    fn a_wildcard_policy_answers_star_and_never_credentials() {
        let c = policy(&["*"], false);
        let h = headers(&[("origin", "https://anyone.example")]);
        let mut fx = Effects::default();
        assert!(c.check(&Input::for_test(&h, "/"), &mut fx).is_ok());
        assert_eq!(
            field(&fx.response, "access-control-allow-origin"),
            Some("*")
        );
        assert_eq!(
            field(&fx.response, "access-control-allow-credentials"),
            None
        );
        // The opaque origin of sandboxed frames and files is not "any site".
        let h = headers(&[("origin", "null")]);
        let mut fx = Effects::default();
        assert!(c.check(&Input::for_test(&h, "/"), &mut fx).is_ok());
        assert_eq!(field(&fx.response, "access-control-allow-origin"), None);
    }
}
