//! Request flow, policy chain, first step: `ipFilter` — allow and deny networks checked against
//! the real client address (`Input::client_ip`: the peer, or the nearest untrusted
//! `X-Forwarded-For` entry when the peer is one of `trustedProxies`). Deny wins over allow; an
//! empty allow list allows every address not denied. A refusal is 403 `forbidden`.

use super::{Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use gatehouse_config::IpFilter;
use ipnet::IpNet;
use std::net::IpAddr;

/// A compiled `ipFilter`.
pub(crate) struct IpFilterStep {
    allow: Box<[IpNet]>,
    deny: Box<[IpNet]>,
}

impl IpFilterStep {
    /// The step of a policy's `ipFilter`.
    pub(crate) fn new(f: &IpFilter) -> Self {
        IpFilterStep {
            allow: f.allow.clone().into(),
            deny: f.deny.clone().into(),
        }
    }

    /// Lets the request go on, or refuses it with 403.
    pub(crate) fn check(&self, input: &Input) -> Result<(), Box<Rejection>> {
        if self.permits(input.client_ip()) {
            return Ok(());
        }
        let mut r = Rejection::new(ProxyError::new(
            ErrorKind::Forbidden,
            "the client address is not allowed on this route",
        ));
        r.reason = Some("ip_denied");
        Err(r)
    }

    /// Whether `ip` passes: in no deny network, and in an allow network when there are some.
    fn permits(&self, ip: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`; the operator wrote IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let within = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
        !within(&self.deny) && (self.allow.is_empty() || within(&self.allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn step(allow: &[&str], deny: &[&str]) -> IpFilterStep {
        let nets = |l: &[&str]| l.iter().map(|n| n.parse().unwrap()).collect();
        IpFilterStep::new(&IpFilter {
            allow: nets(allow),
            deny: nets(deny),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_the_rest() {
        let f = step(&["10.0.0.0/8"], &["10.6.6.0/24"]);
        assert!(f.permits(ip("10.1.2.3")));
        assert!(
            !f.permits(ip("10.6.6.7")),
            "deny wins inside an allowed network"
        );
        assert!(
            !f.permits(ip("192.168.1.1")),
            "outside every allowed network"
        );
        let only_deny = step(&[], &["192.0.2.0/24", "2001:db8::/32"]);
        assert!(only_deny.permits(ip("198.51.100.1")));
        assert!(!only_deny.permits(ip("192.0.2.9")));
        assert!(!only_deny.permits(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let f = step(&["127.0.0.0/8"], &[]);
        assert!(f.permits(ip("::ffff:127.0.0.1")));
        assert!(!f.permits(ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn the_client_behind_a_trusted_proxy_is_judged_not_the_proxy() {
        let f = step(&[], &["203.0.113.0/24"]);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.5".parse().unwrap());
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let mut input = Input::for_test(&h, "/");
        input.trusted = &trusted;
        let r = f.check(&input).expect_err("the forwarded client is denied");
        assert_eq!(r.error.kind, ErrorKind::Forbidden);
        assert_eq!(r.reason, Some("ip_denied"));
        // The same header from an untrusted peer is not believed: the peer itself is judged.
        input.trusted = &[];
        assert!(f.check(&input).is_ok());
    }
}
