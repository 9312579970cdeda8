//! Reading an OpenAPI document (3.0 or 3.1, as JSON): local `$ref`s, the operations a rule serves
//! with the paths clients use, parameter identity, schema types. Shared by the diff, the document
//! Gatehouse emits and request validation.

use gatehouse_config::openapi::{client_path, path_matches, OpenApi, OPERATION_METHODS};
use gatehouse_config::{PathRewrite, Rule};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Follows local `$ref`s (`#/components/schemas/Pet`), at most a few hops (a cycle stops there).
pub(crate) fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        match r.strip_prefix('#').and_then(|p| doc.pointer(p)) {
            Some(t) => v = t,
            None => return v,
        }
    }
    v
}

/// One operation of a document as a rule serves it.
pub(crate) struct Operation<'a> {
    /// The path clients send (rewrite undone), a template (`/v1/pets/{id}`).
    pub client_path: String,
    /// The path as the document writes it.
    pub doc_path: String,
    /// The operation object.
    pub op: &'a Value,
    /// Path-item and operation parameters, operation ones winning.
    pub params: Vec<Value>,
}

/// A path template with every parameter name blanked, so `{id}` and `{petId}` compare equal.
pub(crate) fn normalize(template: &str) -> String {
    gatehouse_config::openapi::sample_path(template, "{}")
}

/// Operations keyed by (normalized client path, lowercase method), restricted to what the rule
/// reaches: its path condition and its methods.
pub(crate) fn operations<'a>(
    rule: &Rule,
    api: &'a OpenApi,
) -> BTreeMap<(String, String), Operation<'a>> {
    let mut out = BTreeMap::new();
    let Some(paths) = api.document.get("paths").and_then(Value::as_object) else {
        return out;
    };
    let doc = &*api.document;
    for (p, item) in paths {
        let Some(cp) = client_path(rule, p) else {
            continue;
        };
        let regex_rewrite = matches!(rule.rewrite.path.as_deref(), Some(PathRewrite::Regex(..)));
        if !regex_rewrite && !path_matches(rule, &cp) {
            continue;
        }
        let item = deref(doc, item);
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in OPERATION_METHODS {
            let Some(op) = item.get(m) else { continue };
            let upper = m.to_uppercase();
            if !rule.methods.is_empty() && !rule.methods.contains(&upper) {
                continue;
            }
            let mut params: Vec<Value> = op
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for s in &shared {
                let k = param_key(deref(doc, s));
                if !params.iter().any(|q| param_key(deref(doc, q)) == k) {
                    params.push(s.clone());
                }
            }
            out.insert(
                (normalize(&cp), m.to_string()),
                Operation {
                    client_path: cp.clone(),
                    doc_path: p.clone(),
                    op,
                    params,
                },
            );
        }
    }
    out
}

/// A parameter's identity: (`in`, name); header names compare case-insensitively.
pub(crate) fn param_key(p: &Value) -> (String, String) {
    let within = p
        .get("in")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
    let name = if within == "header" {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    };
    (within, name)
}

/// A schema's types as a set: 3.1's `type: [string, "null"]` and 3.0's `nullable: true` agree.
pub(crate) fn types(s: &Value) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = match s.get("type") {
        Some(Value::String(t)) => [t.clone()].into(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => BTreeSet::new(),
    };
    if !out.is_empty() && s.get("nullable").and_then(Value::as_bool) == Some(true) {
        out.insert("null".into());
    }
    out
}

/// A schema with its `allOf` members folded in (properties, required, type), so that a field a
/// composed schema gains or loses through one of its parts is seen. References are followed.
pub(crate) fn flatten(doc: &Value, s: &Value) -> Value {
    flatten_depth(doc, s, 0)
}

fn flatten_depth(doc: &Value, s: &Value, depth: usize) -> Value {
    let s = deref(doc, s);
    let Some(parts) = s.get("allOf").and_then(Value::as_array) else {
        return s.clone();
    };
    let mut out = s.clone();
    if let Some(m) = out.as_object_mut() {
        m.remove("allOf");
    }
    if depth > 8 {
        return out;
    }
    for part in parts {
        let part = flatten_depth(doc, part, depth + 1);
        if let Some(props) = part.get("properties").and_then(Value::as_object) {
            let target = out.as_object_mut().map(|m| {
                m.entry("properties")
                    .or_insert_with(|| Value::Object(Default::default()))
            });
            if let Some(Value::Object(t)) = target {
                for (k, v) in props {
                    t.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        if let Some(req) = part.get("required").and_then(Value::as_array) {
            if let Some(m) = out.as_object_mut() {
                let r = m
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(r) = r {
                    r.extend(
                        req.iter()
                            .filter(|x| !r.contains(x))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        if out.get("type").is_none() {
            if let (Some(t), Some(m)) = (part.get("type").cloned(), out.as_object_mut()) {
                m.insert("type".into(), t);
            }
        }
    }
    out
}
