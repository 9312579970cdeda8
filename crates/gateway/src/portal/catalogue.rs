//! Developer portal, model: the gateway's OpenAPI document (from `gatehouse_contract`) read once
//! per config into the catalogue the pages show — operations grouped by host and API version,
//! each with parameters, bodies, responses, authentication and limits.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Everything the portal shows, grouped.
pub(crate) struct Catalogue {
    /// API groups, by host then version.
    pub groups: Vec<Group>,
}

/// The operations of one API version on one host.
pub(crate) struct Group {
    /// The host clients use, or `any host`.
    pub host: String,
    /// `v1`, `v2`... or `unversioned`.
    pub version: String,
    /// Page name (URL segment).
    pub slug: String,
    /// The server URL the document gives, when there is one.
    pub server: Option<String>,
    /// Operations, by path then method.
    pub ops: Vec<Operation>,
}

/// One operation as a client sees it.
pub(crate) struct Operation {
    pub method: String,
    pub path: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub deprecated: bool,
    pub params: Vec<Param>,
    pub body: Option<Payload>,
    pub responses: Vec<(String, Option<String>, Option<Payload>)>,
    /// Alternatives, each a list of schemes that must all pass; empty: no authentication.
    pub auth: Vec<Vec<String>>,
    /// Gatehouse extensions (rate limits, timeouts...), name without `x-gatehouse-`, value as text.
    pub limits: Vec<(String, String)>,
    /// Anchor on the group page.
    pub anchor: String,
}

/// A path, query, header or cookie parameter.
pub(crate) struct Param {
    pub name: String,
    pub location: String,
    pub required: bool,
    pub description: Option<String>,
    pub schema: Option<String>,
    pub example: Option<String>,
}

/// A request or response body.
pub(crate) struct Payload {
    pub content_type: String,
    pub schema: Option<String>,
    pub example: Option<String>,
    /// The example was made from the schema, not written in the document.
    pub generated: bool,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Catalogue {
    /// Reads the document. Anything missing or malformed is skipped, never an error: the portal
    /// shows what the document says.
    pub(crate) fn from_openapi(doc: &Value) -> Catalogue {
        let empty = Map::new();
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let top_servers = doc.get("servers");
        let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item.iter().filter(|(m, _)| METHODS.contains(&m.as_str())) {
                let Some(op) = op.as_object() else { continue };
                let servers = op
                    .get("servers")
                    .or_else(|| item.get("servers"))
                    .or(top_servers);
                // An operation served on several hosts is listed under each of them.
                let mut urls = server_urls(servers);
                if urls.is_empty() {
                    urls.push(None);
                }
                for server in urls {
                    let host = server
                        .as_deref()
                        .and_then(host_of)
                        .unwrap_or_else(|| "any host".to_string());
                    let version =
                        version_of(path, &host).unwrap_or_else(|| "unversioned".to_string());
                    let operation = operation(doc, path, method, item, op);
                    groups
                        .entry((host.clone(), version.clone()))
                        .or_insert_with(|| Group {
                            slug: super::html::slug(&format!("{host} {version}")),
                            host,
                            version,
                            server,
                            ops: Vec::new(),
                        })
                        .ops
                        .push(operation);
                }
            }
        }
        let mut groups: Vec<Group> = groups.into_values().collect();
        // `any host` sorts after named hosts; slugs stay unique.
        groups.sort_by(|a, b| {
            (a.host == "any host", &a.host, &a.version).cmp(&(
                b.host == "any host",
                &b.host,
                &b.version,
            ))
        });
        let mut seen = std::collections::HashSet::new();
        for g in &mut groups {
            g.ops.sort_by(|a, b| {
                (&a.path, method_rank(&a.method)).cmp(&(&b.path, method_rank(&b.method)))
            });
            let mut slug = g.slug.clone();
            let mut n = 2;
            while !seen.insert(slug.clone()) {
                slug = format!("{}-{n}", g.slug);
                n += 1;
            }
            g.slug = slug;
        }
        Catalogue { groups }
    }
}

fn method_rank(m: &str) -> usize {
    let lower = m.to_ascii_lowercase();
    METHODS
        .iter()
        .position(|x| *x == lower)
        .unwrap_or(METHODS.len())
}

fn server_urls(servers: Option<&Value>) -> Vec<Option<String>> {
    servers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("url")?.as_str())
        .map(|u| Some(u.to_string()))
        .collect()
}

/// The host of a server URL (`https://api.example.com:8443/base` -> `api.example.com:8443`); a
/// templated first label is a wildcard (`http://{subdomain}.example.com` -> `*.example.com`);
/// `None` for relative URLs (any host).
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split('/').next().unwrap_or("");
    if let Some((first, others)) = host.split_once('.') {
        if first.starts_with('{') && first.ends_with('}') && !others.contains('{') {
            return Some(format!("*.{others}"));
        }
    }
    (!host.is_empty() && !host.contains('{')).then(|| host.to_string())
}

/// `v1` from `/v1/tasks`, else from a host label such as `v2.api.example.com`.
fn version_of(path: &str, host: &str) -> Option<String> {
    let is_version = |s: &str| {
        let b = s.as_bytes();
        b.len() >= 2
            && (b[0] == b'v' || b[0] == b'V')
            && b[1].is_ascii_digit()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'.')
    };
    path.split('/')
        .find(|s| !s.is_empty())
        .filter(|s| is_version(s))
        .or_else(|| host.split('.').next().filter(|s| is_version(s)))
        .map(|s| s.to_ascii_lowercase())
}

fn operation(
    doc: &Value,
    path: &str,
    method: &str,
    item: &Map<String, Value>,
    op: &Map<String, Value>,
) -> Operation {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let params = parameters(doc, item, op);
    let body = op
        .get("requestBody")
        .map(|b| resolve(doc, b, 0))
        .and_then(|b| payload(doc, b.get("content")));
    let responses = op
        .get("responses")
        .and_then(Value::as_object)
        .map(|r| {
            r.iter()
                .map(|(code, resp)| {
                    let resp = resolve(doc, resp, 0);
                    (
                        code.clone(),
                        str_of(resp.get("description")),
                        payload(doc, resp.get("content")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Operation extensions override path-item ones of the same name.
    let limits: BTreeMap<String, String> = item
        .iter()
        .chain(op.iter())
        .filter_map(|(k, v)| Some((k.strip_prefix("x-gatehouse-")?, v)))
        // Which route and config file line an operation comes from is the gateway's business,
        // not its clients': the portal is public.
        .filter(|(k, _)| !matches!(*k, "route" | "rule"))
        .map(|(k, v)| (k.to_string(), limit_text(k, v)))
        .collect();
    Operation {
        anchor: super::html::slug(&format!("{method} {path}")),
        method: method.to_ascii_uppercase(),
        path: path.to_string(),
        summary: str_of(op.get("summary")),
        description: str_of(op.get("description")),
        deprecated: op
            .get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        params,
        body,
        responses,
        auth: auth(doc, op.get("security").or_else(|| doc.get("security"))),
        limits: limits.into_iter().collect(),
    }
}

/// The operation's parameters, then the path item's that it does not override (same name and
/// location), `$ref`s resolved.
fn parameters(doc: &Value, item: &Map<String, Value>, op: &Map<String, Value>) -> Vec<Param> {
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let mut params: Vec<Param> = Vec::new();
    // Operation parameters override path-item ones of the same name and location.
    let all = op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            item.get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    for p in all {
        let p = resolve(doc, p, 0);
        let (Some(name), Some(location)) = (str_of(p.get("name")), str_of(p.get("in"))) else {
            continue;
        };
        if params
            .iter()
            .any(|q| q.name == name && q.location == location)
        {
            continue;
        }
        let schema = p.get("schema").map(|s| resolve(doc, s, 0));
        params.push(Param {
            required: p
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(location == "path"),
            description: str_of(p.get("description")),
            example: p
                .get("example")
                .or_else(|| schema.as_ref().and_then(|s| s.get("example")))
                .map(scalar_text),
            schema: schema.as_ref().map(type_summary),
            name,
            location,
        });
    }
    params
}

/// The first media type of a `content` map, with its schema and an example.
fn payload(doc: &Value, content: Option<&Value>) -> Option<Payload> {
    let (content_type, media) = content?.as_object()?.iter().next()?;
    let schema = media.get("schema").map(|s| resolve(doc, s, 0));
    let written = media
        .get("example")
        .cloned()
        .or_else(|| {
            let first = media.get("examples")?.as_object()?.values().next()?;
            resolve(doc, first, 0).get("value").cloned()
        })
        .or_else(|| schema.as_ref()?.get("example").cloned());
    let generated = written.is_none();
    let example = written.or_else(|| schema.as_ref().map(|s| example_of(s, 0)));
    Some(Payload {
        content_type: content_type.clone(),
        schema: schema.as_ref().map(pretty),
        example: example.as_ref().map(pretty),
        generated: generated && example.is_some(),
    })
}

/// `$ref`s into the document replaced by what they point at, to a bounded depth (documents may
/// be recursive).
fn resolve(doc: &Value, v: &Value, depth: usize) -> Value {
    if depth > 8 {
        return v.clone();
    }
    match v {
        Value::Object(m) => {
            if let Some(target) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|ptr| doc.pointer(ptr))
            {
                return resolve(doc, target, depth + 1);
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), resolve(doc, v, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(doc, v, depth + 1)).collect()),
        _ => v.clone(),
    }
}

/// A value made up from a schema, for the try-it form and for schemas without an example.
fn example_of(schema: &Value, depth: usize) -> Value {
    if depth > 6 {
        return Value::Null;
    }
    if let Some(v) = schema.get("example").or_else(|| schema.get("default")) {
        return v.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        Some(t) => t.as_str(),
        None if schema.get("properties").is_some() => Some("object"),
        None => None,
    };
    match ty {
        Some("object") => Value::Object(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, s)| (k.clone(), example_of(s, depth + 1)))
                .collect(),
        ),
        Some("array") => Value::Array(
            schema
                .get("items")
                .map(|i| vec![example_of(i, depth + 1)])
                .unwrap_or_default(),
        ),
        Some("integer") => Value::from(0),
        Some("number") => Value::from(0.0),
        Some("boolean") => Value::Bool(true),
        Some("string") => Value::from("string"),
        _ => Value::Null,
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// An extension's value in words; a rate limit as `100 requests per 1m (burst 20), per header x-user-id`.
fn limit_text(key: &str, v: &Value) -> String {
    let (Some(requests), Some(per)) = (v.get("requests"), v.get("per")) else {
        return scalar_text(v);
    };
    if key != "rate-limit" {
        return scalar_text(v);
    }
    let mut s = format!(
        "{} requests per {}",
        scalar_text(requests),
        scalar_text(per)
    );
    if let Some(b) = v.get("burst") {
        s.push_str(&format!(" (burst {})", scalar_text(b)));
    }
    if let Some((kind, name)) = v
        .get("key")
        .and_then(Value::as_object)
        .and_then(|k| k.iter().next())
    {
        match name {
            Value::Bool(true) => s.push_str(&format!(", per {kind}")),
            other => s.push_str(&format!(", per {kind} {}", scalar_text(other))),
        }
    }
    s
}

/// Strings as they are; anything else as compact JSON.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", scalar_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// `string (uuid)`, `integer`, `array of string`, `one of a | b`.
fn type_summary(s: &Value) -> String {
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        let vals: Vec<String> = e.iter().map(scalar_text).collect();
        return format!("one of {}", vals.join(" | "));
    }
    let ty = match s.get("type") {
        Some(Value::Array(t)) => t.iter().map(scalar_text).collect::<Vec<_>>().join(" or "),
        Some(t) => scalar_text(t),
        None => "any".to_string(),
    };
    match (
        ty.as_str(),
        s.get("format").and_then(Value::as_str),
        s.get("items"),
    ) {
        ("array", _, Some(items)) => format!("array of {}", type_summary(items)),
        (_, Some(f), _) => format!("{ty} ({f})"),
        _ => ty,
    }
}

/// Security requirements in words: `[]` or none means no authentication.
fn auth(doc: &Value, security: Option<&Value>) -> Vec<Vec<String>> {
    let Some(reqs) = security.and_then(Value::as_array) else {
        return Vec::new();
    };
    let schemes = doc.pointer("/components/securitySchemes");
    reqs.iter()
        .filter_map(Value::as_object)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.iter()
                .map(|(name, scopes)| {
                    let scheme = schemes.and_then(|s| s.get(name));
                    let mut text = scheme.map(describe_scheme).unwrap_or_else(|| name.clone());
                    let scopes: Vec<String> = scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(scalar_text)
                        .collect();
                    if !scopes.is_empty() {
                        text.push_str(&format!(" with scopes {}", scopes.join(", ")));
                    }
                    text
                })
                .collect()
        })
        .collect()
}

fn describe_scheme(s: &Value) -> String {
    let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
    let base = match (get("type"), get("scheme").to_ascii_lowercase().as_str()) {
        ("http", "bearer") if !get("bearerFormat").is_empty() => {
            format!(
                "{} bearer token in the Authorization header",
                get("bearerFormat")
            )
        }
        ("http", "bearer") => "Bearer token in the Authorization header".to_string(),
        ("http", "basic") => "HTTP Basic credentials".to_string(),
        ("apiKey", _) => format!("API key in {} `{}`", get("in"), get("name")),
        ("openIdConnect", _) => format!("OpenID Connect ({})", get("openIdConnectUrl")),
        ("oauth2", _) => "OAuth 2 token".to_string(),
        ("mutualTLS", _) => "client certificate (mutual TLS)".to_string(),
        (t, _) => t.to_string(),
    };
    match s.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{base} — {d}"),
        _ => base,
    }
}
