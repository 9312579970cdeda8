//! The policies attached to rules (`policies: [name]`, the `Policy` kind), as the contract sees
//! them: what a client must present (auth sections) and what it is held to (rate and size limits).
//!
//! The `Policy` kind is built beside this crate; it is read here through the model's JSON form
//! (`Config.policies`, `Rule.policies`) so that this code works before and after that model lands,
//! and recognises the auth sections (`jwt`, `apiKey`, `basicAuth`, `externalAuth`) as they arrive.

use crate::diff::Out;
use crate::Class;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The auth sections of a Policy, in the order documented.
const AUTH: [&str; 4] = ["jwt", "apiKey", "basicAuth", "externalAuth"];

/// Policies of one config by `namespace/name`, as JSON.
#[derive(Default)]
pub(crate) struct Policies(BTreeMap<String, Value>);

impl Policies {
    /// The policies of `config` (none while the model has no `policies`).
    pub fn of(config: &gatehouse_config::Config) -> Self {
        let v = serde_json::to_value(config).unwrap_or(Value::Null);
        Self::from_json(&v)
    }

    pub(crate) fn from_json(config: &Value) -> Self {
        let list = config.get("policies").and_then(Value::as_array);
        Policies(
            list.into_iter()
                .flatten()
                .filter_map(|p| Some((p.get("id")?.as_str()?.to_string(), p.clone())))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// The names (`namespace/name`) of the policies attached to a rule, in order.
pub(crate) fn rule_policies(rule: &gatehouse_config::Rule) -> Vec<String> {
    let v = serde_json::to_value(rule).unwrap_or(Value::Null);
    names(&v)
}

pub(crate) fn names(rule: &Value) -> Vec<String> {
    rule.get("policies")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn auth_sections(p: &Value) -> Vec<&'static str> {
    AUTH.into_iter()
        .filter(|s| p.get(*s).is_some_and(|v| !v.is_null()))
        .collect()
}

/// Requests per second a rate limit allows, for comparing two of them.
fn rate(r: &Value) -> Option<f64> {
    let requests = r.get("requests")?.as_f64()?;
    let per = r.get("per")?.as_str()?;
    let per = gatehouse_config::units::parse_duration(per).ok()?;
    Some(requests / per.as_secs_f64().max(1e-9))
}

/// `100/1m`, as the manifest writes it.
fn rate_label(r: &Value) -> String {
    let requests = r.get("requests").map(Value::to_string).unwrap_or_default();
    let per = r.get("per").and_then(Value::as_str).unwrap_or("?");
    format!("{requests}/{per}")
}

fn num(v: &Value, path: &str) -> Option<f64> {
    v.pointer(path).and_then(Value::as_f64)
}

/// Changes for one operation served by rules with policies `a` (old) and `b` (new).
pub(crate) fn compare(
    out: &mut Out,
    op: &str,
    (old, a): (&Policies, &[String]),
    (new, b): (&Policies, &[String]),
    at: &str,
) {
    for name in b.iter().filter(|n| !a.contains(n)) {
        let p = new.get(name).cloned().unwrap_or(Value::Null);
        let auth = auth_sections(&p);
        let (kind, what) = if !auth.is_empty() {
            (
                "newly-protected",
                format!("requests now need {}", auth.join(" and ")),
            )
        } else if p.get("rateLimit").is_some_and(|r| !r.is_null()) {
            (
                "limit-tightened",
                "requests are now rate limited".to_string(),
            )
        } else if p.get("requestLimits").is_some_and(|r| !r.is_null()) {
            (
                "limit-tightened",
                "request bodies are now limited".to_string(),
            )
        } else {
            (
                "policy-attached",
                "it may refuse requests that passed".to_string(),
            )
        };
        out.push(
            Class::Breaking,
            kind,
            op,
            format!("policy `{name}` attached: {what}"),
            at,
        );
    }
    for name in a.iter().filter(|n| !b.contains(n)) {
        out.push(
            Class::NonBreaking,
            "policy-removed",
            op,
            format!("policy `{name}` no longer applies"),
            at,
        );
    }
    for name in a.iter().filter(|n| b.contains(n)) {
        if let (Some(x), Some(y)) = (old.get(name), new.get(name)) {
            changed(out, op, name, x, y, at);
        }
    }
}

/// The same policy on both sides: its limits or auth sections changed.
fn changed(out: &mut Out, op: &str, name: &str, x: &Value, y: &Value, at: &str) {
    let (ax, ay) = (auth_sections(x), auth_sections(y));
    for s in ay.iter().filter(|s| !ax.contains(s)) {
        out.push(
            Class::Breaking,
            "newly-protected",
            op,
            format!("policy `{name}` now requires {s}"),
            at,
        );
    }
    let limits = [
        (
            "rate",
            x.get("rateLimit").and_then(rate),
            y.get("rateLimit").and_then(rate),
        ),
        (
            "burst",
            num(x, "/rateLimit/burst"),
            num(y, "/rateLimit/burst"),
        ),
        (
            "maxBodySize",
            num(x, "/requestLimits/maxBodySize"),
            num(y, "/requestLimits/maxBodySize"),
        ),
    ];
    for (what, before, after) in limits {
        let shown = |v: &Value, n: f64| match what {
            "rate" => rate_label(v.get("rateLimit").unwrap_or(&Value::Null)),
            _ => n.to_string(),
        };
        match (before, after) {
            (Some(b), Some(a)) if a != b => {
                let text = format!(
                    "policy `{name}` {what} {} (was {})",
                    shown(y, a),
                    shown(x, b)
                );
                let (class, kind) = match a < b {
                    true => (Class::Breaking, "limit-tightened"),
                    false => (Class::NonBreaking, "limit-relaxed"),
                };
                out.push(class, kind, op, text, at);
            }
            _ => {}
        }
    }
}

/// OpenAPI additions for an operation served by a rule with `names`: security requirements
/// (and the schemes to add to `components.securitySchemes`), rate and size limits as extensions.
pub(crate) fn describe(
    policies: &Policies,
    names: &[String],
    op: &mut Value,
    schemes: &mut Map<String, Value>,
) {
    let mut security = Vec::new();
    for name in names {
        let Some(p) = policies.get(name) else {
            continue;
        };
        let mut requirement = Map::new();
        for section in auth_sections(p) {
            let scheme = format!("{}-{section}", name.replace('/', "-"));
            schemes.insert(scheme.clone(), scheme_of(section, &p[section]));
            requirement.insert(scheme, json!([]));
        }
        if !requirement.is_empty() {
            security.push(Value::Object(requirement));
        }
        if let Some(r) = p.get("rateLimit").filter(|r| !r.is_null()) {
            op["x-gatehouse-rate-limit"] = r.clone();
        }
        if let Some(n) = p.pointer("/requestLimits/maxBodySize") {
            op["x-gatehouse-max-body-size"] = n.clone();
        }
    }
    if !security.is_empty() {
        op["security"] = Value::Array(security);
    }
}

fn scheme_of(section: &str, spec: &Value) -> Value {
    match section {
        "jwt" => json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
        "basicAuth" => json!({"type": "http", "scheme": "basic"}),
        "apiKey" => {
            let from = spec.pointer("/from/0").cloned().unwrap_or(Value::Null);
            let (within, name) = ["header", "query", "cookie"]
                .iter()
                .find_map(|w| Some((*w, from.get(*w)?.as_str()?.to_string())))
                .unwrap_or(("header", "x-api-key".into()));
            json!({"type": "apiKey", "in": within, "name": name})
        }
        _ => {
            json!({"type": "http", "scheme": "bearer", "description": "checked by an external authorization service"})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({"policies": [
            {"id": "default/per-user", "rateLimit": {"requests": 100, "per": "1m", "burst": 20}},
            {"id": "default/jwt", "jwt": {"issuer": "https://auth.example.com/"}},
            {"id": "default/keys", "apiKey": {"from": [{"header": "x-key"}]}},
        ]})
    }

    fn changes(old: &Value, a: &[&str], new: &Value, b: &[&str]) -> Vec<(Class, &'static str)> {
        let mut out = Out {
            changes: Vec::new(),
            policies: Default::default(),
        };
        let (a, b): (Vec<String>, Vec<String>) = (
            a.iter().map(|s| s.to_string()).collect(),
            b.iter().map(|s| s.to_string()).collect(),
        );
        let (po, pn) = (Policies::from_json(old), Policies::from_json(new));
        compare(&mut out, "GET h/x", (&po, &a), (&pn, &b), "f:1");
        out.changes.into_iter().map(|c| (c.class, c.kind)).collect()
    }

    #[test]
    fn attaching_an_auth_policy_is_newly_protected_and_a_rate_limit_is_tightening() {
        let c = config();
        assert_eq!(
            changes(&c, &[], &c, &["default/jwt"]),
            vec![(Class::Breaking, "newly-protected")]
        );
        assert_eq!(
            changes(&c, &[], &c, &["default/per-user"]),
            vec![(Class::Breaking, "limit-tightened")]
        );
        assert_eq!(
            changes(&c, &["default/jwt"], &c, &[]),
            vec![(Class::NonBreaking, "policy-removed")]
        );
    }

    #[test]
    fn a_lower_rate_is_breaking_and_a_higher_one_is_not() {
        let old = config();
        let mut new = config();
        new["policies"][0]["rateLimit"]["per"] = json!("2m");
        let p = ["default/per-user"];
        assert_eq!(
            changes(&old, &p, &new, &p),
            vec![(Class::Breaking, "limit-tightened")]
        );
        assert_eq!(
            changes(&new, &p, &old, &p),
            vec![(Class::NonBreaking, "limit-relaxed")]
        );
    }

    #[test]
    fn openapi_gets_security_schemes_and_limit_extensions() {
        let p = Policies::from_json(&config());
        let mut op = json!({});
        let mut schemes = Map::new();
        let names = ["default/keys".to_string(), "default/per-user".to_string()];
        describe(&p, &names, &mut op, &mut schemes);
        assert_eq!(op["security"], json!([{"default-keys-apiKey": []}]));
        assert_eq!(
            schemes["default-keys-apiKey"],
            json!({"type": "apiKey", "in": "header", "name": "x-key"})
        );
        assert_eq!(op["x-gatehouse-rate-limit"]["requests"], 100);
    }

    #[test]
    fn a_config_without_policies_has_none() {
        assert!(Policies::from_json(&json!({})).0.is_empty());
        assert!(names(&json!({"path": "/"})).is_empty());
    }
}
