//! Request flow, step 7: turning the downstream request into the upstream one (path and host
//! rewrites, hop-by-hop removal per RFC 9110, X-Forwarded-*, header changes) and cleaning the
//! upstream response on its way back.

use gatehouse_config::{HeaderMods, PathMatch, PathRewrite, Rule};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What one pass over a message's header names found.
#[derive(Default)]
pub struct Scan {
    /// Which of `HOP_BY_HOP` are present.
    hop: [bool; 6],
    /// Whether any `X-Forwarded-*` or `Forwarded` field is present.
    pub forwarded: bool,
    /// Whether an X-Request-Id is present.
    pub request_id: bool,
    /// Whether the client sent its own `x-client-cert-subject` (always removed).
    pub client_cert: bool,
    /// Whether the client sent its own `x-gatehouse-attempts` (removed on retrying rules).
    pub attempts: bool,
}

/// Position of `name` among the fixed hop-by-hop fields (`HOP_BY_HOP`, RFC 9110 §7.6.1), by text:
/// comparing text is cheaper than a hashed lookup per candidate name.
pub fn hop_by_hop_index(name: &str) -> Option<usize> {
    match name {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "te" => Some(3),
        "transfer-encoding" => Some(4),
        "upgrade" => Some(5),
        _ => None,
    }
}

/// The fields a `Connection` value names as hop-by-hop: its tokens other than `close` and
/// `keep-alive`. The usual values (`keep-alive`, `close`) are recognised without splitting.
/// A peer cannot make the gateway drop the fields it routes and frames by (`Connection: host`
/// would otherwise strip the Host a rule matched on).
pub fn connection_named(value: &HeaderValue) -> impl Iterator<Item = HeaderName> + '_ {
    let b = value.as_bytes();
    let plain = b.eq_ignore_ascii_case(b"keep-alive") || b.eq_ignore_ascii_case(b"close");
    let text = if plain {
        ""
    } else {
        value.to_str().unwrap_or("")
    };
    text.split(',')
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && !["keep-alive", "close", "host", "content-length"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
}

/// Looks at every header name once.
pub fn scan(headers: &HeaderMap) -> Scan {
    let mut s = Scan::default();
    for name in headers.keys() {
        let name = name.as_str();
        // One `match`: compiled to a switch on the length, so a name of no listed length costs
        // a compare, however many names are listed.
        match name {
            "x-request-id" => s.request_id = true,
            "x-client-cert-subject" => s.client_cert = true,
            "x-gatehouse-attempts" => s.attempts = true,
            "forwarded" => s.forwarded = true,
            // The order of `HOP_BY_HOP` (as `hop_by_hop_index`).
            "connection" => s.hop[0] = true,
            "keep-alive" => s.hop[1] = true,
            "proxy-connection" => s.hop[2] = true,
            "te" => s.hop[3] = true,
            "transfer-encoding" => s.hop[4] = true,
            "upgrade" => s.hop[5] = true,
            _ => s.forwarded |= name.starts_with("x-forwarded-"),
        }
    }
    s
}

/// Removes hop-by-hop headers: the fixed set, and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let found = scan(headers);
    strip_found(headers, &found);
}

/// `strip_hop_by_hop` with the scan already done. Most messages carry only `Connection:
/// keep-alive` or nothing, so the common case does one or no hashed removal.
pub fn strip_found(headers: &mut HeaderMap, found: &Scan) {
    if found.hop[0] {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(connection_named)
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if found.hop[i] {
            headers.remove(*name);
        }
    }
}

/// Header fields added to an upstream request as it is written, instead of being inserted into
/// its header map (for HTTP/1.1 upstreams the head is encoded by the proxy, and a hashed insert
/// per field costs more than writing it). The values are borrowed from the request's handler.
/// Slots: the three X-Forwarded-* fields, the request id, the attempt number of a retrying rule.
#[derive(Default, Clone, Copy)]
pub struct Extra<'a>(pub [Option<(&'static str, &'a HeaderValue)>; 5]);

impl Extra<'_> {
    /// The fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.0.iter().flatten().map(|(n, v)| (*n, *v))
    }
}

/// The X-Forwarded-* fields for a request that carried none (so there is nothing to replace or
/// extend, whether the peer is trusted or not).
pub fn forwarded_extra<'a>(
    peer_value: &'a HeaderValue,
    scheme: &'a HeaderValue,
    host: Option<&'a HeaderValue>,
) -> Extra<'a> {
    Extra([
        Some(("x-forwarded-for", peer_value)),
        Some(("x-forwarded-proto", scheme)),
        host.filter(|h| !h.is_empty())
            .map(|h| ("x-forwarded-host", h)),
        None,
        None,
    ])
}

static HOP_BY_HOP: [&HeaderName; 6] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// The path (and query) to send upstream after the rule's rewrite.
pub fn rewrite_path(rule: &Rule, path: &str, query: Option<&str>) -> Option<String> {
    let new_path = match rule.rewrite.path.as_deref() {
        None => return None,
        Some(PathRewrite::Prefix(replacement)) => {
            let matched_len = match &rule.path {
                PathMatch::Prefix(p) if p == "/" => 0,
                PathMatch::Prefix(p) | PathMatch::Exact(p) => p.len(),
                PathMatch::Regex(_) => 0,
            };
            let rest = &path[matched_len.min(path.len())..];
            let mut out = String::with_capacity(replacement.len() + rest.len());
            out.push_str(replacement);
            if replacement.ends_with('/') && rest.starts_with('/') {
                out.push_str(&rest[1..]);
            } else {
                if !rest.is_empty() && !rest.starts_with('/') && !replacement.ends_with('/') {
                    out.push('/');
                }
                out.push_str(rest);
            }
            out
        }
        Some(PathRewrite::Regex(re, sub)) => re.0.replace_all(path, sub.as_str()).into_owned(),
    };
    Some(match query {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    })
}

/// Sets X-Forwarded-For/-Proto/-Host. Values from the client are kept only when its address is
/// trusted; otherwise they are replaced, so nobody can forge their origin. `peer_value` is the
/// peer's address already formatted (once per connection).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer_value: &HeaderValue,
    peer: IpAddr,
    trusted: &[IpNet],
    scheme: &'static str,
    host: Option<&HeaderValue>,
) {
    let is_trusted = !trusted.is_empty() && trusted.iter().any(|n| n.contains(&peer));
    let prior: Vec<&str> = if is_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let xff = if prior.is_empty() {
        peer_value.clone()
    } else {
        HeaderValue::from_str(&format!(
            "{}, {}",
            prior.join(", "),
            peer_value.to_str().unwrap_or("")
        ))
        .unwrap_or_else(|_| peer_value.clone())
    };
    if !is_trusted {
        drop_other_forwarded(headers);
    }
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    if !is_trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    if !is_trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(h) if !h.is_empty() => {
                headers.insert(X_FORWARDED_HOST.clone(), h.clone());
            }
            _ => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// Removes the forwarding fields an untrusted client may send beyond the three the gateway sets
/// (`X-Forwarded-Port`, `-Prefix`, `-Server`, ..., and RFC 7239 `Forwarded`): a backend that
/// believes them would take the client's word for where the request came from.
fn drop_other_forwarded(headers: &mut HeaderMap) {
    let others: Vec<HeaderName> = (headers.keys())
        .filter(|n| {
            let n = n.as_str();
            n == "forwarded"
                || (n.starts_with("x-forwarded-")
                    && !matches!(
                        n,
                        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
                    ))
        })
        .cloned()
        .collect();
    for name in others {
        headers.remove(name);
    }
}

/// A peer address as an `X-Forwarded-For` element (IPv4-mapped IPv6 shown as IPv4).
pub fn forwarded_for_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Applies a rule's header changes.
pub fn apply_mods(headers: &mut HeaderMap, mods: &HeaderMods) {
    for name in &mods.remove {
        headers.remove(name.as_str());
    }
    for (k, v) in &mods.set {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    for (k, v) in &mods.add {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::{load_sources, SourceFile};

    fn rule(m: &str, rewrite: &str) -> Rule {
        let yaml = format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Backend\nmetadata: {{name: b}}\nspec: {{endpoints: [\"127.0.0.1:1\"]}}\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - match: {{path: {m}}}\n      rewrite: {rewrite}\n      backends: [{{backend: b}}]\n"
        );
        let c = load_sources(&[SourceFile {
            name: "t".into(),
            text: yaml,
        }])
        .unwrap_or_else(|e| panic!("{e}"));
        c.routes[0].rules[0].clone()
    }

    #[test]
    fn prefix_rewrites_keep_one_slash() {
        let r = rule("{prefix: /v1/tasks}", "{pathPrefix: /tasks}");
        assert_eq!(
            rewrite_path(&r, "/v1/tasks/7", Some("a=1")).unwrap(),
            "/tasks/7?a=1"
        );
        assert_eq!(rewrite_path(&r, "/v1/tasks", None).unwrap(), "/tasks");
        let r = rule("{prefix: /admin}", "{pathPrefix: /}");
        assert_eq!(rewrite_path(&r, "/admin/ready", None).unwrap(), "/ready");
        assert_eq!(rewrite_path(&r, "/admin", None).unwrap(), "/");
        let r = rule("{prefix: /}", "{pathPrefix: /api}");
        assert_eq!(rewrite_path(&r, "/x/y", None).unwrap(), "/api/x/y");
    }

    #[test]
    fn regex_rewrite_substitutes_groups() {
        let r = rule(
            "{regex: \"/users/[0-9]+/.*\"}",
            "{pathRegex: {pattern: \"^/users/([0-9]+)/(.*)$\", substitution: \"/u/$1/$2\"}}",
        );
        assert_eq!(
            rewrite_path(&r, "/users/42/profile", None).unwrap(),
            "/u/42/profile"
        );
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-keep", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));

        let mut h = HeaderMap::new();
        h.insert("connection", "host, Content-Length".parse().unwrap());
        h.insert("host", "a.example".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "Host and Content-Length survive `Connection`");
    }

    #[test]
    fn forwarded_headers_trust_only_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let host = HeaderValue::from_static("api.example.com");
        let peer: IpAddr = "192.168.1.1".parse().unwrap();
        set_forwarded(
            &mut h,
            &forwarded_for_value(peer),
            peer,
            &trusted,
            "http",
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "192.168.1.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        set_forwarded(
            &mut h,
            &forwarded_for_value(peer),
            peer,
            &trusted,
            "http",
            Some(&host),
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
