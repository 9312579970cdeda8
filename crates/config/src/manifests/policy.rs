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
    let any_of = (!p.any_of.is_empty()).then(|| {
        Value::from_iter(p.any_of.iter().map(|s| match s {
            AuthSection::Jwt => "jwt",
            AuthSection::ApiKey => "apiKey",
            AuthSection::BasicAuth => "basicAuth",
            AuthSection::ExternalAuth => "externalAuth",
        }))
    });
    let spec = object([
        ("jwt", p.jwt.as_ref().map(jwt)),
        ("apiKey", p.api_key.as_ref().map(api_key)),
        (
            "basicAuth",
            (p.basic_auth.as_ref()).map(|b| {
                json!({"htpasswdFile": b.htpasswd_file.display().to_string(), "realm": b.realm})
            }),
        ),
        ("anyOf", any_of),
        // The edge sections serialize in the manifests' shape already (model/edge.rs).
        ("ipFilter", p.ip_filter.as_ref().and_then(|f| serde_json::to_value(f).ok())),
        ("cors", p.cors.as_ref().and_then(|c| serde_json::to_value(c).ok())),
        (
            "externalAuth",
            (p.external_auth.as_ref()).and_then(|e| serde_json::to_value(e).ok()),
        ),
        ("rateLimit", rate_limit),
        ("requestLimits", request_limits),
    ]);
    document("Policy", &p.id, spec)
}

/// `jwt`; an inline secret is shown as `<redacted>`.
fn jwt(j: &Jwt) -> Value {
    let (jwks, secret) = match &j.keys {
        JwtKeys::JwksUrl {
            url,
            refresh,
            min_refresh,
            ca_file,
        } => {
            let mut jwks = json!({"url": url, "refreshInterval": duration(*refresh),
                                  "minRefreshInterval": duration(*min_refresh)});
            if let Some(f) = ca_file {
                jwks["caFile"] = json!(f.display().to_string());
            }
            (Some(jwks), None)
        }
        JwtKeys::JwksFile(f) => (Some(json!({"file": f.display().to_string()})), None),
        JwtKeys::SecretFile(f) => (None, Some(json!({"file": f.display().to_string()}))),
        JwtKeys::Secret(_) => (None, Some(json!({"value": "<redacted>"}))),
    };
    let pairs = |v: &[(String, String)]| {
        Value::Object(
            v.iter()
                .map(|(k, x)| (k.clone(), Value::from(x.as_str())))
                .collect(),
        )
    };
    object([
        ("issuer", j.issuer.clone().map(Value::from)),
        ("audiences", Some(Value::from(j.audiences.clone()))),
        ("jwks", jwks),
        ("secret", secret),
        ("algorithms", Some(Value::from(j.algorithms.clone()))),
        ("from", Some(sources(&j.from))),
        ("forwardClaims", Some(pairs(&j.forward_claims))),
        (
            "requiredScopes",
            Some(Value::from(j.required_scopes.clone())),
        ),
        ("requiredClaims", Some(pairs(&j.required_claims))),
        ("leeway", Some(duration(j.leeway))),
    ])
}

/// `apiKey`.
fn api_key(k: &ApiKey) -> Value {
    let keys = k.keys.iter().map(|e| {
        let hex: String = e.sha256.iter().map(|b| format!("{b:02x}")).collect();
        json!({"consumer": e.consumer, "sha256": hex})
    });
    object([
        ("from", Some(sources(&k.from))),
        ("keys", Some(Value::from_iter(keys))),
        (
            "keysFile",
            k.keys_file
                .as_ref()
                .map(|f| Value::from(f.display().to_string())),
        ),
    ])
}

/// A credential's `from`.
fn sources(from: &[CredentialSource]) -> Value {
    Value::from_iter(from.iter().map(|s| match s {
        CredentialSource::Header { name, prefix: None } => json!({"header": name}),
        CredentialSource::Header {
            name,
            prefix: Some(p),
        } => json!({"header": name, "prefix": p}),
        CredentialSource::Cookie(c) => json!({"cookie": c}),
        CredentialSource::Query(q) => json!({"query": q}),
    }))
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
