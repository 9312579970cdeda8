//! Config flow, steps 1-2 driver: files -> documents -> typed objects, every error collected.

use crate::de::{from_node, Collected, DeError};
use crate::error::{hint, ConfigError, ConfigErrors};
use crate::model::{Config, ObjectId};
use crate::openapi::Documents;
use crate::raw::{
    BackendSpec, GatewaySpec, ListenerSpec, Metadata, PolicySpec, RolloutSpec, RouteSpec,
};
use crate::yaml::{parse_documents, Mark, Node, Value};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The one `apiVersion` this build understands.
pub const API_VERSION: &str = "gatehouse.dev/v1alpha1";

const KINDS: [&str; 6] = [
    "Gateway", "Listener", "Backend", "Route", "Policy", "Rollout",
];
/// Kinds of the contract this build does not serve yet (none today).
const LATER_KINDS: [&str; 0] = [];
const TOP_FIELDS: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// One file's name (as shown in errors) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Name shown in errors.
    pub name: String,
    /// Contents.
    pub text: String,
}

/// Whether a file name has a manifest extension: `.yaml`, `.yml` or `.json`, in any case, so that
/// `gw.YAML` written on a case-insensitive file system is loaded rather than silently skipped.
pub fn is_manifest_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["yaml", "yml", "json"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// A problem with a whole file or directory, which has no line to point at.
fn file_error(p: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: p.display().to_string().into(),
        mark: Mark { line: 0, col: 0 },
        object: String::new(),
        path: String::new(),
        message,
    }])
}

/// The manifests under `path`: the file itself, or every `*.yaml`, `*.yml`, `*.json` (any case)
/// below a directory, recursively, in path order (which is the load order that breaks routing
/// ties). A directory without any manifest is an error: serving nothing is never what was meant.
pub fn collect_files(path: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let io_err = |p: &Path, e: std::io::Error| file_error(p, format!("cannot read: {e}"));
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let p = entry.map_err(|e| io_err(&dir, e))?.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if is_manifest_file(&p) {
                out.push(p);
            }
        }
    }
    if out.is_empty() {
        return Err(file_error(
            path,
            "no manifests found: expected `*.yaml`, `*.yml` or `*.json` files in this directory or below".into(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Loads a file or a directory of manifests.
pub fn load_path(path: &Path) -> Result<Config, ConfigErrors> {
    let mut sources = Vec::new();
    for file in collect_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.display().to_string().into(),
                mark: Mark::default(),
                object: String::new(),
                path: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        sources.push(SourceFile {
            name: file.display().to_string(),
            text,
        });
    }
    load_sources(&sources)
}

/// A document that passed the structural checks, waiting for validation.
pub(crate) struct Object<'a> {
    pub id: ObjectId,
    pub ctx: Ctx<'a>,
    pub spec: Spec,
}

pub(crate) enum Spec {
    // Boxed but for Routes, the many: an `Object` is as large as its largest variant.
    Gateway(Box<GatewaySpec>),
    Listener(Box<ListenerSpec>),
    Backend(Box<BackendSpec>),
    Route(RouteSpec),
    Policy(Box<PolicySpec>),
    Rollout(Box<RolloutSpec>),
}

impl Spec {
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Gateway(_) => "Gateway",
            Spec::Listener(_) => "Listener",
            Spec::Backend(_) => "Backend",
            Spec::Route(_) => "Route",
            Spec::Policy(_) => "Policy",
            Spec::Rollout(_) => "Rollout",
        }
    }
}

/// Where a document is, to turn a field path into an error with a position.
#[derive(Clone)]
pub(crate) struct Ctx<'a> {
    pub file: Arc<str>,
    /// The document's tree, which locates the field of an error. `None` on the pass that reads
    /// a config expected to be valid, which drops each tree once read: the first error there
    /// makes the load start again with every tree kept (see [`load_sources`]).
    doc: Option<&'a Node<'a>>,
    /// Where the document starts.
    pub at: Mark,
    /// Where each of `spec.rules` starts (Routes), and where the list (or what holds it) does:
    /// every rule records its definition site, also on the pass without trees.
    rules: Box<[Mark]>,
    rules_at: Mark,
    pub object: String,
}

impl<'a> Ctx<'a> {
    fn new(file: &Arc<str>, doc: &'a Node<'a>) -> Self {
        Ctx {
            file: file.clone(),
            doc: Some(doc),
            at: doc.mark,
            rules: Box::default(),
            rules_at: doc.mark,
            object: String::new(),
        }
    }

    /// Records where `spec.rules[i]` are, as [`locate`] would find them.
    fn record_rules(&mut self, doc: &Node) {
        let Some(spec) = doc.get("spec") else { return };
        self.rules_at = spec.mark;
        let Some(rules) = spec.get("rules") else {
            return;
        };
        self.rules_at = rules.mark;
        if let Value::Seq(items) = &rules.value {
            self.rules = items.iter().map(|r| r.mark).collect();
        }
    }

    /// The same context without the tree, which the caller is about to drop.
    fn detached<'b>(self) -> Ctx<'b> {
        Ctx {
            file: self.file,
            doc: None,
            at: self.at,
            rules: self.rules,
            rules_at: self.rules_at,
            object: self.object,
        }
    }
}

impl Ctx<'_> {
    /// An error at `path` (located at the deepest node of the path that exists).
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            mark: self.mark(path),
            object: self.object.clone(),
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// Where `path` is; without the tree, where the document starts (an error is never reported
    /// from that pass).
    pub fn mark(&self, path: &str) -> Mark {
        self.doc.map_or(self.at, |doc| locate(doc, path))
    }

    /// The mark of `spec.rules[index]`, as [`Self::mark`] finds it, without a path to format and
    /// parse (every rule of every route records its definition site).
    pub fn rule_mark(&self, index: usize) -> Mark {
        self.rules.get(index).copied().unwrap_or(self.rules_at)
    }
}

/// The position of the deepest node along `path` (`spec.rules[0].backends[1].backend`).
fn locate(doc: &Node, path: &str) -> Mark {
    let mut node = doc;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indexes) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        match node.get(key) {
            Some(n) => node = n,
            None => return node.mark,
        }
        for idx in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let Ok(i) = idx.parse::<usize>() else {
                return node.mark;
            };
            match &node.value {
                Value::Seq(items) if i < items.len() => node = &items[i],
                _ => return node.mark,
            }
        }
    }
    node.mark
}

fn de_error(file: &Arc<str>, object: &str, e: DeError, doc: &Node) -> ConfigError {
    ConfigError {
        file: file.clone(),
        mark: e.mark.unwrap_or(doc.mark),
        object: object.to_string(),
        path: e.path,
        message: e.message,
    }
}

/// Loads manifests from memory (the files' names are only used in errors).
///
/// A config is first read expecting it to be valid, one document at a time, each tree dropped
/// once its object is read: a 10,000-route file's trees held ~15 MB that every reload allocated
/// afresh, only for error positions. The first error ends that pass, and the config is read
/// again with every tree kept until validation ends, so that each error points at its field
/// (an invalid config costs two reads; a valid one, the one).
pub fn load_sources(sources: &[SourceFile]) -> Result<Config, ConfigErrors> {
    // The OpenAPI documents read on the first pass are not read again on the second.
    let mut openapi = crate::openapi::Documents::default();
    match load_streaming(sources, &mut openapi) {
        Some(config) => Ok(config),
        None => load_with_trees(sources, &mut openapi),
    }
}

/// The pass for a valid config; `None` at the first error of any kind.
fn load_streaming(sources: &[SourceFile], openapi: &mut Documents) -> Option<Config> {
    let mut errors = Vec::new();
    // Sized up front (a `---` line starts most documents): a vector of 10,000 objects grown by
    // doubling copied them all about twice.
    let markers: usize = (sources.iter())
        .map(|s| memchr::memmem::find_iter(s.text.as_bytes(), "\n---").count() + 1)
        .sum();
    let mut objects = Vec::with_capacity(markers);
    let mut declared = Vec::with_capacity(markers);
    let mut any = false;
    for src in sources {
        let file: Arc<str> = src.name.as_str().into();
        crate::yaml::for_each_document(&src.text, |doc| {
            any = true;
            if crate::openapi::is_openapi_document(&doc) || !errors.is_empty() {
                return;
            }
            if let Some(obj) = read_document(&file, &doc, &mut errors, &mut declared) {
                objects.push(Object {
                    ctx: obj.ctx.detached(),
                    ..obj
                });
            }
        })
        .ok()?;
        if !errors.is_empty() {
            return None;
        }
    }
    if !any {
        return None;
    }
    let config = finish(sources, objects, &declared, &mut errors, openapi);
    errors.is_empty().then_some(config)
}

/// The pass that reports errors: every tree is kept until validation ends.
fn load_with_trees(
    sources: &[SourceFile],
    openapi: &mut Documents,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut parsed: Vec<(Arc<str>, Vec<Node>)> = Vec::new();
    for src in sources {
        let file: Arc<str> = src.name.as_str().into();
        match parse_documents(&src.text) {
            Ok(docs) => parsed.push((file, docs)),
            Err(e) => errors.push(ConfigError {
                file,
                mark: e.mark,
                object: String::new(),
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
            }),
        }
    }
    if errors.is_empty() && parsed.iter().all(|(_, docs)| docs.is_empty()) {
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        errors.push(ConfigError {
            file: if names.is_empty() {
                "<no files>".into()
            } else {
                names.join(", ").into()
            },
            mark: Mark::default(),
            object: String::new(),
            path: String::new(),
            message: "no manifests found: the files hold no YAML documents".into(),
        });
    }
    let mut objects = Vec::new();
    let mut declared = Vec::new();
    for (file, docs) in &parsed {
        // OpenAPI documents named by `openapi: {file}` may sit among the manifests.
        for doc in docs
            .iter()
            .filter(|d| !crate::openapi::is_openapi_document(d))
        {
            if let Some(obj) = read_document(file, doc, &mut errors, &mut declared) {
                objects.push(obj);
            }
        }
    }
    let config = finish(sources, objects, &declared, &mut errors, openapi);
    if errors.is_empty() {
        return Ok(config);
    }
    let order: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let pos = |f: &str| order.iter().position(|o| *o == f).unwrap_or(usize::MAX);
    errors.sort_by(|a, b| {
        (pos(&a.file), a.mark.line, a.mark.col).cmp(&(pos(&b.file), b.mark.line, b.mark.col))
    });
    errors.dedup();
    Err(ConfigErrors(errors))
}

/// Steps 3-4 on the objects read: validation, then the checks across rules.
fn finish(
    sources: &[SourceFile],
    objects: Vec<Object>,
    declared: &[(&'static str, ObjectId)],
    errors: &mut Vec<ConfigError>,
    openapi: &mut Documents,
) -> Config {
    let version = version_of(sources);
    let mut config = crate::validate::validate(objects, declared, errors, openapi);
    config.version = version;
    config.sources = sources.iter().map(|s| s.name.clone()).collect();
    crate::rules::check(&config, errors);
    config
}

fn version_of(sources: &[SourceFile]) -> String {
    // xxh3: stable across builds and platforms, unlike std's hasher, and ~20 times faster than
    // the byte-at-a-time FNV-1a it replaced (~3 ms for a 2 MB config).
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for s in sources {
        h.update(s.name.as_bytes());
        h.update(&[0]);
        h.update(s.text.as_bytes());
        h.update(&[0]);
    }
    format!("{:016x}", h.digest())
}

/// Reads one document. `declared` gets its kind and id even when its spec is invalid, so that
/// references to it do not cascade into more errors.
fn read_document<'a>(
    file: &Arc<str>,
    doc: &'a Node<'a>,
    errors: &mut Vec<ConfigError>,
    declared: &mut Vec<(&'static str, ObjectId)>,
) -> Option<Object<'a>> {
    let mut ctx = Ctx::new(file, doc);
    let Value::Map(entries) = &doc.value else {
        errors.push(ctx.error(
            "",
            format!("expected a manifest (a mapping), found {}", doc.kind_name()),
        ));
        return None;
    };
    // `doc.get` takes the first of repeated keys: the repeats are reported where they are written.
    let repeated: Vec<(&Node, &Node)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, (k, _))| {
            let first = entries[..i]
                .iter()
                .find(|(f, _)| f.as_str() == k.as_str())?;
            Some((k, &first.0))
        })
        .collect();
    let unknown_top: Vec<&Node> = entries
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !TOP_FIELDS.contains(&k.as_str().unwrap_or("")))
        .collect();
    let report_unknown_top = |ctx: &Ctx, errors: &mut Vec<ConfigError>| {
        for (k, first) in &repeated {
            let name = k.as_str().unwrap_or("");
            let message = format!(
                "duplicate key `{name}`, first written at line {} column {}",
                first.mark.line, first.mark.col
            );
            errors.push(ConfigError {
                mark: k.mark,
                ..ctx.error(name, message)
            });
        }
        for k in &unknown_top {
            let name = k.as_str().unwrap_or("");
            errors.push(ConfigError {
                mark: k.mark,
                ..ctx.error(
                    name,
                    format!("unknown field `{name}`{}", hint(name, TOP_FIELDS)),
                )
            });
        }
    };
    match doc.get("apiVersion").map(|n| (n.as_str(), n)) {
        None => errors.push(ctx.error(
            "",
            format!("missing field `apiVersion` (expected `{API_VERSION}`)"),
        )),
        Some((Some(API_VERSION), _)) => {}
        Some((v, _)) => errors.push(ctx.error(
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`, expected `{API_VERSION}`",
                v.unwrap_or("?")
            ),
        )),
    }
    let kind: &'static str = match doc.get("kind").and_then(Node::as_str) {
        None => {
            report_unknown_top(&ctx, errors);
            errors.push(ctx.error(
                "kind",
                format!("missing field `kind` (one of {})", KINDS.join(", ")),
            ));
            return None;
        }
        Some(k) if KINDS.contains(&k) => KINDS.into_iter().find(|x| *x == k).unwrap_or("Route"),
        Some(k) if LATER_KINDS.contains(&k) => {
            report_unknown_top(&ctx, errors);
            errors.push(ctx.error(
                "kind",
                format!("kind `{k}` is not supported by this version of Gatehouse"),
            ));
            return None;
        }
        Some(k) => {
            report_unknown_top(&ctx, errors);
            errors.push(ctx.error(
                "kind",
                format!(
                    "unknown kind `{k}`, expected one of {}{}",
                    KINDS.join(", "),
                    hint(k, KINDS)
                ),
            ));
            return None;
        }
    };
    let soft = RefCell::new(Collected::default());
    let meta = match doc.get("metadata") {
        None => {
            report_unknown_top(&ctx, errors);
            errors.push(ctx.error("", "missing field `metadata`"));
            return None;
        }
        Some(n) => match from_node::<Metadata>(n, "metadata", &soft) {
            Ok(m) => m,
            Err(e) => {
                report_unknown_top(&ctx, errors);
                errors.push(de_error(file, kind, e, doc));
                return None;
            }
        },
    };
    let written_namespace = meta.namespace.is_some();
    let id = ObjectId {
        namespace: meta.namespace.unwrap_or_else(|| "default".into()),
        name: meta.name,
    };
    ctx.object = object_name(kind, &id);
    if kind == "Route" {
        ctx.record_rules(doc);
    }
    report_unknown_top(&ctx, errors);
    for (field, value) in [
        ("metadata.name", Some(&id.name)),
        (
            "metadata.namespace",
            Some(&id.namespace).filter(|_| written_namespace),
        ),
    ] {
        if let Some(v) = value {
            if !valid_name(v) {
                errors.push(ctx.error(
                    field,
                    format!("invalid name `{v}`: use lowercase letters, digits, `-` and `.` (at most 253)"),
                ));
            }
        }
    }
    let empty = Node {
        value: Value::Map(Vec::new()),
        mark: doc.mark,
    };
    let spec_node = doc.get("spec").unwrap_or(&empty);
    let spec = match kind {
        "Gateway" => from_node(spec_node, "spec", &soft).map(|s| Spec::Gateway(Box::new(s))),
        "Listener" => from_node(spec_node, "spec", &soft).map(|s| Spec::Listener(Box::new(s))),
        "Backend" => from_node(spec_node, "spec", &soft).map(|s| Spec::Backend(Box::new(s))),
        "Policy" => from_node(spec_node, "spec", &soft).map(|s| Spec::Policy(Box::new(s))),
        "Rollout" => from_node(spec_node, "spec", &soft).map(|s| Spec::Rollout(Box::new(s))),
        _ => from_node(spec_node, "spec", &soft).map(Spec::Route),
    };
    for e in soft.into_inner().errors {
        errors.push(de_error(file, &ctx.object, e, doc));
    }
    declared.push((kind, id.clone()));
    match spec {
        Ok(spec) => Some(Object { id, ctx, spec }),
        Err(e) => {
            errors.push(de_error(file, &ctx.object, e, doc));
            None
        }
    }
}

/// `Kind namespace/name`, as errors name an object: built with `push_str`, since `format!` for each
/// of 10,000 documents was ~3 % of a `check`.
fn object_name(kind: &str, id: &ObjectId) -> String {
    let mut s = String::with_capacity(kind.len() + id.namespace.len() + id.name.len() + 2);
    s.push_str(kind);
    s.push(' ');
    id.push_to(&mut s);
    s
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
}

#[cfg(test)]
mod tests;
