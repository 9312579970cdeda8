//! Request validation against a rule's OpenAPI document (`openapi: {validateRequests: true}`): a
//! step of the rule's policy chain, before the request is forwarded. Built once per snapshot from
//! the document; per request it matches the operation, then checks path and query parameters and
//! a JSON body against their schemas, answering with one precise message for a 400.
//!
//! A focused validator for the keywords APIs use (type, nullable, enum, const, required,
//! properties, additionalProperties, items, min/max lengths, items and values, pattern, allOf,
//! anyOf, oneOf, local `$ref`) rather than a full JSON Schema engine: the `jsonschema` crate
//! would add a large dependency tree for keywords request schemas rarely use.
//!
//! On the request path (`gatehouse-gateway`, `policy::validate`): the rule's policy chain calls
//! `validate_head` after authentication and rate limits; when it answers `Ok(true)` (a JSON body
//! with a schema), the handler reads the body whole and calls `validate_body`.

use crate::schema::{deref, operations, param_key};
use crate::ContractError;
use gatehouse_config::openapi::OpenApi;
use gatehouse_config::{Route, Rule};
use serde_json::Value;
use std::collections::HashMap;

use std::sync::Arc;

/// How deep schemas are followed: a recursive schema stops being checked there.
const MAX_DEPTH: usize = 32;

/// Where in the request a value is, rendered only when there is an error to report.
type At<'a> = &'a dyn Fn() -> String;

/// One path segment of an operation's path template.
enum Segment {
    Literal(String),
    Param(String),
}

struct Operation {
    method: String,
    segments: Vec<Segment>,
    /// Path and query parameters (headers are the policy chain's business).
    params: Vec<Param>,
    body_required: bool,
    /// Accepted media types and the JSON schema, if the body is JSON.
    media: Vec<String>,
    json_schema: Option<Value>,
}

/// A path or query parameter, with what its schema says compiled once.
struct Param {
    /// `path` or `query`.
    within: &'static str,
    name: String,
    /// Path parameters always are.
    required: bool,
    /// An array: every occurrence in the query is an item.
    array: bool,
    /// The scalar's (or the items') types, to read the text as a number or a boolean.
    number: bool,
    boolean: bool,
    schema: Option<Value>,
}

impl Param {
    fn new(doc: &Value, p: &Value) -> Option<Self> {
        let p = deref(doc, p);
        let (within, name) = param_key(p);
        let within = match within.as_str() {
            "path" => "path",
            "query" => "query",
            _ => return None,
        };
        let schema = p.get("schema").map(|s| deref(doc, s).clone());
        let types = |s: Option<&Value>| {
            s.map(|s| crate::schema::types(deref(doc, s)))
                .unwrap_or_default()
        };
        let own = types(schema.as_ref());
        let array = own.contains("array");
        let scalar = match array {
            true => types(schema.as_ref().and_then(|s| s.get("items"))),
            false => own,
        };
        Some(Param {
            within,
            name,
            required: within == "path" || p.get("required").and_then(Value::as_bool) == Some(true),
            array,
            number: scalar.contains("integer") || scalar.contains("number"),
            boolean: scalar.contains("boolean"),
            schema,
        })
    }

    /// A parameter's text as the JSON value its schema expects (`"7"` -> `7` for an integer).
    fn coerce(&self, raw: &str) -> Value {
        if self.number {
            if let Ok(n) = raw.parse::<i64>() {
                return Value::from(n);
            }
            if let Some(n) = raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                return Value::Number(n);
            }
        }
        if self.boolean && (raw == "true" || raw == "false") {
            return Value::Bool(raw == "true");
        }
        Value::String(raw.to_string())
    }
}

/// The compiled validator of one rule.
pub struct RequestValidator {
    doc: Arc<Value>,
    operations: Vec<Operation>,
    patterns: HashMap<String, regex::Regex>,
}

impl std::fmt::Debug for RequestValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestValidator({} operations)", self.operations.len())
    }
}

fn segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .skip(1)
        .map(
            |s| match s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

fn collect_patterns(v: &Value, out: &mut HashMap<String, regex::Regex>) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(p)) = m.get("pattern") {
                if !out.contains_key(p) {
                    let re = regex::Regex::new(p).map_err(|e| format!("pattern `{p}`: {e}"))?;
                    out.insert(p.clone(), re);
                }
            }
            m.values().try_for_each(|x| collect_patterns(x, out))
        }
        Value::Array(a) => a.iter().try_for_each(|x| collect_patterns(x, out)),
        _ => Ok(()),
    }
}

impl RequestValidator {
    /// The validator a rule asks for (`validateRequests: true` on its own document or, without
    /// one, its Route's); `None` when it asks for none, so an unvalidated rule costs nothing.
    pub fn for_rule(route: &Route, rule: &Rule) -> Option<Result<Self, ContractError>> {
        let api = rule.openapi.as_deref().or(route.openapi.as_ref())?;
        api.validate_requests.then(|| Self::new(rule, api))
    }

    /// The validator for `rule` described by `api` (the rule's own document or its Route's).
    pub fn new(rule: &Rule, api: &OpenApi) -> Result<Self, ContractError> {
        let doc = api.document.clone();
        let mut ops = Vec::new();
        for ((_, method), o) in operations(rule, api) {
            let body = o.op.get("requestBody").map(|b| deref(&doc, b));
            let content = body
                .and_then(|b| b.get("content"))
                .and_then(Value::as_object);
            let media: Vec<String> = content
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default();
            let json_schema = content.and_then(|c| {
                c.iter()
                    .find(|(k, _)| is_json(k))
                    .and_then(|(_, m)| m.get("schema").cloned())
            });
            ops.push(Operation {
                method: method.to_uppercase(),
                segments: segments(&o.client_path),
                params: o
                    .params
                    .iter()
                    .filter_map(|p| Param::new(&doc, p))
                    .collect(),
                body_required: body
                    .and_then(|b| b.get("required"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                media,
                json_schema,
            });
        }
        // Literal segments first, so `/pets/mine` wins over `/pets/{id}` as OpenAPI requires.
        ops.sort_by_key(|o| {
            o.segments
                .iter()
                .map(|s| matches!(s, Segment::Param(_)))
                .collect::<Vec<_>>()
        });
        let mut patterns = HashMap::new();
        collect_patterns(&doc, &mut patterns)
            .map_err(|e| ContractError(format!("{}: {e}", api.file.display())))?;
        Ok(RequestValidator {
            doc,
            operations: ops,
            patterns,
        })
    }

    /// Checks one request whole; `Err` is the message of the 400 answer.
    pub fn validate(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(), String> {
        let has_body = body.is_some_and(|b| !b.is_empty());
        if self.validate_head(method, path, query, content_type, Some(has_body))? {
            self.validate_body(method, path, content_type, body.unwrap_or_default())?;
        }
        Ok(())
    }

    /// Checks what arrives before the body: the operation, its path and query parameters and,
    /// when whether a body follows is known (`has_body`; an HTTP/2 request need not say), what
    /// `body_expected` checks. `Ok(true)` when the body is JSON with a schema to check: read it
    /// whole and call `validate_body`.
    pub fn validate_head(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        content_type: Option<&str>,
        has_body: Option<bool>,
    ) -> Result<bool, String> {
        let op = self.operation(method, path)?;
        for p in &op.params {
            self.parameter(p, op, path, query)?;
        }
        match has_body {
            Some(has_body) => Self::body_head(op, content_type, has_body),
            None => Ok(false),
        }
    }

    /// Checks a required body's presence and the content type; `Ok(true)` when the body is JSON
    /// with a schema to check (then read it whole and call `validate_body`).
    pub fn body_expected(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        has_body: bool,
    ) -> Result<bool, String> {
        Self::body_head(self.operation(method, path)?, content_type, has_body)
    }

    fn body_head(
        op: &Operation,
        content_type: Option<&str>,
        has_body: bool,
    ) -> Result<bool, String> {
        if !has_body {
            return match op.body_required {
                true => Err("a request body is required".into()),
                false => Ok(false),
            };
        }
        if op.media.is_empty() {
            return Ok(false);
        }
        let ct = media_type(content_type);
        if !op.media.iter().any(|m| media_matches(m, &ct)) {
            return Err(format!(
                "content type `{ct}` is not accepted; expected {}",
                op.media.join(", ")
            ));
        }
        Ok(is_json(&ct) && op.json_schema.is_some())
    }

    /// Checks a JSON body against its operation's schema (after `validate_head` said so).
    pub fn validate_body(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let op = self.operation(method, path)?;
        let (true, Some(schema)) = (is_json(&media_type(content_type)), &op.json_schema) else {
            return Ok(());
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        self.check(schema, &value, &|| "request body".to_string(), 0)
    }

    /// The operation serving `method` on `path`; HEAD falls back to GET, as HTTP has it.
    fn operation(&self, method: &str, path: &str) -> Result<&Operation, String> {
        let mut path_known = false;
        let mut get = None;
        for op in &self.operations {
            if match_path(&op.segments, path) {
                path_known = true;
                if op.method == method {
                    return Ok(op);
                }
                if method == "HEAD" && op.method == "GET" && get.is_none() {
                    get = Some(op);
                }
            }
        }
        get.ok_or_else(|| match path_known {
            true => {
                format!("method {method} is not an operation of `{path}` in the API description")
            }
            false => format!("`{path}` is not a path of the API description"),
        })
    }

    fn parameter(
        &self,
        p: &Param,
        op: &Operation,
        path: &str,
        query: Option<&str>,
    ) -> Result<(), String> {
        let name = p.name.as_str();
        let at = || format!("{} parameter `{name}`", p.within);
        let value = if p.within == "path" {
            path_value(&op.segments, path, name).map(|v| p.coerce(v))
        } else {
            let mut found = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v);
            match p.array {
                true => {
                    let items: Vec<Value> = found.map(|v| p.coerce(&v)).collect();
                    (!items.is_empty()).then_some(Value::Array(items))
                }
                false => found.next().map(|v| p.coerce(&v)),
            }
        };
        let Some(value) = value else {
            return match p.required {
                true => Err(format!("{} parameter `{name}` is required", p.within)),
                false => Ok(()),
            };
        };
        match &p.schema {
            Some(schema) => self.check(schema, &value, &at, 0),
            None => Ok(()),
        }
    }

    /// Checks `v` against `schema`; the error names the field (`request body.owner.name`).
    fn check(&self, schema: &Value, v: &Value, at: At, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let s = deref(&self.doc, schema);
        if v.is_null() && s.get("nullable").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        self.combinators(s, v, at, depth)?;
        let type_ok = match s.get("type") {
            Some(Value::String(t)) => has_type(v, t),
            Some(Value::Array(ts)) => ts
                .iter()
                .any(|t| t.as_str().is_some_and(|t| has_type(v, t))),
            _ => true,
        };
        if !type_ok {
            let want: Vec<String> = crate::schema::types(s).into_iter().collect();
            return Err(format!(
                "{}: expected {}, found {}",
                at(),
                want.join(" or "),
                kind(v)
            ));
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                let allowed: Vec<String> = e.iter().map(Value::to_string).collect();
                return Err(format!(
                    "{}: {v} is not one of {}",
                    at(),
                    allowed.join(", ")
                ));
            }
        }
        if let Some(c) = s.get("const") {
            if c != v {
                return Err(format!("{}: must be {c}", at()));
            }
        }
        match v {
            Value::String(x) => self.string(s, x, at),
            Value::Number(n) => number(s, n.as_f64().unwrap_or(0.0), at),
            Value::Array(items) => self.array(s, items, at, depth),
            Value::Object(m) => self.object(s, m, at, depth),
            _ => Ok(()),
        }
    }

    fn combinators(&self, s: &Value, v: &Value, at: At, depth: usize) -> Result<(), String> {
        let list = |k: &str| s.get(k).and_then(Value::as_array);
        if let Some(all) = list("allOf") {
            all.iter()
                .try_for_each(|x| self.check(x, v, at, depth + 1))?;
        }
        if let Some(any) = list("anyOf") {
            if !any.iter().any(|x| self.check(x, v, at, depth + 1).is_ok()) {
                return Err(format!(
                    "{}: matches none of the allowed shapes (anyOf)",
                    at()
                ));
            }
        }
        if let Some(one) = list("oneOf") {
            let n = one
                .iter()
                .filter(|x| self.check(x, v, at, depth + 1).is_ok())
                .count();
            if n != 1 {
                return Err(format!(
                    "{}: must match exactly one of the allowed shapes (oneOf), matches {n}",
                    at()
                ));
            }
        }
        Ok(())
    }

    fn string(&self, s: &Value, x: &str, at: At) -> Result<(), String> {
        let len = x.chars().count() as u64;
        if let Some(min) = s
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|m| len < *m)
        {
            return Err(format!("{}: shorter than {min} characters", at()));
        }
        if let Some(max) = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .filter(|m| len > *m)
        {
            return Err(format!("{}: longer than {max} characters", at()));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if self.patterns.get(p).is_some_and(|re| !re.is_match(x)) {
                return Err(format!("{}: does not match the pattern `{p}`", at()));
            }
        }
        Ok(())
    }

    fn array(&self, s: &Value, items: &[Value], at: At, depth: usize) -> Result<(), String> {
        let n = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64).filter(|m| n < *m) {
            return Err(format!("{}: fewer than {min} items", at()));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64).filter(|m| n > *m) {
            return Err(format!("{}: more than {max} items", at()));
        }
        if let Some(schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(schema, item, &|| format!("{}[{i}]", at()), depth + 1)?;
            }
        }
        Ok(())
    }

    fn object(
        &self,
        s: &Value,
        m: &serde_json::Map<String, Value>,
        at: At,
        depth: usize,
    ) -> Result<(), String> {
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            if let Some(missing) = req
                .iter()
                .filter_map(Value::as_str)
                .find(|r| !m.contains_key(*r))
            {
                return Err(format!("{}.{missing}: required field missing", at()));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, v) in m {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => self.check(ps, v, &|| format!("{}.{k}", at()), depth + 1)?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{}.{k}: unknown field", at()));
                    }
                    Some(extra @ Value::Object(_)) => {
                        self.check(extra, v, &|| format!("{}.{k}", at()), depth + 1)?
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

fn number(s: &Value, x: f64, at: At) -> Result<(), String> {
    let get = |k: &str| s.get(k).and_then(Value::as_f64);
    // 3.0 writes `exclusiveMinimum: true` beside `minimum`; 3.1 writes the bound itself.
    let flag = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
    if let Some(min) = get("minimum") {
        if x < min || (flag("exclusiveMinimum") && x == min) {
            return Err(format!("{}: below the minimum {min}", at()));
        }
    }
    if let Some(max) = get("maximum") {
        if x > max || (flag("exclusiveMaximum") && x == max) {
            return Err(format!("{}: above the maximum {max}", at()));
        }
    }
    if get("exclusiveMinimum").is_some_and(|m| x <= m) {
        return Err(format!(
            "{}: must be above {}",
            at(),
            get("exclusiveMinimum").unwrap_or(0.0)
        ));
    }
    if get("exclusiveMaximum").is_some_and(|m| x >= m) {
        return Err(format!(
            "{}: must be below {}",
            at(),
            get("exclusiveMaximum").unwrap_or(0.0)
        ));
    }
    Ok(())
}

/// Whether `path` (`/v1/pets/7`) fits the template's segments; allocation-free, as it runs
/// for every operation until one fits.
fn match_path(segments: &[Segment], path: &str) -> bool {
    let mut parts = path.split('/').skip(1);
    for s in segments {
        let Some(p) = parts.next() else { return false };
        match s {
            Segment::Literal(l) if l == p => {}
            Segment::Param(_) if !p.is_empty() => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

/// The value of path parameter `name` in a path that fits `segments`.
fn path_value<'p>(segments: &[Segment], path: &'p str, name: &str) -> Option<&'p str> {
    (segments.iter().zip(path.split('/').skip(1)))
        .find(|(s, _)| matches!(s, Segment::Param(n) if n == name))
        .map(|(_, p)| p)
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
fn media_type(content_type: Option<&str>) -> String {
    let ct = content_type.unwrap_or("").split(';').next().unwrap_or("");
    ct.trim().to_ascii_lowercase()
}

fn is_json(media: &str) -> bool {
    let m = media.split(';').next().unwrap_or("").trim();
    m == "application/json" || m.ends_with("+json")
}

fn media_matches(pattern: &str, ct: &str) -> bool {
    let p = pattern
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    p == ct
        || p == "*/*"
        || p.strip_suffix("/*")
            .is_some_and(|major| ct.split('/').next() == Some(major))
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
