//! `gatehouse check`'s versioning guidance: a warning for a forwarding rule with no version in its
//! path, host or a version condition, and for two versions of one API whose rules overlap.

mod common;

use gatehouse_contract::warnings;

fn messages(routes: &str) -> Vec<String> {
    let (_d, config) = common::config(routes, &[]);
    warnings(&config).into_iter().map(|w| w.message).collect()
}

#[test]
fn a_route_without_a_version_is_warned_about_once_per_rule() {
    let w = messages(
        "kind: Route\nmetadata: {name: tasks}\nspec:\n  hosts: [api.example.com]\n  rules:\n    - match: {path: {prefix: /tasks}}\n      backends: [{backend: a}]\n    - match: {path: {prefix: /old}}\n      redirect: {path: /tasks}\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("route default/tasks serves `/tasks` without a version"),
        "{w:?}"
    );
}

#[test]
fn a_version_in_the_path_the_host_or_a_header_condition_is_enough() {
    let w = messages(
        r#"
kind: Route
metadata: {name: by-path}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v1/tasks}}
      backends: [{backend: a}]
---
kind: Route
metadata: {name: by-host}
spec:
  hosts: [v2.api.example.com]
  rules:
    - match: {path: {prefix: /tasks}}
      backends: [{backend: a}]
---
kind: Route
metadata: {name: by-header}
spec:
  hosts: [hdr.example.com]
  rules:
    - match: {path: {prefix: /tasks}, headers: [{name: api-version, value: "3"}]}
      backends: [{backend: a}]
"#,
    );
    assert_eq!(w, Vec::<String>::new());
}

#[test]
fn two_versions_whose_rules_overlap_are_warned_about() {
    // Header versioning with distinct values: the header tells the versions apart.
    let w = messages(
        r#"
kind: Route
metadata: {name: tasks-v1}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /tasks}, headers: [{name: x-api-version, value: "1"}]}
      backends: [{backend: a}]
---
kind: Route
metadata: {name: tasks-v2}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /tasks}, headers: [{name: x-api-version, value: "2"}]}
      backends: [{backend: b}]
"#,
    );
    assert_eq!(w.len(), 0, "distinct header values do not overlap: {w:?}");
    let w = messages(
        r#"
kind: Route
metadata: {name: tasks-v1}
spec:
  hosts: [v1.api.example.com, api.example.com]
  rules:
    - match: {path: {prefix: /tasks}}
      backends: [{backend: a}]
---
kind: Route
metadata: {name: tasks-v2}
spec:
  hosts: [v2.api.example.com, api.example.com]
  rules:
    - match: {path: {prefix: /tasks}, methods: [GET, POST]}
      backends: [{backend: b}]
"#,
    );
    // Both versions also answer on the unversioned host: which one a client gets there is an
    // accident of precedence.
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("overlaps v1 (route default/tasks-v1"),
        "{w:?}"
    );
}

#[test]
fn separate_versions_on_separate_paths_do_not_overlap() {
    let w = messages(
        r#"
kind: Route
metadata: {name: tasks-v1}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v1/tasks}}
      backends: [{backend: a}]
---
kind: Route
metadata: {name: tasks-v2}
spec:
  hosts: [api.example.com]
  rules:
    - match: {path: {prefix: /v2/tasks}}
      backends: [{backend: b}]
"#,
    );
    assert_eq!(w, Vec::<String>::new());
}
