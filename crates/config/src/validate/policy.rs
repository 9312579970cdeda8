//! Config flow, step 4 (policies): the `Policy` kind, a rule's `policies` and `fault`, and the
//! Gateway's `redis`, checked and turned into the model with their defaults.

use super::{valid_token, V};
use crate::error::hint;
use crate::loader::{Ctx, Object, Spec};
use crate::model::*;
use crate::raw;
use std::time::Duration;

/// The default wait for Redis: a decision that takes longer than this is not worth waiting for
/// on the request path; `onStoreError` decides instead.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// Parses `5%`, `5` or `0.5%` as a percentage from 0 to 100, fractions kept.
pub(super) fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a percentage from 0% to 100% such as `5%`, found `{s}`"
        )),
    }
}

impl V<'_> {
    fn fraction(&mut self, ctx: &Ctx, path: &str, v: Option<&String>) -> f64 {
        match v.map(|s| parse_percent(s)) {
            None => 100.0,
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.errors.push(ctx.error(path, e));
                100.0
            }
        }
    }
}

/// A `Policy` document.
pub(super) fn policy(v: &mut V, o: &Object, spec: &raw::PolicySpec) -> Policy {
    let ctx = &o.ctx;
    let later = [
        spec.external_auth.is_some(),
        spec.cors.is_some(),
        spec.ip_filter.is_some(),
    ];
    let auth = [
        (AuthSection::Jwt, spec.jwt.is_some()),
        (AuthSection::ApiKey, spec.api_key.is_some()),
        (AuthSection::BasicAuth, spec.basic_auth.is_some()),
        (AuthSection::ExternalAuth, spec.external_auth.is_some()),
    ];
    let any_auth = auth.iter().any(|(_, set)| *set);
    if spec.rate_limit.is_none()
        && spec.request_limits.is_none()
        && !any_auth
        && !later.contains(&true)
    {
        v.errors.push(ctx.error(
            "spec",
            "a policy needs at least one section: `jwt`, `apiKey`, `basicAuth`, `externalAuth`, `cors`, `ipFilter`, `rateLimit` or `requestLimits`",
        ));
    }
    let jwt = spec.jwt.as_ref().map(|j| super::auth::jwt(v, ctx, j));
    let api_key = spec
        .api_key
        .as_ref()
        .map(|k| super::auth::api_key(v, ctx, k));
    let basic_auth = spec
        .basic_auth
        .as_ref()
        .map(|b| super::auth::basic_auth(ctx, b));
    let any_of = (spec.any_of.as_deref())
        .map(|names| super::auth::any_of(v, ctx, names, &auth))
        .unwrap_or_default();
    let rate_limit = spec.rate_limit.as_ref().map(|r| rate_limit(v, ctx, r));
    let request_limits = spec.request_limits.as_ref().map(|r| {
        let at = "spec.requestLimits.maxBodySize";
        let max = match &r.max_body_size {
            Some(s) => v.size(ctx, at, Some(s), 0),
            None => {
                v.errors
                    .push(ctx.error("spec.requestLimits", "`requestLimits` needs `maxBodySize`"));
                0
            }
        };
        RequestLimits {
            max_body_size: max as u64,
        }
    });
    Policy {
        id: o.id.clone(),
        rate_limit,
        request_limits,
        jwt,
        api_key,
        basic_auth,
        any_of,
        external_auth: (spec.external_auth.as_ref()).map(|s| super::edge::external_auth(v, ctx, s)),
        cors: spec.cors.as_ref().map(|s| super::edge::cors(v, ctx, s)),
        ip_filter: spec
            .ip_filter
            .as_ref()
            .map(|s| super::edge::ip_filter(v, ctx, s)),
        source: Source::new(&ctx.file, ctx.at),
    }
}

fn rate_limit(v: &mut V, ctx: &Ctx, r: &raw::RateLimitSpec) -> RateLimit {
    let at = "spec.rateLimit";
    if r.requests == 0 {
        v.errors
            .push(ctx.error(&format!("{at}.requests"), "requests must be at least 1"));
    }
    let per = v.duration(ctx, &format!("{at}.per"), Some(&r.per), Duration::ZERO);
    if per.is_zero() {
        v.errors
            .push(ctx.error(&format!("{at}.per"), "the period must be longer than 0s"));
    }
    if r.burst == Some(0) {
        v.errors
            .push(ctx.error(&format!("{at}.burst"), "burst must be at least 1"));
    }
    let key = match &r.key {
        None => RateLimitKey::ClientAddress,
        Some(k) => rate_limit_key(v, ctx, &format!("{at}.key"), k),
    };
    RateLimit {
        requests: r.requests.max(1),
        per,
        burst: r.burst.unwrap_or(r.requests).max(1),
        key,
        scope: match r.scope {
            Some(raw::RateLimitScope::Global) => RateLimitScope::Global,
            _ => RateLimitScope::Local,
        },
        on_store_error: match r.on_store_error {
            Some(raw::StoreErrorMode::Deny) => StoreErrorMode::Deny,
            _ => StoreErrorMode::Allow,
        },
    }
}

fn rate_limit_key(v: &mut V, ctx: &Ctx, at: &str, k: &raw::RateLimitKeySpec) -> RateLimitKey {
    let given = [
        k.client_address.is_some(),
        k.header.is_some(),
        k.cookie.is_some(),
        k.route.is_some(),
        k.consumer.is_some(),
        k.claim.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        v.errors.push(ctx.error(
            at,
            "a key needs exactly one of `clientAddress`, `header`, `cookie`, `route`, `consumer` or `claim`",
        ));
    }
    for (field, value) in [
        ("clientAddress", k.client_address),
        ("route", k.route),
        ("consumer", k.consumer),
    ] {
        if value == Some(false) {
            v.errors.push(ctx.error(
                &format!("{at}.{field}"),
                format!("`{field}` can only be `true`; choose another key instead"),
            ));
        }
    }
    if let Some(h) = &k.header {
        if !valid_token(h) {
            v.errors.push(ctx.error(
                &format!("{at}.header"),
                format!("invalid header name `{h}`"),
            ));
        }
        return RateLimitKey::Header(h.to_ascii_lowercase());
    }
    if let Some(c) = &k.cookie {
        if !valid_token(c) {
            v.errors.push(ctx.error(
                &format!("{at}.cookie"),
                format!("invalid cookie name `{c}`"),
            ));
        }
        return RateLimitKey::Cookie(c.clone());
    }
    if k.route.is_some() {
        return RateLimitKey::Route;
    }
    if k.consumer.is_some() {
        return RateLimitKey::Consumer;
    }
    if let Some(c) = &k.claim {
        if c.is_empty() {
            v.errors
                .push(ctx.error(&format!("{at}.claim"), "the claim name is empty"));
        }
        return RateLimitKey::Claim(c.clone());
    }
    RateLimitKey::ClientAddress
}

/// The Gateway's `redis`.
pub(super) fn redis(v: &mut V, ctx: &Ctx, spec: &raw::RedisSpec) -> Redis {
    let url = spec.url.trim();
    let host = url
        .strip_prefix("redis://")
        .map(|rest| rest.rsplit('@').next().unwrap_or(rest))
        .map(|rest| rest.split(['/', '?']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() => {}
        _ if url.starts_with("rediss://") => v.errors.push(ctx.error(
            "spec.redis.url",
            "TLS to Redis (`rediss://`) is not supported by this version of Gatehouse yet",
        )),
        _ => v.errors.push(ctx.error(
            "spec.redis.url",
            format!("invalid Redis URL `{url}`: expected `redis://host:port` (optionally `/db`)"),
        )),
    }
    let timeout = v.duration(
        ctx,
        "spec.redis.timeout",
        spec.timeout.as_ref(),
        DEFAULT_REDIS_TIMEOUT,
    );
    if timeout.is_zero() {
        v.errors
            .push(ctx.error("spec.redis.timeout", "the timeout must be longer than 0s"));
    }
    Redis {
        url: url.to_string(),
        timeout,
    }
}

/// A rule's `fault`.
pub(super) fn fault(v: &mut V, ctx: &Ctx, at: &str, spec: &raw::FaultSpec) -> Fault {
    if spec.delay.is_none() && spec.abort.is_none() {
        v.errors
            .push(ctx.error(at, "a fault needs `delay`, `abort` or both"));
    }
    let delay = spec.delay.as_ref().map(|d| FaultDelay {
        duration: v.duration(
            ctx,
            &format!("{at}.delay.duration"),
            Some(&d.duration),
            Duration::ZERO,
        ),
        percent: v.fraction(ctx, &format!("{at}.delay.percent"), d.percent.as_ref()),
    });
    let abort = spec.abort.as_ref().map(|a| {
        if !(200..=599).contains(&a.status) {
            v.errors.push(ctx.error(
                &format!("{at}.abort.status"),
                "status must be between 200 and 599",
            ));
        }
        FaultAbort {
            status: a.status,
            percent: v.fraction(ctx, &format!("{at}.abort.percent"), a.percent.as_ref()),
        }
    });
    if let Some(h) = spec.when_header.as_ref().filter(|h| !valid_token(h)) {
        v.errors.push(ctx.error(
            &format!("{at}.whenHeader"),
            format!("invalid header name `{h}`"),
        ));
    }
    Fault {
        delay,
        abort,
        when_header: spec.when_header.as_ref().map(|h| h.to_ascii_lowercase()),
    }
}

/// A rule's `policies`: each name resolved in the route's namespace unless it names its own
/// (`namespace/name`), as backends are.
pub(super) fn rule_policies(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    names: &[String],
    route: &ObjectId,
    policies: &[&ObjectId],
) -> Vec<ObjectId> {
    let mut out: Vec<ObjectId> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let p = format!("{at}.policies[{i}]");
        let id = match name.split_once('/') {
            Some((ns, n)) => ObjectId {
                namespace: ns.into(),
                name: n.into(),
            },
            None => ObjectId {
                namespace: route.namespace.clone(),
                name: name.clone(),
            },
        };
        if !policies.contains(&&id) {
            let known: Vec<String> = policies
                .iter()
                .map(|b| match b.namespace == route.namespace {
                    true => b.name.clone(),
                    false => b.to_string(),
                })
                .collect();
            v.errors.push(ctx.error(
                &p,
                format!(
                    "unknown policy `{id}`{}",
                    hint(name, known.iter().map(String::as_str))
                ),
            ));
        } else if out.contains(&id) {
            v.errors
                .push(ctx.error(&p, format!("policy `{id}` is listed twice")));
        }
        out.push(id);
    }
    out
}

/// Cross-document checks: a `scope: global` limit needs the Gateway's `redis`.
pub(super) fn check_global(v: &mut V, objects: &[Object], config: &Config) {
    if config.gateway.redis.is_some() {
        return;
    }
    for o in objects {
        let Spec::Policy(spec) = &o.spec else {
            continue;
        };
        if let Some(raw::RateLimitScope::Global) = spec.rate_limit.as_ref().and_then(|r| r.scope) {
            v.errors.push(o.ctx.error(
                "spec.rateLimit.scope",
                "`scope: global` needs a store: set `redis` in the Gateway (or use `scope: local`)",
            ));
        }
    }
}
