//! `gatehouse diff`, inside a rule's OpenAPI document: operations, parameters and schemas, with
//! the breaking-change rules of oasdiff and openapi-diff (removed operation, new required
//! parameter or request field, narrowed request enum, removed response field, changed type; the
//! reverse directions are not breaking).

use crate::diff::Out;
use crate::schema::{deref, flatten, operations, param_key, types};
use crate::Class;
use gatehouse_config::openapi::OpenApi;
use gatehouse_config::Rule;
use serde_json::Value;
use std::collections::BTreeSet;

/// Which way data flows: what a client may send (request) or must accept (response).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Request,
    Response,
}

struct Ctx<'a> {
    out: &'a mut Out,
    op: String,
    at: String,
    old: &'a Value,
    new: &'a Value,
}

impl Ctx<'_> {
    fn push(&mut self, class: Class, kind: &'static str, reason: String) {
        let (op, at) = (self.op.clone(), self.at.clone());
        self.out.push(class, kind, &op, reason, &at);
    }
}

/// Compares the documents of one rule, old and new, operation by operation.
pub(crate) fn diff(out: &mut Out, op: &str, old: (&Rule, &OpenApi), new: (&Rule, &OpenApi)) {
    let host = op.split_once(' ').map_or("", |(_, h)| h);
    let host = host.split_once('/').map_or(host, |(h, _)| h);
    let ops_old = operations(old.0, old.1);
    let ops_new = operations(new.0, new.1);
    for (key, o) in &ops_old {
        let label = format!("{} {host}{}", key.1.to_uppercase(), o.client_path);
        match ops_new.get(key) {
            None => out.push(
                Class::Breaking,
                "api-operation-removed",
                &label,
                "operation removed from the OpenAPI document".into(),
                &old.1.location(&o.doc_path, Some(&key.1)),
            ),
            Some(n) => {
                let mut c = Ctx {
                    out: &mut *out,
                    op: label,
                    at: new.1.location(&n.doc_path, Some(&key.1)),
                    old: &old.1.document,
                    new: &new.1.document,
                };
                operation(&mut c, &o.params, &n.params, o.op, n.op);
            }
        }
    }
    for (key, n) in ops_new.iter().filter(|(k, _)| !ops_old.contains_key(*k)) {
        out.push(
            Class::NonBreaking,
            "api-operation-added",
            &format!("{} {host}{}", key.1.to_uppercase(), n.client_path),
            "operation added to the OpenAPI document".into(),
            &new.1.location(&n.doc_path, Some(&key.1)),
        );
    }
}

fn operation(c: &mut Ctx, po: &[Value], pn: &[Value], o: &Value, n: &Value) {
    let (old_doc, new_doc) = (c.old, c.new);
    for p in pn {
        let p = deref(new_doc, p);
        let key = param_key(p);
        let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
        let before = po
            .iter()
            .map(|q| deref(old_doc, q))
            .find(|q| param_key(q) == key);
        match before {
            None if required => c.push(
                Class::Breaking,
                "new-required-parameter",
                format!("new required {} parameter `{}`", key.0, key.1),
            ),
            None => c.push(
                Class::NonBreaking,
                "new-optional-parameter",
                format!("new optional {} parameter `{}`", key.0, key.1),
            ),
            Some(q) => {
                let was = q.get("required").and_then(Value::as_bool).unwrap_or(false);
                if required && !was {
                    c.push(
                        Class::Breaking,
                        "parameter-now-required",
                        format!("{} parameter `{}` is required now", key.0, key.1),
                    );
                }
                if let (Some(a), Some(b)) = (q.get("schema"), p.get("schema")) {
                    let at = format!("{} parameter `{}`", key.0, key.1);
                    schema(c, Dir::Request, &at, a, b, 0);
                }
            }
        }
    }
    for q in po {
        let key = param_key(deref(old_doc, q));
        if !pn.iter().any(|p| param_key(deref(new_doc, p)) == key) {
            c.push(
                Class::Informational,
                "parameter-removed",
                format!("{} parameter `{}` no longer documented", key.0, key.1),
            );
        }
    }
    request_body(c, o, n);
    responses(c, o, n);
}

fn json_schema<'a>(doc: &'a Value, holder: Option<&'a Value>) -> Option<&'a Value> {
    let content = deref(doc, holder?).get("content")?.as_object()?;
    let media = content
        .iter()
        .find(|(k, _)| k.starts_with("application/json") || k.ends_with("+json"))
        .map(|(_, v)| v)?;
    media.get("schema")
}

fn request_body(c: &mut Ctx, o: &Value, n: &Value) {
    let (bo, bn) = (o.get("requestBody"), n.get("requestBody"));
    let req = |doc: &Value, b: Option<&Value>| {
        b.map(|b| deref(doc, b))
            .and_then(|b| b.get("required"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    if req(c.new, bn) && !req(c.old, bo) {
        c.push(
            Class::Breaking,
            "request-body-required",
            "a request body is required now".into(),
        );
    }
    if let (Some(a), Some(b)) = (json_schema(c.old, bo), json_schema(c.new, bn)) {
        schema(c, Dir::Request, "request body", a, b, 0);
    }
}

fn responses(c: &mut Ctx, o: &Value, n: &Value) {
    let (Some(ro), Some(rn)) = (
        o.get("responses").and_then(Value::as_object),
        n.get("responses").and_then(Value::as_object),
    ) else {
        return;
    };
    for (status, a) in ro {
        match rn.get(status) {
            None if status.starts_with('2') => c.push(
                Class::Breaking,
                "response-removed",
                format!("response {status} removed"),
            ),
            None => {}
            Some(b) => {
                if let (Some(x), Some(y)) =
                    (json_schema(c.old, Some(a)), json_schema(c.new, Some(b)))
                {
                    schema(c, Dir::Response, &format!("response {status}"), x, y, 0);
                }
            }
        }
    }
    for status in rn.keys().filter(|s| !ro.contains_key(*s)) {
        c.push(
            Class::NonBreaking,
            "response-added",
            format!("response {status} added"),
        );
    }
}

/// Compares two schemas at `at` (a readable location such as `request body.owner.name`).
fn schema(c: &mut Ctx, dir: Dir, at: &str, a: &Value, b: &Value, depth: usize) {
    if depth > 12 {
        return;
    }
    let (a, b) = (flatten(c.old, a), flatten(c.new, b));
    let (a, b) = (&a, &b);
    let (ta, tb) = (types(a), types(b));
    if !ta.is_empty() && !tb.is_empty() && ta != tb {
        let widened = tb.is_superset(&ta)
            || (ta.contains("integer") && tb.contains("number") && dir == Dir::Request);
        let class = match (dir, widened) {
            (Dir::Request, true) => Class::NonBreaking,
            _ => Class::Breaking,
        };
        c.push(
            class,
            "type-changed",
            format!("{at}: type {} now (was {})", join(&tb), join(&ta)),
        );
        return;
    }
    enums(c, dir, at, a, b);
    properties(c, dir, at, a, b, depth);
    if let (Some(x), Some(y)) = (a.get("items"), b.get("items")) {
        schema(c, dir, &format!("{at}[]"), x, y, depth + 1);
    }
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join("|")
}

fn enums(c: &mut Ctx, dir: Dir, at: &str, a: &Value, b: &Value) {
    let (Some(ea), Some(eb)) = (
        a.get("enum").and_then(Value::as_array),
        b.get("enum").and_then(Value::as_array),
    ) else {
        return;
    };
    let gone: Vec<String> = ea
        .iter()
        .filter(|v| !eb.contains(v))
        .map(Value::to_string)
        .collect();
    let new: Vec<String> = eb
        .iter()
        .filter(|v| !ea.contains(v))
        .map(Value::to_string)
        .collect();
    if !gone.is_empty() {
        let (class, kind) = match dir {
            Dir::Request => (Class::Breaking, "enum-narrowed"),
            Dir::Response => (Class::NonBreaking, "enum-narrowed"),
        };
        c.push(
            class,
            kind,
            format!("{at}: values {} no longer allowed", gone.join(", ")),
        );
    }
    if !new.is_empty() {
        let (class, kind) = match dir {
            Dir::Request => (Class::NonBreaking, "enum-widened"),
            Dir::Response => (Class::Informational, "enum-widened"),
        };
        c.push(class, kind, format!("{at}: new values {}", new.join(", ")));
    }
}

fn required(s: &Value) -> BTreeSet<String> {
    s.get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn properties(c: &mut Ctx, dir: Dir, at: &str, a: &Value, b: &Value, depth: usize) {
    let empty = serde_json::Map::new();
    let pa = a
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let pb = b
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let (ra, rb) = (required(a), required(b));
    for (name, sb) in pb {
        let field = format!("{at}.{name}");
        match (pa.get(name), dir) {
            (None, Dir::Request) if rb.contains(name) => c.push(
                Class::Breaking,
                "new-required-request-field",
                format!("{field}: new required field"),
            ),
            (None, _) => c.push(
                Class::NonBreaking,
                "field-added",
                format!("{field}: new optional field"),
            ),
            (Some(sa), _) => {
                if dir == Dir::Request && rb.contains(name) && !ra.contains(name) {
                    c.push(
                        Class::Breaking,
                        "request-field-now-required",
                        format!("{field}: required now"),
                    );
                }
                schema(c, dir, &field, sa, sb, depth + 1);
            }
        }
    }
    for name in pa.keys().filter(|n| !pb.contains_key(*n)) {
        let field = format!("{at}.{name}");
        match dir {
            Dir::Response => c.push(
                Class::Breaking,
                "response-field-removed",
                format!("{field}: removed from the response"),
            ),
            Dir::Request => c.push(
                Class::Informational,
                "request-field-removed",
                format!("{field}: no longer documented in the request"),
            ),
        }
    }
}
