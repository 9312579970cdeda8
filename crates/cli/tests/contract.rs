//! The API-contract commands as CI runs them: `gatehouse diff` between two directories and
//! between two revisions of a real temporary git repository (read with git, never checked out),
//! its exit status under `--fail-on`, `--format json`; `gatehouse openapi`; `check` warnings.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::BIN;

const BASE: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:18080", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["127.0.0.1:9001"]}
"#;

const V1: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: tasks-v1}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v1/tasks}, methods: [GET]}
      backends: [{backend: tasks}]
    - match: {path: {exact: /v1/report}}
      backends: [{backend: tasks}]
"#;

/// Writes the config of one revision into `dir/gw`.
fn write(dir: &Path, routes: &str) {
    let gw = dir.join("gw");
    std::fs::create_dir_all(&gw).unwrap();
    std::fs::write(gw.join("base.yaml"), BASE).unwrap();
    std::fs::write(gw.join("routes.yaml"), routes).unwrap();
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gatehouse(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// V1 with `/v1/report` removed and POST added to `/v1/tasks`.
fn v2() -> String {
    V1.replace("methods: [GET]", "methods: [GET, POST]")
        .replace(
            "    - match: {path: {exact: /v1/report}}\n      backends: [{backend: tasks}]\n",
            "",
        )
}

#[test]
fn diff_reads_two_git_revisions_without_touching_the_working_tree() {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    git(dir, &["init", "-q", "-b", "main"]);
    write(dir, V1);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "v1"]);
    write(dir, &v2());
    git(dir, &["commit", "-q", "-am", "v2"]);
    // The working tree holds something else again: the diff must not read it.
    std::fs::write(dir.join("gw/routes.yaml"), "not: [valid").unwrap();

    let out = gatehouse(dir, &["diff", "--git", "HEAD~1..HEAD", "gw"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("breaking      operation-removed"),
        "{stdout}"
    );
    assert!(
        lines[0].contains("* api.example.com/v1/report: no rule takes these requests"),
        "{stdout}"
    );
    // Removals point into the old revision's file, named `rev:path`.
    assert!(lines[0].ends_with("(HEAD~1:gw/routes.yaml:10)"), "{stdout}");
    assert!(lines[1].ends_with("(HEAD:gw/routes.yaml:8)"), "{stdout}");
    assert!(
        lines[1].starts_with("non-breaking  method-added"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("POST api.example.com/v1/tasks/**"),
        "{stdout}"
    );
    assert_eq!(
        lines[2],
        "2 change(s): 1 breaking, 1 non-breaking, 0 informational"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("gw/routes.yaml")).unwrap(),
        "not: [valid"
    );

    // `A..` means A..HEAD; a subdirectory's relative PATH works from inside it.
    let out = gatehouse(&dir.join("gw"), &["diff", "--git", "main~1..", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    let out = gatehouse(
        dir,
        &["diff", "--git", "HEAD~1..HEAD", "gw", "--format", "json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes[0]["class"], "breaking");
    assert_eq!(changes[0]["kind"], "operation-removed");
    assert_eq!(changes[1]["operation"], "POST api.example.com/v1/tasks/**");

    let out = gatehouse(
        dir,
        &["diff", "--git", "HEAD~1..HEAD", "gw", "--fail-on", "none"],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = gatehouse(dir, &["diff", "--git", "HEAD~1..nope", "gw"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown revision is not a clean diff"
    );
}

#[test]
fn diff_between_directories_and_fail_on_any() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(a.path(), V1);
    write(
        b.path(),
        &V1.replace("methods: [GET]", "methods: [GET, POST]"),
    );
    let (old, new) = (a.path().join("gw"), b.path().join("gw"));
    let args = |extra: &[&str]| {
        let mut v = vec![
            "diff".to_string(),
            old.display().to_string(),
            new.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| Command::new(BIN).args(args(extra)).output().unwrap();
    let out = run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "adding a method is not breaking"
    );
    assert!(text(&out.stdout).contains("non-breaking  method-added"));
    assert_eq!(run(&["--fail-on", "any"]).status.code(), Some(1));
    let same = Command::new(BIN)
        .args(["diff"])
        .arg(&old)
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(text(&same.stdout), "no change to the public API\n");
    assert_eq!(same.status.code(), Some(0));
}

#[test]
fn check_refuses_a_validated_document_with_a_broken_pattern() {
    let d = tempfile::tempdir().unwrap();
    let doc = "openapi: 3.1.0\ninfo: {title: T, version: \"1\"}\npaths:\n  /v1/tasks:\n    get:\n      parameters:\n        - {name: q, in: query, schema: {type: string, pattern: \"([a-z\"}}\n      responses: {\"200\": {description: ok}}\n";
    let routes = |validate: bool| {
        V1.replace(
            "methods: [GET]}\n      backends: [{backend: tasks}]\n",
            &format!("methods: [GET]}}\n      backends: [{{backend: tasks}}]\n      openapi: {{file: tasks.yaml, validateRequests: {validate}}}\n"),
        )
    };
    write(d.path(), &routes(false));
    std::fs::write(d.path().join("gw/tasks.yaml"), doc).unwrap();
    let out = gatehouse(d.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    write(d.path(), &routes(true));
    let out = gatehouse(d.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("request validation: "), "{stderr}");
    assert!(stderr.contains("pattern `([a-z`"), "{stderr}");
}

#[test]
fn openapi_prints_one_3_1_document_and_check_prints_versioning_warnings() {
    let d = tempfile::tempdir().unwrap();
    let unversioned = V1.replace("/v1/report", "/report");
    write(d.path(), &unversioned);
    let out = gatehouse(d.path(), &["openapi", "gw"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "http://api.example.com");
    assert!(doc["paths"]["/v1/tasks"]["get"].is_object());
    assert!(doc["paths"]["/report"]["delete"].is_object());

    let out = gatehouse(d.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(0), "warnings never fail `check`");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("warning: "), "{stderr}");
    assert!(
        stderr.contains(
            "gw/routes.yaml:10: route default/tasks-v1 serves `/report` without a version"
        ),
        "{stderr}"
    );
}
