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

#[test]
fn thousands_of_versioned_routes_are_compared_only_within_their_api() {
    // 3,000 APIs in two versions on one host: 18 million version pairs if every rule met every
    // other (~30 s in a debug build); one pair per API when rules meet only their own API's.
    let mut routes = String::new();
    for i in 0..3_000 {
        for v in ["v1", "v2"] {
            routes.push_str(&format!(
                "---\nkind: Route\nmetadata: {{name: s{i}-{v}}}\nspec:\n  hosts: [api.example.com]\n  rules:\n    - match: {{path: {{prefix: /{v}/s{i}}}}}\n      backends: [{{backend: a}}]\n"
            ));
        }
    }
    // One API whose versions both answer on the unversioned host: still found among the thousands.
    for (v, methods) in [("v1", "[GET]"), ("v2", "[GET, POST]")] {
        routes.push_str(&format!(
            "---\nkind: Route\nmetadata: {{name: legacy-{v}}}\nspec:\n  hosts: [{v}.api.example.com, api.example.com]\n  rules:\n    - match: {{path: {{prefix: /legacy}}, methods: {methods}}}\n      backends: [{{backend: a}}]\n"
        ));
    }
    let (_d, config) = common::config(&routes, &[]);
    let started = std::time::Instant::now();
    let w = warnings(&config);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let overlaps: Vec<_> = w
        .iter()
        .filter(|w| w.message.contains("overlaps"))
        .collect();
    assert_eq!(overlaps.len(), 1, "{overlaps:?}");
    assert!(
        overlaps[0]
            .message
            .contains("route default/legacy-v2 overlaps v1 (route default/legacy-v1"),
        "{overlaps:?}"
    );
}
