//! Configs for the contract tests: manifests and OpenAPI documents written to a temporary
//! directory and loaded through the ordinary config flow.

// Each test file uses a part of this.
#![allow(dead_code)]

use gatehouse_config::Config;
use std::path::Path;

/// A listener and three backends every case can route to.
pub const BASE: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec:
  address: 127.0.0.1:18080
  protocol: HTTP
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: a}
spec: {endpoints: ["127.0.0.1:9001"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec: {endpoints: ["127.0.0.1:9002"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: c}
spec: {endpoints: ["127.0.0.1:9003"]}
"#;

/// Writes `files` (name, text) under `dir` and loads `dir`; panics with every config error.
pub fn load_files(dir: &Path, files: &[(&str, &str)]) -> Config {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    gatehouse_config::load_path(dir).unwrap_or_else(|e| panic!("config does not load:\n{e}"))
}

/// `BASE` plus `routes` (YAML documents, without the `apiVersion` line on each) and documents.
pub fn config(routes: &str, docs: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let routes = routes.replace(
        "kind: Route",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Route",
    );
    let mut files = vec![("base.yaml", BASE), ("routes.yaml", routes.as_str())];
    files.extend_from_slice(docs);
    let config = load_files(dir.path(), &files);
    (dir, config)
}
