//! Config flow, the way back (policies): `Policy` documents, a rule's `fault` and `policies`, and
//! the Gateway's `redis`, written in the manifests' own field names with defaults filled in.

use super::{document, duration, object};
use crate::model::*;
use serde_json::{json, Value};

/// A `Policy` document.
pub(super) fn policy(p: &Policy) -> Value {
    let rate_limit = p.rate_limit.as_ref().map(|r| {
        let key = match &r.key {
            RateLimitKey::ClientAddress => json!({"clientAddress": true}),
            RateLimitKey::Header(h) => json!({"header": h}),
            RateLimitKey::Cookie(c) => json!({"cookie": c}),
            RateLimitKey::Route => json!({"route": true}),
            RateLimitKey::Consumer => json!({"consumer": true}),
            RateLimitKey::Claim(c) => json!({"claim": c}),
        };
        json!({
            "requests": r.requests,
            "per": duration(r.per),
            "burst": r.burst,
            "key": key,
            "scope": match r.scope {
                RateLimitScope::Local => "local",
                RateLimitScope::Global => "global",
            },
            "onStoreError": format!("{:?}", r.on_store_error),
        })
    });
    let request_limits =
        (p.request_limits.as_ref()).map(|l| json!({"maxBodySize": l.max_body_size.to_string()}));
    let spec = object([("rateLimit", rate_limit), ("requestLimits", request_limits)]);
    document("Policy", &p.id, spec)
}

/// A percentage as the manifests write it.
fn percent(p: f64) -> Value {
    Value::from(format!("{p}%"))
}

/// A rule's `fault`.
pub(super) fn fault(f: &Fault) -> Value {
    object([
        (
            "delay",
            (f.delay.as_ref())
                .map(|d| json!({"duration": duration(d.duration), "percent": percent(d.percent)})),
        ),
        (
            "abort",
            (f.abort.as_ref()).map(|a| json!({"status": a.status, "percent": percent(a.percent)})),
        ),
        ("whenHeader", f.when_header.clone().map(Value::from)),
    ])
}

/// A rule's `policies`, as `namespace/name`.
pub(super) fn policies(rule: &Rule) -> Option<Value> {
    (!rule.policies.is_empty())
        .then(|| Value::from_iter(rule.policies.iter().map(|p| p.to_string())))
}

/// The Gateway's `redis`.
pub(super) fn redis(r: &Redis) -> Value {
    json!({"url": r.url, "timeout": duration(r.timeout)})
}
