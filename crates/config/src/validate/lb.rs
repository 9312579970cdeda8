//! Config flow, step 4 (part): a backend's `loadBalancer` — the policy, the `ConsistentHash` key
//! (`hashOn`) and session affinity (`sticky`).

use super::{valid_token, V};
use crate::loader::Ctx;
use crate::model::{HashOn, LbPolicy, StickyCookie};
use crate::raw;
use std::time::Duration;

const AT: &str = "spec.loadBalancer";
const KINDS: &str = "`header`, `cookie`, `query` or `clientAddress: true`";

/// The validated `loadBalancer` of a backend: policy, hash key, sticky cookie.
pub(super) fn load_balancer(
    v: &mut V,
    ctx: &Ctx,
    spec: Option<&raw::LoadBalancerSpec>,
) -> (LbPolicy, Option<HashOn>, Option<StickyCookie>) {
    let Some(spec) = spec else {
        return (LbPolicy::RoundRobin, None, None);
    };
    let policy = match spec.policy {
        None | Some(raw::LbPolicy::RoundRobin) => LbPolicy::RoundRobin,
        Some(raw::LbPolicy::Random) => LbPolicy::Random,
        Some(raw::LbPolicy::LeastRequest) => LbPolicy::LeastRequest,
        Some(raw::LbPolicy::ConsistentHash) => LbPolicy::ConsistentHash,
    };
    let hash_on = match (&spec.hash_on, policy) {
        (Some(h), LbPolicy::ConsistentHash) => hash_on(v, ctx, h),
        (None, LbPolicy::ConsistentHash) => {
            v.errors.push(ctx.error(
                &format!("{AT}.policy"),
                format!("policy `ConsistentHash` needs `hashOn`: one of {KINDS}"),
            ));
            None
        }
        (Some(_), other) => {
            v.errors.push(ctx.error(
                &format!("{AT}.hashOn"),
                format!("`hashOn` applies only to policy `ConsistentHash`, not `{other:?}`"),
            ));
            None
        }
        (None, _) => None,
    };
    let sticky = spec.sticky.as_ref().and_then(|s| sticky(v, ctx, &s.cookie));
    (policy, hash_on, sticky)
}

fn hash_on(v: &mut V, ctx: &Ctx, h: &raw::HashOnSpec) -> Option<HashOn> {
    let at = format!("{AT}.hashOn");
    if h.client_address == Some(false) {
        v.errors.push(ctx.error(
            &format!("{at}.clientAddress"),
            "`clientAddress` can only be `true`: to hash on something else, name it instead",
        ));
        return None;
    }
    let set = [
        h.header.is_some(),
        h.cookie.is_some(),
        h.query.is_some(),
        h.client_address.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        v.errors
            .push(ctx.error(&at, format!("`hashOn` needs exactly one of {KINDS}")));
        return None;
    }
    let named = |v: &mut V, field: &str, name: &str, what: &str| {
        let ok = valid_token(name);
        if !ok {
            v.errors.push(ctx.error(
                &format!("{at}.{field}"),
                format!("invalid {what} name `{name}`: use letters, digits and `-`, `_`, `.`"),
            ));
        }
        ok
    };
    if let Some(name) = &h.header {
        named(v, "header", name, "header").then(|| HashOn::Header(name.to_ascii_lowercase()))
    } else if let Some(name) = &h.cookie {
        named(v, "cookie", name, "cookie").then(|| HashOn::Cookie(name.clone()))
    } else if let Some(name) = &h.query {
        if name.is_empty() {
            v.errors
                .push(ctx.error(&format!("{at}.query"), "the query parameter name is empty"));
            return None;
        }
        Some(HashOn::Query(name.clone()))
    } else {
        Some(HashOn::ClientAddress)
    }
}

fn sticky(v: &mut V, ctx: &Ctx, c: &raw::StickyCookieSpec) -> Option<StickyCookie> {
    let at = format!("{AT}.sticky.cookie");
    let name = c.name.clone().unwrap_or_else(|| "gh-affinity".into());
    let mut ok = true;
    if !valid_token(&name) {
        v.errors.push(ctx.error(
            &format!("{at}.name"),
            format!("invalid cookie name `{name}`: use letters, digits and `-`, `_`, `.`"),
        ));
        ok = false;
    }
    let ttl_at = format!("{at}.ttl");
    let ttl = v.duration(ctx, &ttl_at, c.ttl.as_ref(), Duration::from_secs(3600));
    if ttl < Duration::from_secs(1) {
        v.errors
            .push(ctx.error(&ttl_at, "the affinity cookie's `ttl` must be at least 1s"));
        ok = false;
    }
    ok.then_some(StickyCookie { name, ttl })
}
