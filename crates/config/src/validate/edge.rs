//! Config flow, step 4 (policies at the edge): a Policy's `externalAuth`, `cors` and `ipFilter`
//! checked and given their defaults; every mistake is reported with the others.

use super::{valid_token, V};
use crate::loader::Ctx;
use crate::model::*;
use crate::raw;
use std::time::Duration;

/// How long the auth service gets by default (Envoy's `ext_authz` default too).
const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_millis(200);
/// Decisions kept by default in an `externalAuth.cache`.
const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// The methods a CORS preflight may ask for by default: the CORS-safelisted ones.
const DEFAULT_CORS_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

/// Header field names, lower-cased; a bad one is an error at `at[i]`.
fn header_names(v: &mut V, ctx: &Ctx, at: &str, names: &[String], star: bool) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if (star && n == "*") || valid_token(n) {
            out.push(n.to_ascii_lowercase());
        } else {
            let msg = format!("`{n}` is not a header field name");
            v.errors.push(ctx.error(&format!("{at}[{i}]"), msg));
        }
    }
    out
}

/// `externalAuth`.
pub(super) fn external_auth(v: &mut V, ctx: &Ctx, s: &raw::ExternalAuthSpec) -> ExternalAuth {
    let at = "spec.externalAuth";
    let authority = s.url.strip_prefix("http://").map(|r| r.split('/').next());
    if !matches!(authority, Some(Some(a)) if !a.is_empty() && !a.contains('@')) {
        let msg = format!(
            "expected an `http://host:port/path` URL, found `{}` (the auth service is reached over plain HTTP/1.1)",
            s.url
        );
        v.errors.push(ctx.error(&format!("{at}.url"), msg));
    }
    let timeout = v.duration(
        ctx,
        &format!("{at}.timeout"),
        s.timeout.as_ref(),
        DEFAULT_AUTH_TIMEOUT,
    );
    if timeout.is_zero() {
        let msg = "the timeout must be longer than 0s";
        v.errors.push(ctx.error(&format!("{at}.timeout"), msg));
    }
    let headers = match &s.headers {
        Some(h) => header_names(v, ctx, &format!("{at}.headers"), h, false),
        None => vec!["authorization".into()],
    };
    let upstream_headers = (s.upstream_headers.as_deref())
        .map(|h| header_names(v, ctx, &format!("{at}.upstreamHeaders"), h, false))
        .unwrap_or_default();
    let cache = s.cache.as_ref().map(|c| {
        let p = format!("{at}.cache.ttl");
        let ttl = v.duration(ctx, &p, Some(&c.ttl), Duration::ZERO);
        if ttl.is_zero() {
            v.errors
                .push(ctx.error(&p, "the ttl must be longer than 0s"));
        }
        let max_entries = c.max_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);
        if max_entries == 0 {
            let msg = "maxEntries must be at least 1";
            v.errors
                .push(ctx.error(&format!("{at}.cache.maxEntries"), msg));
        }
        AuthCache { ttl, max_entries }
    });
    ExternalAuth {
        url: s.url.clone(),
        timeout,
        headers,
        upstream_headers,
        cache,
        failure_mode: match s.failure_mode {
            Some(raw::FailureModeSpec::Allow) => FailureMode::Allow,
            _ => FailureMode::Deny,
        },
        body: s.body.as_ref().map(|b| auth_body(v, ctx, b)),
    }
}

/// The largest `externalAuth.body.maxSize`: the body is held in memory while the service decides.
const MAX_AUTH_BODY: usize = 16 * 1024 * 1024;

/// `externalAuth.body`.
fn auth_body(v: &mut V, ctx: &Ctx, b: &raw::AuthBodySpec) -> AuthBody {
    let p = "spec.externalAuth.body.maxSize";
    let max_size = v.size(ctx, p, Some(&b.max_size), 0);
    if max_size == 0 || max_size > MAX_AUTH_BODY {
        let msg =
            "maxSize must be between 1 byte and 16MiB (the body is held while the service decides)";
        v.errors.push(ctx.error(p, msg));
    }
    AuthBody {
        max_size,
        allow_partial: b.allow_partial.unwrap_or(false),
    }
}

/// `scheme://host[:port]`, as browsers send `Origin` (lower case, no path).
fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && (rest.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// `cors`.
pub(super) fn cors(v: &mut V, ctx: &Ctx, s: &raw::CorsSpec) -> Cors {
    let at = "spec.cors";
    let mut allow_origins = Vec::new();
    for (i, o) in s.allow_origins.iter().flatten().enumerate() {
        if o == "*" || valid_origin(o) {
            allow_origins.push(o.to_ascii_lowercase());
        } else {
            let msg = format!("`{o}` is not an origin: expected `*` or `scheme://host[:port]`, such as `https://app.example.com`");
            v.errors
                .push(ctx.error(&format!("{at}.allowOrigins[{i}]"), msg));
        }
    }
    if s.allow_origins.as_ref().is_none_or(Vec::is_empty) {
        let msg = "`cors` needs `allowOrigins`: the origins (or `*`) that may call";
        v.errors.push(ctx.error(at, msg));
    }
    let allow_credentials = s.allow_credentials.unwrap_or(false);
    let allow_headers = (s.allow_headers.as_deref())
        .map(|h| header_names(v, ctx, &format!("{at}.allowHeaders"), h, true))
        .unwrap_or_default();
    if allow_credentials && allow_origins.iter().any(|o| o == "*") {
        let msg = "`allowCredentials` cannot be used with the origin `*`: browsers refuse it, and it would let any site act as the user; list the origins";
        v.errors
            .push(ctx.error(&format!("{at}.allowCredentials"), msg));
    }
    if allow_credentials && allow_headers.iter().any(|h| h == "*") {
        let msg = "with `allowCredentials`, `*` in `allowHeaders` is the literal name `*` to browsers: list the header fields";
        v.errors.push(ctx.error(&format!("{at}.allowHeaders"), msg));
    }
    let allow_methods = match &s.allow_methods {
        None => DEFAULT_CORS_METHODS.iter().map(|m| m.to_string()).collect(),
        Some(ms) => {
            for (i, m) in ms.iter().enumerate() {
                if !valid_token(m) {
                    let msg = format!("`{m}` is not a method");
                    v.errors
                        .push(ctx.error(&format!("{at}.allowMethods[{i}]"), msg));
                }
            }
            ms.clone()
        }
    };
    let expose_headers = (s.expose_headers.as_deref())
        .map(|h| header_names(v, ctx, &format!("{at}.exposeHeaders"), h, false))
        .unwrap_or_default();
    let max_age = (s.max_age.as_ref())
        .map(|m| v.duration(ctx, &format!("{at}.maxAge"), Some(m), Duration::ZERO));
    Cors {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        allow_credentials,
        max_age,
    }
}

/// `ipFilter`.
pub(super) fn ip_filter(v: &mut V, ctx: &Ctx, s: &raw::IpFilterSpec) -> IpFilter {
    let at = "spec.ipFilter";
    let mut nets = |field: &str, list: &Option<Vec<String>>| {
        let mut out = Vec::new();
        for (i, net) in list.iter().flatten().enumerate() {
            let parsed = (net.parse::<ipnet::IpNet>())
                .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => out.push(n),
                Err(_) => v.errors.push(ctx.error(
                    &format!("{at}.{field}[{i}]"),
                    format!("invalid network `{net}`: expected a CIDR such as `10.0.0.0/8` or an IP address"),
                )),
            }
        }
        out
    };
    let allow = nets("allow", &s.allow);
    let deny = nets("deny", &s.deny);
    if s.allow.as_ref().is_none_or(Vec::is_empty) && s.deny.as_ref().is_none_or(Vec::is_empty) {
        let msg = "`ipFilter` needs `allow` or `deny` networks";
        v.errors.push(ctx.error(at, msg));
    }
    IpFilter { allow, deny }
}
