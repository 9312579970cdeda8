//! Config flow, step 4 (`openapi`), tested through `load_sources`: a document named by many
//! routes is read and parsed once per load, and its errors still reach every route naming it.

use super::READS;
use crate::{load_sources, Config, ConfigErrors, SourceFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A folder of its own for one test's documents, removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("gatehouse-oas-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("a temporary folder");
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("a document written");
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BASE: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: a}
spec: {endpoints: ["127.0.0.1:9001"]}
"#;

const PETS: &str = r#"
openapi: 3.0.3
info: {title: pets, version: '1'}
paths:
  /api/pets:
    get: {responses: {'200': {description: ok}}}
  /api/pets/{id}:
    get: {responses: {'200': {description: ok}}}
"#;

/// `n` routes, route `i` under `/r{i}` rewritten to `/api` and validated against `doc(i)`.
fn routes(n: usize, doc: impl Fn(usize) -> &'static str) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: r{i}}}
spec:
  rules:
    - match: {{path: {{prefix: /r{i}}}}}
      rewrite: {{pathPrefix: /api}}
      backends: [{{backend: a}}]
      openapi: {{file: {}, validateRequests: true}}
"#,
                doc(i)
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Loads `routes` as `dir/routes.yaml` (documents resolve against `dir`); the files read.
fn load(dir: &Path, routes: &str) -> (Result<Config, ConfigErrors>, usize) {
    let sources = [
        SourceFile {
            name: dir.join("base.yaml").display().to_string(),
            text: BASE.into(),
        },
        SourceFile {
            name: dir.join("routes.yaml").display().to_string(),
            text: routes.into(),
        },
    ];
    // The counter is per thread and the whole load runs on this one: other tests cannot add to it.
    READS.with(|r| r.set(0));
    let result = load_sources(&sources);
    (result, READS.with(|r| r.get()))
}

fn api(c: &Config, route: usize) -> &super::OpenApi {
    c.routes[route].rules[0]
        .openapi
        .as_ref()
        .unwrap_or_else(|| panic!("route {route} has no document"))
}

#[test]
fn a_document_named_by_500_routes_is_read_once() {
    let dir = Dir::new("one");
    dir.write("pets.yaml", PETS);
    let (config, reads) = load(&dir.0, &routes(500, |_| "pets.yaml"));
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reads, 1);
    assert_eq!(config.routes.len(), 500);
    let first = api(&config, 0);
    assert_eq!(first.file, dir.0.join("pets.yaml"));
    assert!(first.validate_requests);
    assert!(first
        .location("/api/pets", Some("get"))
        .ends_with("pets.yaml:6"));
    for i in 0..500 {
        let a = api(&config, i);
        assert_eq!(a.file, first.file);
        assert_eq!(a.digest, first.digest);
        assert!(Arc::ptr_eq(&a.document, &first.document), "route {i}");
        assert!(Arc::ptr_eq(&a.lines, &first.lines), "route {i}");
    }
    assert_eq!(
        first.document["paths"].as_object().map(|p| p.len()),
        Some(2)
    );
}

#[test]
fn two_documents_are_read_twice() {
    let dir = Dir::new("two");
    dir.write("pets.yaml", PETS);
    dir.write("more.yaml", &PETS.replace("title: pets", "title: more"));
    let doc = |i: usize| {
        if i.is_multiple_of(2) {
            "pets.yaml"
        } else {
            "more.yaml"
        }
    };
    let (config, reads) = load(&dir.0, &routes(500, doc));
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reads, 2);
    let (pets, more) = (api(&config, 0), api(&config, 1));
    assert_ne!(pets.digest, more.digest);
    assert_eq!(more.document["info"]["title"], "more");
    for i in 0..500 {
        let same = if doc(i) == "pets.yaml" { pets } else { more };
        assert_eq!(api(&config, i).digest, same.digest, "route {i}");
        assert!(Arc::ptr_eq(&api(&config, i).document, &same.document));
    }
}

#[test]
fn every_load_reads_the_document_afresh() {
    let dir = Dir::new("reload");
    dir.write("pets.yaml", PETS);
    let text = routes(3, |_| "pets.yaml");
    let (first, reads) = load(&dir.0, &text);
    assert_eq!(reads, 1);
    dir.write("pets.yaml", &PETS.replace("version: '1'", "version: '2'"));
    let (second, reads) = load(&dir.0, &text);
    assert_eq!(reads, 1);
    let (first, second) = (first.expect("valid"), second.expect("valid"));
    assert_ne!(api(&first, 0).digest, api(&second, 0).digest);
    assert_eq!(api(&second, 2).document["info"]["version"], "2");
}

#[test]
fn a_bad_document_is_read_once_and_reported_for_every_route_naming_it() {
    let dir = Dir::new("bad");
    dir.write(
        "bad.yaml",
        "openapi: 3.0.3\npaths:\n  pets:\n    get: {}\n  /ok: {}\n  admin: {}\n",
    );
    let doc = |i: usize| if i < 2 { "bad.yaml" } else { "missing.yaml" };
    let (result, reads) = load(&dir.0, &routes(4, doc));
    assert_eq!(reads, 2);
    let bad = dir.0.join("bad.yaml").display().to_string();
    let routes_file = dir.0.join("routes.yaml").display().to_string();
    let missing = dir.0.join("missing.yaml").display().to_string();
    let field = "spec.rules[0].openapi.file";
    let mut expected = Vec::new();
    for i in 0..2 {
        expected.push(format!(
            "{bad}:3:3: Route default/r{i} {field}: path `pets` must start with `/`"
        ));
        expected.push(format!(
            "{bad}:6:3: Route default/r{i} {field}: path `admin` must start with `/`"
        ));
    }
    let reason = std::fs::read_to_string(&missing).expect_err("no such file");
    for i in 2..4 {
        let line = 10 + 11 * i;
        expected.push(format!(
            "{routes_file}:{line}:23: Route default/r{i} {field}: cannot read `{missing}`: {reason}"
        ));
    }
    let errors = result.expect_err("the documents are refused").to_string();
    // The report orders errors by file and position; compared here as a set.
    let mut found: Vec<&str> = errors.lines().collect();
    found.sort_unstable();
    expected.sort_unstable();
    assert_eq!(found, expected);
}
