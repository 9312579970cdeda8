//! `openapi: {file}` on a rule or a Route spec: the document is read at load (and so at `check`
//! and reload) time, must parse as OpenAPI 3.0 or 3.1, and its paths, with the rule's rewrite
//! undone, must fall inside the rule's match; every problem is reported with file:line:col.

mod common;

use std::path::Path;

/// Loads `routes` (plus the common base) with `docs` beside them; the errors as text.
fn errors(routes: &str, docs: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let routes = routes.replace(
        "kind: Route",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Route",
    );
    let mut files = vec![
        ("base.yaml", common::BASE),
        ("routes.yaml", routes.as_str()),
    ];
    files.extend_from_slice(docs);
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let e = gatehouse_config::load_path(dir.path()).expect_err("the config must be refused");
    (dir, e.to_string())
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

const DOC: &str = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /api/pets:\n    get:\n      responses: {'200': {description: ok}}\n  /admin:\n    get:\n      responses: {'200': {description: ok}}\n  /api/pets/{id}:\n    get:\n      responses: {'200': {description: ok}}\n";

fn rule(matching: &str, rewrite: &str) -> String {
    format!("kind: Route\nmetadata: {{name: pets}}\nspec:\n  rules:\n    - match: {{path: {matching}}}\n{rewrite}      backends: [{{backend: a}}]\n      openapi: {{file: pets.yaml}}\n")
}

#[test]
fn paths_outside_the_prefix_are_errors_located_in_the_document() {
    let (dir, e) = errors(&rule("{prefix: /api}", ""), &[("pets.yaml", DOC)]);
    assert_eq!(
        e,
        format!(
            "{}:7:3: Route default/pets spec.rules[0].openapi.file: paths./admin: path `/admin` is outside the rule's prefix `/api`: clients could not reach it",
            file(dir.path(), "pets.yaml")
        )
    );
}

#[test]
fn paths_are_checked_with_the_rewrite_undone() {
    // Clients send /v1/pets; the backend, and so the document, sees /api/pets.
    let (dir, e) = errors(
        &rule("{prefix: /v1}", "      rewrite: {pathPrefix: /api}\n"),
        &[("pets.yaml", DOC)],
    );
    assert_eq!(
        e,
        format!(
            "{}:7:3: Route default/pets spec.rules[0].openapi.file: paths./admin: path `/admin` is outside the rule's rewrite target `/api`: clients could not reach it",
            file(dir.path(), "pets.yaml")
        )
    );
    let ok = DOC.replace("  /admin:\n", "  /api/admin:\n");
    let routes = rule("{prefix: /v1}", "      rewrite: {pathPrefix: /api}\n");
    let (_d, config) = common::config(&routes, &[("pets.yaml", &ok)]);
    assert!(config.routes[0].rules[0].openapi.is_some());
}

#[test]
fn regex_and_exact_matches_check_templated_paths() {
    let doc = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /items/{id}:\n    get: {responses: {'200': {description: ok}}}\n";
    let (_d, c) = common::config(
        &rule("{regex: \"/items/[0-9]+\"}", ""),
        &[("pets.yaml", doc)],
    );
    assert!(c.routes[0].rules[0].openapi.is_some());
    let (_d, e) = errors(&rule("{exact: /items}", ""), &[("pets.yaml", doc)]);
    assert!(
        e.contains("path `/items/{id}` is not the rule's exact path `/items`"),
        "{e}"
    );
}

#[test]
fn unreadable_unparsable_and_swagger_documents_are_errors() {
    let (dir, e) = errors(&rule("{prefix: /}", ""), &[]);
    assert!(
        e.starts_with(&format!("{}:8:23:", file(dir.path(), "routes.yaml"))),
        "{e}"
    );
    assert!(e.contains("spec.rules[0].openapi.file: cannot read"), "{e}");
    let (dir, e) = errors(
        &rule("{prefix: /}", ""),
        &[("pets.yaml", "openapi: 3.0.0\npaths: [1, 2\n")],
    );
    assert!(e.starts_with(&file(dir.path(), "pets.yaml")), "{e}");
    assert!(e.contains("invalid OpenAPI document"), "{e}");
    let (_d, e) = errors(
        &rule("{prefix: /}", ""),
        &[("pets.yaml", "swagger: '2.0'\npaths: {}\n")],
    );
    assert!(
        e.contains("found Swagger 2.0: convert it to OpenAPI 3 first"),
        "{e}"
    );
}

#[test]
fn a_route_level_document_needs_each_path_inside_one_of_its_rules() {
    let routes = "kind: Route\nmetadata: {name: pets}\nspec:\n  openapi: {file: pets.yaml}\n  rules:\n    - match: {path: {prefix: /api/pets}}\n      backends: [{backend: a}]\n    - match: {path: {exact: /health}}\n      backends: [{backend: b}]\n";
    let (dir, e) = errors(routes, &[("pets.yaml", DOC)]);
    assert_eq!(
        e,
        format!(
            "{}:7:3: Route default/pets spec.openapi.file: paths./admin: path `/admin` is outside every rule's match: clients could not reach it",
            file(dir.path(), "pets.yaml")
        )
    );
}

#[test]
fn documents_beside_manifests_are_not_manifests_and_fields_are_checked() {
    // The document sits in the config directory (common::config writes it there) and loads fine.
    let routes = rule("{prefix: /api}", "").replace(
        "{file: pets.yaml}",
        "{file: pets.yaml, validateRequests: true}",
    );
    let ok = DOC.replace("  /admin:\n", "  /api/admin:\n");
    let (_d, c) = common::config(&routes, &[("pets.yaml", &ok)]);
    let api = c.routes[0].rules[0].openapi.as_ref().unwrap();
    assert!(api.validate_requests);
    assert_eq!(api.document["paths"].as_object().unwrap().len(), 3);
    let typo = rule("{prefix: /api}", "").replace(
        "{file: pets.yaml}",
        "{file: pets.yaml, validateRequest: true}",
    );
    let (_d, e) = errors(&typo, &[("pets.yaml", &ok)]);
    assert!(
        e.contains("validateRequests"),
        "a did-you-mean is expected: {e}"
    );
}
