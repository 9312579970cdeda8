//! Request keys for the balancer: the `ConsistentHash` key of a request (`hashOn`), the stable
//! identity of an endpoint, and the sticky (affinity) cookie that names one.
//!
//! Used on the request path before the balancer picks: the hash key and the pinned endpoint go in,
//! and after the response the `Set-Cookie` of a sticky backend comes out. Every hash here is
//! FNV-1a 64 with fixed constants and a fixed finalizer, never a per-process random seed, so all
//! replicas of the gateway send one key to the same endpoint.

use gatehouse_config::{HashOn, StickyCookie};
use http::header::{HeaderMap, HeaderValue, COOKIE};
use std::net::IpAddr;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continued from `state`.
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// splitmix64's finalizer: FNV's low bits are weak, and the Maglev table is indexed `hash % M`.
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable hash of `bytes`, the same in every process and release.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(FNV_OFFSET, bytes))
}

/// The identity of an endpoint (`Candidate::key`): a hash of backend id and address, so that an
/// endpoint keeps its key (its Maglev slots, its sticky cookies) across endpoint-set changes.
pub(crate) fn endpoint_key(backend: &str, address: &str) -> u64 {
    // The separator cannot occur in a backend id, so ("a/b", "c") and ("a", "b/c") differ.
    let h = fnv1a(FNV_OFFSET, backend.as_bytes());
    mix(fnv1a(fnv1a(h, b"\0"), address.as_bytes()))
}

/// The request's `ConsistentHash` key, or `None` when the request lacks it (the balancer then falls
/// back to round robin).
pub(crate) fn hash_key(
    on: &HashOn,
    headers: &HeaderMap,
    query: Option<&str>,
    client: IpAddr,
) -> Option<u64> {
    match on {
        HashOn::Header(name) => headers
            .get(name.as_str())
            .map(|v| stable_hash(v.as_bytes())),
        HashOn::Cookie(name) => cookie(headers, name).map(stable_hash),
        HashOn::Query(name) => query_param(query?, name).map(|v| stable_hash(v.as_bytes())),
        HashOn::ClientAddress => Some(match client {
            IpAddr::V4(v4) => stable_hash(&v4.octets()),
            // A v4-mapped address is the same client as its v4 form.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => stable_hash(&v4.octets()),
                None => stable_hash(&v6.octets()),
            },
        }),
    }
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param<'q>(query: &'q str, name: &str) -> Option<std::borrow::Cow<'q, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4: `a=1; b=2`, possibly
/// over several header lines when HTTP/2 splits them).
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().find_map(|line| {
        line.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| {
                let v = pair[eq + 1..].trim_ascii();
                // A quoted value is the same value (RFC 6265 §4.1.1 cookie-value).
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
        })
    })
}

/// The affinity cookie's value for an endpoint: its key in hex. Opaque: an address never leaves the
/// gateway, and a forged value can only name an endpoint the backend has.
pub(crate) fn sticky_value(key: u64) -> String {
    format!("{key:016x}")
}

/// The endpoint key an affinity cookie value names, if it is one.
pub(crate) fn parse_sticky(value: &[u8]) -> Option<u64> {
    if value.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(value).ok()?, 16).ok()
}

/// The endpoint key the request is pinned to by the backend's affinity cookie.
pub(crate) fn pinned(sticky: &StickyCookie, headers: &HeaderMap) -> Option<u64> {
    parse_sticky(cookie(headers, &sticky.name)?)
}

/// The `Set-Cookie` value that pins a client to the endpoint `key`. `SameSite=Lax` keeps the
/// cookie on top-level navigations from other sites (a link to the app) but not on cross-site
/// subrequests; `HttpOnly` because scripts have no business with it.
pub(crate) fn set_cookie(sticky: &StickyCookie, key: u64) -> HeaderValue {
    let value = format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        sticky.name,
        sticky_value(key),
        sticky.ttl.as_secs()
    );
    // The name is a validated token and the rest is ASCII.
    HeaderValue::try_from(value).expect("cookie is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn hashes_are_fixed_across_processes_and_releases() {
        // Pinned values: changing the hash would move every consistent-hash key and sticky cookie
        // at the next deployment.
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"user-1"), stable_hash(b"user-1"));
        assert_ne!(stable_hash(b"user-1"), stable_hash(b"user-2"));
        assert_ne!(endpoint_key("a/b", "c"), endpoint_key("a", "b/c"));
    }

    #[test]
    fn hash_key_reads_each_kind_of_key() {
        let h = headers(&[
            ("x-user-id", "u1"),
            ("cookie", "a=1; session=s1"),
            ("cookie", "other=2"),
        ]);
        let header = HashOn::Header("x-user-id".into());
        assert_eq!(
            hash_key(&header, &h, None, CLIENT),
            Some(stable_hash(b"u1"))
        );
        assert_eq!(hash_key(&header, &HeaderMap::new(), None, CLIENT), None);
        let cookie = HashOn::Cookie("session".into());
        assert_eq!(
            hash_key(&cookie, &h, None, CLIENT),
            Some(stable_hash(b"s1"))
        );
        let other = HashOn::Cookie("other".into());
        assert_eq!(hash_key(&other, &h, None, CLIENT), Some(stable_hash(b"2")));
        let query = HashOn::Query("tenant".into());
        assert_eq!(
            hash_key(&query, &h, Some("x=1&tenant=a%20b"), CLIENT),
            Some(stable_hash(b"a b"))
        );
        assert_eq!(hash_key(&query, &h, Some("x=1"), CLIENT), None);
        assert_eq!(hash_key(&query, &h, None, CLIENT), None);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            hash_key(&HashOn::ClientAddress, &h, None, CLIENT),
            hash_key(&HashOn::ClientAddress, &h, None, mapped)
        );
    }

    #[test]
    fn sticky_cookie_is_set_with_lifetime_and_flags() {
        let sticky = StickyCookie {
            name: "gh-affinity".into(),
            ttl: Duration::from_secs(3600),
        };
        let v = set_cookie(&sticky, 0xab);
        assert_eq!(
            v,
            "gh-affinity=00000000000000ab; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        let h = headers(&[("cookie", "x=1; gh-affinity=00000000000000ab")]);
        assert_eq!(pinned(&sticky, &h), Some(0xab));
        let forged = headers(&[("cookie", "gh-affinity=10.0.0.1:80")]);
        assert_eq!(pinned(&sticky, &forged), None);
    }

    proptest! {
        #[test]
        fn sticky_value_round_trips(key: u64) {
            prop_assert_eq!(parse_sticky(sticky_value(key).as_bytes()), Some(key));
        }

        #[test]
        fn cookie_parsing_never_panics(line in "[ -~]{0,64}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&line) {
                h.insert(COOKIE, v);
            }
            let _ = cookie(&h, "gh-affinity");
        }
    }
}
