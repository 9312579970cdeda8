//! `gatehouse openapi`: the gateway's public API as one OpenAPI 3.1 document. Rules with an
//! OpenAPI document contribute its operations at the paths clients use (prefixes and rewrites
//! applied); plain rules are described from their match. Hosts become servers, timeouts
//! `x-gatehouse-*` extensions.

use crate::policies::{describe, rule_policies, Policies};
use crate::schema::operations;
use crate::table::{destination, host_labels};
use crate::ContractError;
use gatehouse_config::openapi::OpenApi;
use gatehouse_config::{Action, Config, ListenerProtocol, PathMatch, Route, Rule, ValueMatch};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const ANY_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const COMPONENT_SECTIONS: [&str; 9] = [
    "schemas",
    "parameters",
    "responses",
    "requestBodies",
    "headers",
    "securitySchemes",
    "examples",
    "links",
    "callbacks",
];

struct Builder {
    scheme: &'static str,
    paths: Map<String, Value>,
    components: Map<String, Value>,
    regex_rules: Vec<Value>,
    /// Renamed components per document file: `#/components/schemas/Pet` -> new reference.
    renames: BTreeMap<String, BTreeMap<String, String>>,
    servers: BTreeSet<String>,
    policies: Policies,
    /// Security schemes of the auth policies rules name.
    schemes: Map<String, Value>,
}

/// The document for `config`.
pub(crate) fn document(config: &Config) -> Result<Value, ContractError> {
    let https = config
        .listeners
        .iter()
        .any(|l| l.protocol == ListenerProtocol::HTTPS);
    let mut b = Builder {
        scheme: if https { "https" } else { "http" },
        paths: Map::new(),
        components: Map::new(),
        regex_rules: Vec::new(),
        renames: BTreeMap::new(),
        servers: BTreeSet::new(),
        policies: Policies::of(config),
        schemes: Map::new(),
    };
    for route in &config.routes {
        for rule in &route.rules {
            match rule.openapi.as_deref().or(route.openapi.as_ref()) {
                Some(api) => b.documented(route, rule, api),
                None => b.plain(route, rule),
            }
        }
    }
    let title = config
        .gateway
        .id
        .as_ref()
        .map_or("Gatehouse".to_string(), |id| id.name.clone());
    let servers: Vec<Value> = b.servers.iter().map(|h| server(b.scheme, h)).collect();
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": config.version},
        "servers": servers,
        "paths": b.paths,
    });
    if !b.schemes.is_empty() {
        let target = b
            .components
            .entry("securitySchemes")
            .or_insert_with(|| json!({}));
        for (k, v) in std::mem::take(&mut b.schemes) {
            target[k.as_str()] = v;
        }
    }
    if !b.components.is_empty() {
        doc["components"] = Value::Object(b.components);
    }
    if !b.regex_rules.is_empty() {
        doc["x-gatehouse-regex-rules"] = Value::Array(b.regex_rules);
    }
    Ok(doc)
}

/// A server object for a host label; a wildcard host becomes a server variable.
fn server(scheme: &str, host: &str) -> Value {
    match host.strip_prefix("*.") {
        _ if host == "*" => json!({"url": "/", "description": "any host"}),
        Some(rest) => json!({
            "url": format!("{scheme}://{{subdomain}}.{rest}"),
            "variables": {"subdomain": {"default": "www"}},
        }),
        None => json!({"url": format!("{scheme}://{host}")}),
    }
}

impl Builder {
    fn servers_of(&mut self, route: &Route) -> Value {
        let hosts = host_labels(route);
        self.servers.extend(hosts.iter().cloned());
        Value::Array(hosts.iter().map(|h| server(self.scheme, h)).collect())
    }

    fn extensions(&mut self, op: &mut Value, route: &Route, rule: &Rule) {
        let names = rule_policies(rule);
        describe(&self.policies, &names, op, &mut self.schemes);
        op["x-gatehouse-route"] = json!(route.id.to_string());
        op["x-gatehouse-rule"] = json!(rule.source.to_string());
        if let Some(t) = rule.timeout {
            op["x-gatehouse-timeout"] =
                json!(gatehouse_config::units::DisplayDuration(t).to_string());
        }
    }

    fn insert(&mut self, path: &str, method: &str, op: Value) {
        let item = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}));
        // The first rule in load order describes an operation two rules could claim.
        if item.get(method).is_none() {
            item[method] = op;
        }
    }

    fn documented(&mut self, route: &Route, rule: &Rule, api: &OpenApi) {
        let key = api.file.display().to_string();
        if !self.renames.contains_key(&key) {
            let renames = self.merge_components(route, api);
            self.renames.insert(key.clone(), renames);
        }
        let v30 = is_30(&api.document);
        let servers = self.servers_of(route);
        for ((_, method), o) in operations(rule, api) {
            let mut op = o.op.clone();
            if !o.params.is_empty() {
                op["parameters"] = Value::Array(o.params.clone());
            }
            fix(&mut op, &self.renames[&key], v30);
            op["servers"] = servers.clone();
            self.extensions(&mut op, route, rule);
            self.insert(&o.client_path, &method, op);
        }
    }

    /// Copies the document's components; a name already taken by a different definition gets
    /// the route's name in front, and the document's references follow.
    fn merge_components(&mut self, route: &Route, api: &OpenApi) -> BTreeMap<String, String> {
        let mut renames = BTreeMap::new();
        let Some(comps) = api.document.get("components").and_then(Value::as_object) else {
            return renames;
        };
        for section in COMPONENT_SECTIONS {
            let Some(items) = comps.get(section).and_then(Value::as_object) else {
                continue;
            };
            for (name, v) in items {
                let taken = self
                    .components
                    .get(section)
                    .and_then(|s| s.get(name))
                    .is_some_and(|old| old != v);
                if taken {
                    let new = format!("{}_{name}", route.id.name);
                    renames.insert(
                        format!("#/components/{section}/{name}"),
                        format!("#/components/{section}/{new}"),
                    );
                }
            }
        }
        let v30 = is_30(&api.document);
        for section in COMPONENT_SECTIONS {
            let Some(items) = comps.get(section).and_then(Value::as_object) else {
                continue;
            };
            let target = self
                .components
                .entry(section.to_string())
                .or_insert_with(|| json!({}));
            for (name, v) in items {
                let r = format!("#/components/{section}/{name}");
                let name = renames
                    .get(&r)
                    .and_then(|n| n.rsplit('/').next())
                    .unwrap_or(name);
                let mut v = v.clone();
                fix(&mut v, &renames, v30);
                target[name] = v;
            }
        }
        renames
    }

    fn plain(&mut self, route: &Route, rule: &Rule) {
        let methods: Vec<String> = if rule.methods.is_empty() {
            ANY_METHODS.iter().map(|m| m.to_string()).collect()
        } else {
            rule.methods
                .iter()
                .map(|m| m.to_ascii_lowercase())
                .collect()
        };
        let servers = self.servers_of(route);
        let mut op = json!({
            "summary": destination(rule),
            "parameters": condition_params(rule),
            "responses": responses(rule),
            "servers": servers,
        });
        self.extensions(&mut op, route, rule);
        let path = match &rule.path {
            PathMatch::Exact(p) => p.clone(),
            PathMatch::Prefix(p) => {
                op["x-gatehouse-match"] = json!("prefix");
                op["description"] = json!(format!("`{p}` and every path below it."));
                p.clone()
            }
            PathMatch::Regex(re) => {
                op["x-gatehouse-match"] = json!({"regex": re.1});
                op["x-gatehouse-methods"] = json!(methods);
                self.regex_rules.push(op);
                return;
            }
        };
        for m in &methods {
            self.insert(&path, m, op.clone());
        }
    }
}

/// Header and query conditions as required parameters.
fn condition_params(rule: &Rule) -> Value {
    let mut out = Vec::new();
    for (within, list) in [("header", &rule.headers), ("query", &rule.query)] {
        for kv in list {
            let schema = match &kv.value {
                ValueMatch::Present => json!({"type": "string"}),
                ValueMatch::Exact(v) => json!({"type": "string", "enum": [v]}),
                ValueMatch::Regex(r) => json!({"type": "string", "pattern": r.1}),
            };
            out.push(json!({"name": kv.name, "in": within, "required": true, "schema": schema}));
        }
    }
    Value::Array(out)
}

fn responses(rule: &Rule) -> Value {
    match &rule.action {
        Action::Forward(_) => json!({"default": {"description": "The backend's response."}}),
        Action::Redirect(r) => json!({ r.status.to_string(): {
            "description": "Redirect.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        }}),
        Action::Direct(d) => json!({ d.status.to_string(): {
            "description": "A fixed response from the gateway.",
            "content": {d.content_type.clone(): {"example": d.body}},
        }}),
    }
}

fn is_30(doc: &Value) -> bool {
    doc.get("openapi")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("3.0"))
}

/// Rewrites renamed references and, for a 3.0 document, the schema keywords 3.1 spells
/// differently (`nullable`, boolean `exclusiveMinimum`/`exclusiveMaximum`).
fn fix(v: &mut Value, renames: &BTreeMap<String, String>, v30: bool) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(n) = renames.get(r.as_str()) {
                    *r = n.clone();
                }
            }
            if v30 {
                upgrade_schema(m);
            }
            m.values_mut().for_each(|x| fix(x, renames, v30));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fix(x, renames, v30)),
        _ => {}
    }
}

fn upgrade_schema(m: &mut Map<String, Value>) {
    if m.get("nullable").and_then(Value::as_bool).is_some() {
        let nullable = m.remove("nullable").and_then(|v| v.as_bool()) == Some(true);
        if let (true, Some(Value::String(t))) = (nullable, m.get("type").cloned()) {
            m.insert("type".into(), json!([t, "null"]));
        }
    }
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(Value::Bool(b)) = m.get(flag).cloned() {
            m.remove(flag);
            if b {
                if let Some(n) = m.remove(bound) {
                    m.insert(flag.into(), n);
                }
            }
        }
    }
}
