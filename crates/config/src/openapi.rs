//! Config flow, step 4 (a side branch of `validate`): the OpenAPI document a rule or a Route names
//! (`openapi: {file}`), read, parsed and checked against the rule's match at load and reload time.
//!
//! The document is kept as a `serde_json::Value` (OpenAPI 3.0 and 3.1 differ in their schema
//! dialect; the `gatehouse-contract` crate interprets only the parts it needs), with the line of
//! every path and operation so that later reports (the `diff`) can point into it.
//!
//! A document is read and parsed once per load however many rules name it ([`Documents`]).

use crate::loader::Ctx;
use crate::model::{PathMatch, PathRewrite, Rule};
use crate::yaml::{parse_documents, Mark, Node, Value};
use crate::ConfigError;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// `openapi` as written on a rule or a Route spec.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct OpenApiSpec {
    pub file: String,
    #[serde(default)]
    pub validate_requests: bool,
}

/// The OpenAPI document describing the API behind a rule or a Route.
#[derive(Debug, Clone)]
pub struct OpenApi {
    /// The file, relative paths joined to the manifest's folder.
    pub file: PathBuf,
    /// The document as JSON (YAML documents converted with the YAML 1.2 core schema).
    pub document: Arc<serde_json::Value>,
    /// Position in `file` of each path (`/pets`) and operation (`/pets get`).
    pub lines: Arc<BTreeMap<String, Mark>>,
    /// Whether requests are validated against the document (`validateRequests`).
    pub validate_requests: bool,
    /// A content hash of `file` and the bytes read from it (see `digest` below), so a reload can
    /// tell an unchanged document without comparing parsed trees.
    pub digest: u64,
}

impl OpenApi {
    /// `file:line` of a path, or of one of its operations when `method` is given (lowercase).
    pub fn location(&self, path: &str, method: Option<&str>) -> String {
        let key = match method {
            Some(m) => format!("{path} {m}"),
            None => path.to_string(),
        };
        let line = self.lines.get(&key).or_else(|| self.lines.get(path));
        match line {
            Some(m) => format!("{}:{}", self.file.display(), m.line),
            None => self.file.display().to_string(),
        }
    }
}

// The admin API's `/config` shows where the document is, not the document itself.
impl Serialize for OpenApi {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("OpenApi", 2)?;
        st.serialize_field("file", &self.file.display().to_string())?;
        st.serialize_field("validateRequests", &self.validate_requests)?;
        st.end()
    }
}

/// The methods an OpenAPI path item may hold operations for, lowercase as the spec writes them.
pub const OPERATION_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Whether a parsed document is an OpenAPI (or Swagger) document rather than a manifest: such
/// documents may sit in the config directory beside the manifests that name them.
pub(crate) fn is_openapi_document(doc: &Node) -> bool {
    doc.get("apiVersion").is_none()
        && (doc.get("openapi").is_some() || doc.get("swagger").is_some())
}

/// A YAML node as JSON, by the YAML 1.2 core schema (plain `true`, `null`, numbers are typed).
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Scalar(s, true) => J::String(s.to_string()),
        Value::Scalar(s, false) => match &**s {
            "" | "~" | "null" | "Null" | "NULL" => J::Null,
            "true" | "True" | "TRUE" => J::Bool(true),
            "false" | "False" | "FALSE" => J::Bool(false),
            _ => {
                if let Ok(i) = s.parse::<i64>() {
                    J::from(i)
                } else if let Some(f) = s
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && s.bytes().any(|b| b.is_ascii_digit()))
                {
                    J::from(f)
                } else {
                    J::String(s.to_string())
                }
            }
        },
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

/// What a document yields whatever rule names it: read, parsed and checked once per load.
#[derive(Debug)]
enum Read {
    /// A usable document: what every [`OpenApi`] naming the file shares (the `Arc`s, not copies).
    Usable {
        document: Arc<serde_json::Value>,
        lines: Arc<BTreeMap<String, Mark>>,
        digest: u64,
    },
    /// The file could not be read: the message, reported at the naming rule's `file` field.
    Unreadable(String),
    /// The file is not a usable OpenAPI 3 document: the errors, located in the document.
    Invalid(Vec<(Mark, String)>),
}

/// The OpenAPI documents read during one load, by file (relative paths joined to the manifest's
/// folder). Owned by one load (both its passes, see `loader::load_sources`) and dropped with it, so
/// a reload always reads the files afresh; within the load, 10,000 routes validating against one
/// document read and parse it once instead of 10,000 times.
#[derive(Debug, Default)]
pub(crate) struct Documents {
    by_file: HashMap<PathBuf, Read>,
}

#[cfg(test)]
thread_local! {
    /// Files read by [`read`] on this thread, for the tests that check a document is read once.
    pub(crate) static READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Reads and checks the document `spec` names; errors are pushed, `None` when unusable. A file
/// already read in this load (`docs`) is not read again; its errors are reported for every rule
/// naming it, each with that rule's object and field path, as if it had been read again.
pub(crate) fn load(
    ctx: &Ctx,
    at: &str,
    spec: &OpenApiSpec,
    docs: &mut Documents,
    errors: &mut Vec<ConfigError>,
) -> Option<OpenApi> {
    let file = crate::validate::relative_to_manifest(ctx, &spec.file);
    let field = format!("{at}.file");
    let read = docs
        .by_file
        .entry(file.clone())
        .or_insert_with(|| read(&file));
    match read {
        Read::Usable {
            document,
            lines,
            digest,
        } => Some(OpenApi {
            document: document.clone(),
            lines: lines.clone(),
            validate_requests: spec.validate_requests,
            digest: *digest,
            file,
        }),
        Read::Unreadable(message) => {
            errors.push(ctx.error(&field, message.clone()));
            None
        }
        Read::Invalid(found) => {
            let name: Arc<str> = file.display().to_string().into();
            errors.extend(found.iter().map(|(mark, message)| ConfigError {
                file: name.clone(),
                mark: *mark,
                object: ctx.object.clone(),
                path: field.clone(),
                message: message.clone(),
            }));
            None
        }
    }
}

/// Reads, parses and checks the document at `file`, independently of the rules naming it.
fn read(file: &std::path::Path) -> Read {
    #[cfg(test)]
    READS.with(|r| r.set(r.get() + 1));
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return Read::Unreadable(format!("cannot read `{}`: {e}", file.display())),
    };
    let docs = match parse_documents(&text) {
        Ok(d) => d,
        Err(e) => {
            let message = format!("invalid OpenAPI document: {}", e.message);
            return Read::Invalid(vec![(e.mark, message)]);
        }
    };
    let Some(doc) = docs.first() else {
        let message = "the OpenAPI document is empty".to_string();
        return Read::Invalid(vec![(Mark::default(), message)]);
    };
    let version = doc.get("openapi").and_then(Node::as_str).unwrap_or("");
    if !(version.starts_with("3.0") || version.starts_with("3.1")) {
        let found = match doc.get("swagger") {
            Some(_) => "Swagger 2.0: convert it to OpenAPI 3 first".to_string(),
            None => format!("`openapi: {version}`"),
        };
        return Read::Invalid(vec![(
            doc.get("openapi").map_or(doc.mark, |n| n.mark),
            format!("expected an OpenAPI 3.0 or 3.1 document, found {found}"),
        )]);
    }
    let mut found = Vec::new();
    match path_marks(doc, &mut found) {
        Some(lines) if found.is_empty() => Read::Usable {
            document: Arc::new(to_json(doc)),
            lines: Arc::new(lines),
            digest: digest(file, &text),
        },
        _ => Read::Invalid(found),
    }
}

/// The content hash of a document read from `file`: equal hashes mean the same path and bytes,
/// hence the same parsed document (up to collisions, as for the gateway's rule fingerprints).
/// Local `$ref`s point into the same file, so every schema the document references is covered.
fn digest(file: &std::path::Path, text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    file.hash(&mut h);
    text.hash(&mut h);
    h.finish()
}

/// The position of every path and operation of the document; errors for malformed `paths`.
fn path_marks(doc: &Node, errors: &mut Vec<(Mark, String)>) -> Option<BTreeMap<String, Mark>> {
    let mut lines = BTreeMap::new();
    let Some(paths) = doc.get("paths") else {
        return Some(lines);
    };
    let Value::Map(entries) = &paths.value else {
        errors.push((paths.mark, "`paths` must be a mapping".into()));
        return None;
    };
    for (k, v) in entries {
        let p = k.as_str().unwrap_or_default();
        if !p.starts_with('/') {
            errors.push((k.mark, format!("path `{p}` must start with `/`")));
            continue;
        }
        lines.insert(p.to_string(), k.mark);
        if let Value::Map(ops) = &v.value {
            for (m, _) in ops {
                let m = m.as_str().unwrap_or_default();
                if OPERATION_METHODS.contains(&m) {
                    lines.insert(format!("{p} {m}"), m_mark(ops, m));
                }
            }
        }
    }
    Some(lines)
}

fn m_mark(ops: &[(Node, Node)], m: &str) -> Mark {
    ops.iter()
        .find(|(k, _)| k.as_str() == Some(m))
        .map_or(Mark::default(), |(k, _)| k.mark)
}

/// The path a client sends for the document path `doc_path` of `rule`: the rule's prefix rewrite
/// undone. `None` when the path is outside what the rewrite produces. A regex rewrite cannot be
/// undone in general: the document path is taken as the client path.
pub fn client_path(rule: &Rule, doc_path: &str) -> Option<String> {
    let Some(PathRewrite::Prefix(to)) = rule.rewrite.path.as_deref() else {
        return Some(doc_path.to_string());
    };
    let to = to.trim_end_matches('/');
    let rest = if to.is_empty() {
        doc_path
    } else if doc_path == to {
        ""
    } else {
        doc_path.strip_prefix(to).filter(|r| r.starts_with('/'))?
    };
    let from = match &rule.path {
        PathMatch::Prefix(p) | PathMatch::Exact(p) => p.trim_end_matches('/'),
        PathMatch::Regex(_) => return Some(doc_path.to_string()),
    };
    Some(match (from, rest) {
        ("", "") => "/".to_string(),
        ("", r) => r.to_string(),
        (f, r) => format!("{f}{r}"),
    })
}

/// A concrete path for a path template: every `{name}` becomes `sample`.
pub fn sample_path(template: &str, sample: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str(sample);
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether the rule's path condition accepts a client path template (its parameters filled in).
pub fn path_matches(rule: &Rule, template: &str) -> bool {
    ["1", "x"].iter().any(|s| {
        let p = sample_path(template, s);
        match &rule.path {
            PathMatch::Exact(e) => p == *e,
            PathMatch::Prefix(pre) => {
                pre == "/"
                    || p == *pre
                    || p.strip_prefix(pre.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
            PathMatch::Regex(re) => re.0.is_match(&p),
        }
    })
}

/// Errors for the document paths that clients could not reach through `rules`: every path, its
/// rewrite undone, must fall inside the match of at least one of them.
pub(crate) fn check_paths(ctx: &Ctx, at: &str, api: &OpenApi, rules: &[&Rule]) -> Vec<ConfigError> {
    let Some(paths) = api.document.get("paths").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in paths.keys() {
        let reachable = rules.iter().any(|r| {
            client_path(r, p).is_some_and(|c| {
                matches!(r.rewrite.path.as_deref(), Some(PathRewrite::Regex(..)))
                    || path_matches(r, &c)
            })
        });
        if !reachable {
            let what = match rules {
                [r] => match (r.rewrite.path.as_deref(), &r.path) {
                    (Some(PathRewrite::Prefix(to)), _) => {
                        format!("outside the rule's rewrite target `{to}`")
                    }
                    (_, PathMatch::Exact(e)) => format!("not the rule's exact path `{e}`"),
                    (_, PathMatch::Prefix(pre)) => format!("outside the rule's prefix `{pre}`"),
                    (_, PathMatch::Regex(re)) => {
                        format!("not matched by the rule's regex `{}`", re.1)
                    }
                },
                _ => "outside every rule's match".to_string(),
            };
            out.push(ConfigError {
                file: api.file.display().to_string().into(),
                mark: api.lines.get(p.as_str()).copied().unwrap_or_default(),
                object: ctx.object.clone(),
                path: format!("{at}.file: paths.{p}"),
                message: format!("path `{p}` is {what}: clients could not reach it"),
            });
        }
    }
    out
}

/// Loads the documents of a Route's rules (`spec.rules[i].openapi`) and of the Route itself
/// (`spec.openapi`), checking each against the rules it describes.
pub(crate) fn attach(
    ctx: &Ctx,
    spec: &crate::raw::RouteSpec,
    mut rules: Vec<Rule>,
    docs: &mut Documents,
    errors: &mut Vec<ConfigError>,
) -> (Vec<Rule>, Option<OpenApi>) {
    for (i, r) in spec.rules.iter().enumerate() {
        let Some(o) = &r.openapi else { continue };
        // Rules with errors were left out of `rules`: find this one by where it was written.
        let mark = ctx.rule_mark(i);
        let Some(rule) = rules.iter_mut().find(|x| x.source.mark() == mark) else {
            continue;
        };
        let at = format!("spec.rules[{i}].openapi");
        if let Some(api) = load(ctx, &at, o, docs, errors) {
            errors.extend(check_paths(ctx, &at, &api, &[&*rule]));
            rule.openapi = Some(Box::new(api));
        }
    }
    let api = spec
        .openapi
        .as_ref()
        .and_then(|o| load(ctx, "spec.openapi", o, docs, errors));
    if let Some(api) = &api {
        let refs: Vec<&Rule> = rules.iter().collect();
        errors.extend(check_paths(ctx, "spec.openapi", api, &refs));
    }
    (rules, api)
}

#[cfg(test)]
mod tests;
