//! `gatehouse diff` classification: a table of config pairs, each with the exact set of changes
//! (class and kind) the diff must report, including the subtle ones: a new higher-precedence rule
//! taking part of an old rule's traffic is breaking, adding a method is not.

mod common;

use gatehouse_contract::{diff, Class};
use Class::{Breaking as B, Informational as I, NonBreaking as N};

/// One Route `api` on `api.example.com` whose `rules:` are `rules` (written at column 4).
fn api(rules: &str) -> String {
    format!("kind: Route\nmetadata: {{name: api}}\nspec:\n  hosts: [api.example.com]\n  rules:\n{rules}")
}

const GET_X_A: &str = r#"
    - match: {path: {exact: /v1/x}, methods: [GET]}
      backends: [{backend: a}]
"#;

const V1_A: &str = r#"
    - match: {path: {prefix: /v1}}
      backends: [{backend: a}]
"#;

struct Case {
    name: &'static str,
    old: String,
    new: String,
    want: Vec<(Class, &'static str)>,
}

fn case(name: &'static str, old: &str, new: &str, want: &[(Class, &'static str)]) -> Case {
    Case {
        name,
        old: old.to_string(),
        new: new.to_string(),
        want: want.to_vec(),
    }
}

fn route_cases() -> Vec<Case> {
    vec![
        case("identical configs", &api(V1_A), &api(V1_A), &[]),
        case(
            "a route for a new host",
            &api(V1_A),
            &format!(
                "{}---\nkind: Route\nmetadata: {{name: other}}\nspec:\n  hosts: [other.example.com]\n  rules:\n{V1_A}",
                api(V1_A)
            ),
            &[(N, "operation-added")],
        ),
        case(
            "a rule removed, nothing else takes its requests",
            &api(&format!("{GET_X_A}    - match: {{path: {{exact: /v1/y}}}}\n      backends: [{{backend: b}}]\n")),
            &api(GET_X_A),
            &[(B, "operation-removed")],
        ),
        case(
            "a rule removed, a broader rule to another backend takes its requests",
            &api(&format!("{V1_A}    - match: {{path: {{prefix: /v1/admin}}}}\n      backends: [{{backend: b}}]\n")),
            &api(V1_A),
            &[(B, "operation-removed")],
        ),
        case(
            "a rule removed, a broader rule to the same backend takes its requests",
            &api(&format!("{V1_A}    - match: {{path: {{prefix: /v1/admin}}}}\n      backends: [{{backend: a}}]\n")),
            &api(V1_A),
            &[(I, "rule-removed")],
        ),
        case(
            "a method added is not breaking",
            &api(GET_X_A),
            &api(&GET_X_A.replace("[GET]", "[GET, POST]")),
            &[(N, "method-added")],
        ),
        case(
            "a method removed",
            &api(&GET_X_A.replace("[GET]", "[GET, POST]")),
            &api(GET_X_A),
            &[(B, "operation-removed")],
        ),
        case(
            "any method narrowed to GET",
            &api(&GET_X_A.replace(", methods: [GET]", "")),
            &api(GET_X_A),
            &[(B, "methods-narrowed")],
        ),
        case(
            "GET widened to any method",
            &api(GET_X_A),
            &api(&GET_X_A.replace(", methods: [GET]", "")),
            &[(N, "methods-widened")],
        ),
        case(
            "a header condition added narrows the operation",
            &api(V1_A),
            &api(&V1_A.replace("{prefix: /v1}}", "{prefix: /v1}, headers: [{name: x-env, value: prod}]}")),
            &[(B, "narrowed")],
        ),
        case(
            "a header condition removed widens it",
            &api(&V1_A.replace("{prefix: /v1}}", "{prefix: /v1}, headers: [{name: x-env, value: prod}]}")),
            &api(V1_A),
            &[(N, "widened")],
        ),
        case(
            "a query condition added narrows the operation",
            &api(V1_A),
            &api(&V1_A.replace("{prefix: /v1}}", "{prefix: /v1}, query: [{name: format, value: json}]}")),
            &[(B, "narrowed")],
        ),
        case(
            "moved to another backend",
            &api(V1_A),
            &api(&V1_A.replace("backend: a", "backend: b")),
            &[(I, "backend-changed")],
        ),
        case(
            "canary weights changed: same backends, no contract change",
            &api(&V1_A.replace("[{backend: a}]", "[{backend: a, weight: 95}, {backend: b, weight: 5}]")),
            &api(&V1_A.replace("[{backend: a}]", "[{backend: a, weight: 50}, {backend: b, weight: 50}]")),
            &[],
        ),
    ]
}

fn precedence_cases() -> Vec<Case> {
    vec![
        case(
            "a new longer prefix to another backend takes part of an old rule's traffic",
            &api(V1_A),
            &api(&format!("{V1_A}    - match: {{path: {{prefix: /v1/admin}}}}\n      backends: [{{backend: b}}]\n")),
            &[(B, "traffic-taken")],
        ),
        case(
            "a new longer prefix to the same backend and rewrite changes nothing for clients",
            &api(V1_A),
            &api(&format!("{V1_A}    - match: {{path: {{prefix: /v1/admin}}}}\n      backends: [{{backend: a}}]\n")),
            &[(N, "operation-added")],
        ),
        case(
            "a new rule with a header condition takes those requests to another backend",
            &api(V1_A),
            &api(&format!(
                "{V1_A}    - match: {{path: {{prefix: /v1}}, headers: [{{name: x-beta, value: \"1\"}}]}}\n      backends: [{{backend: b}}]\n"
            )),
            &[(B, "traffic-taken")],
        ),
        case(
            "a new exact-host route takes requests a wildcard route served",
            "kind: Route\nmetadata: {name: wild}\nspec:\n  hosts: [\"*.example.com\"]\n  rules:\n    - backends: [{backend: a}]\n",
            "kind: Route\nmetadata: {name: wild}\nspec:\n  hosts: [\"*.example.com\"]\n  rules:\n    - backends: [{backend: a}]\n---\nkind: Route\nmetadata: {name: exact}\nspec:\n  hosts: [api.example.com]\n  rules:\n    - backends: [{backend: c}]\n",
            &[(B, "traffic-taken")],
        ),
        case(
            "a new rule in front of a catch-all 404 is only an addition",
            &api("    - directResponse: {status: 404, body: nothing here}\n"),
            &api(&format!("    - directResponse: {{status: 404, body: nothing here}}\n{V1_A}")),
            &[(N, "operation-added")],
        ),
        case(
            "a host removed from a route",
            &api(V1_A).replace("[api.example.com]", "[api.example.com, old.example.com]"),
            &api(V1_A),
            &[(B, "operation-removed")],
        ),
        case(
            "a host added to a route",
            &api(V1_A),
            &api(V1_A).replace("[api.example.com]", "[api.example.com, new.example.com]"),
            &[(N, "operation-added")],
        ),
        case(
            "an exact path renamed",
            &api(GET_X_A),
            &api(&GET_X_A.replace("/v1/x", "/v1/z")),
            &[(B, "operation-removed"), (N, "operation-added")],
        ),
    ]
}

fn action_cases() -> Vec<Case> {
    let redirect = |to: &str, status: u16| {
        api(&format!(
            "    - match: {{path: {{prefix: /old}}}}\n      redirect: {{host: {to}, statusCode: {status}}}\n"
        ))
    };
    let timeout = |t: &str| api(&format!("{V1_A}      timeout: {t}\n"));
    let rewrite = |to: &str, backend: &str| {
        api(&format!(
            "    - match: {{path: {{prefix: /v1}}}}\n      rewrite: {{pathPrefix: {to}}}\n      backends: [{{backend: {backend}}}]\n"
        ))
    };
    let direct = api(
        "    - match: {path: {prefix: /v1}}\n      directResponse: {status: 503, body: down}\n",
    );
    vec![
        case(
            "a timeout shortened",
            &timeout("5s"),
            &timeout("1s"),
            &[(B, "limit-tightened")],
        ),
        case(
            "a timeout lengthened",
            &timeout("1s"),
            &timeout("5s"),
            &[(N, "limit-relaxed")],
        ),
        case(
            "a redirect to another host",
            &redirect("a.example.com", 301),
            &redirect("b.example.com", 301),
            &[(B, "redirect-changed")],
        ),
        case(
            "a redirect's status only",
            &redirect("a.example.com", 301),
            &redirect("a.example.com", 308),
            &[(I, "redirect-changed")],
        ),
        case(
            "forwarding replaced by a fixed 503",
            &api(V1_A),
            &direct,
            &[(B, "action-changed")],
        ),
        case(
            "a fixed response replaced by forwarding",
            &direct,
            &api(V1_A),
            &[(I, "action-changed")],
        ),
        case(
            "a rewrite changed, same backend",
            &rewrite("/api", "a"),
            &rewrite("/api/v1", "a"),
            &[(B, "rewrite-changed")],
        ),
        case(
            "a rewrite changed together with the backend",
            &rewrite("/api", "a"),
            &rewrite("/api/v1", "b"),
            &[(I, "rewrite-changed"), (I, "backend-changed")],
        ),
    ]
}

/// Policies the policy cases attach (each config carries all of them).
const POLICIES: &str = r#"---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: keys}
spec: {apiKey: {keys: [{consumer: acme, sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}]}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: slow}
spec: {rateLimit: {requests: 10, per: 1m}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: fast}
spec: {rateLimit: {requests: 100, per: 1m}}
"#;

/// An OpenAPI document every case's directory holds (only the validation cases name it).
const DOC: &str = r#"
openapi: 3.1.0
info: {title: V1, version: "1"}
paths:
  /v1/x:
    get:
      responses: {"200": {description: ok}}
"#;

fn policy_cases() -> Vec<Case> {
    let with = |policies: &str| {
        let uses = match policies {
            "" => String::new(),
            p => format!("      policies: [{p}]\n"),
        };
        format!("{}{POLICIES}", api(&format!("{V1_A}{uses}")))
    };
    let documented = |validate: bool| {
        api(&format!(
            "{V1_A}      openapi: {{file: tasks.yaml, validateRequests: {validate}}}\n"
        ))
    };
    vec![
        case(
            "an auth policy attached",
            &with(""),
            &with("keys"),
            &[(B, "newly-protected")],
        ),
        case(
            "an auth policy removed",
            &with("keys"),
            &with(""),
            &[(N, "policy-removed")],
        ),
        case(
            "a rate limit attached",
            &with(""),
            &with("fast"),
            &[(B, "limit-tightened")],
        ),
        case(
            "a rate limit lowered (another policy with a lower rate)",
            &with("fast"),
            &with("slow"),
            &[(B, "limit-tightened"), (N, "policy-removed")],
        ),
        case(
            "the attached rate limit's own rate lowered",
            &with("fast"),
            &with("fast").replace("requests: 100", "requests: 5"),
            // The burst defaults to `requests`: it shrinks too.
            &[(B, "limit-tightened"), (B, "limit-tightened")],
        ),
        case(
            "the attached rate limit's own rate raised",
            &with("fast"),
            &with("fast").replace("requests: 100", "requests: 500"),
            &[(N, "limit-relaxed"), (N, "limit-relaxed")],
        ),
        case(
            "an OpenAPI document added",
            &api(V1_A),
            &documented(false),
            &[(I, "documented")],
        ),
        case(
            "request validation switched on",
            &documented(false),
            &documented(true),
            &[(B, "validation-enabled")],
        ),
        case(
            "request validation switched off",
            &documented(true),
            &documented(false),
            &[(N, "validation-disabled")],
        ),
    ]
}

fn sorted(mut v: Vec<(Class, &'static str)>) -> Vec<(Class, &'static str)> {
    v.sort();
    v
}

fn run(cases: Vec<Case>) -> usize {
    let mut failures = Vec::new();
    let n = cases.len();
    for c in cases {
        let (_d1, old) = common::config(&c.old, &[("tasks.yaml", DOC)]);
        let (_d2, new) = common::config(&c.new, &[("tasks.yaml", DOC)]);
        let report = diff(&old, &new);
        let got = sorted(
            report
                .changes
                .iter()
                .map(|ch| (ch.class, ch.kind))
                .collect(),
        );
        if got != sorted(c.want.clone()) {
            let lines: Vec<String> = report
                .changes
                .iter()
                .map(|ch| format!("    {ch}"))
                .collect();
            failures.push(format!(
                "{}: want {:?}, got\n{}",
                c.name,
                c.want,
                lines.join("\n")
            ));
        }
        for ch in &report.changes {
            assert!(
                !ch.reason.is_empty(),
                "{}: a change without a reason",
                c.name
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    n
}

#[test]
fn route_changes_are_classified() {
    assert!(run(route_cases()) >= 14);
}

#[test]
fn precedence_changes_are_classified() {
    assert!(run(precedence_cases()) >= 8);
}

#[test]
fn action_and_limit_changes_are_classified() {
    assert!(run(action_cases()) >= 8);
}

#[test]
fn policy_and_validation_changes_are_classified() {
    assert!(run(policy_cases()) >= 9);
}

#[test]
fn listener_limits_lowered_are_breaking() {
    let (_d1, old) = common::config(&api(V1_A), &[]);
    let tight = common::BASE.replace(
        "  protocol: HTTP\n",
        "  protocol: HTTP\n  limits: {maxUriLength: 1KiB}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let routes = api(V1_A).replace(
        "kind: Route",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Route",
    );
    let new = common::load_files(
        dir.path(),
        &[("base.yaml", &tight), ("routes.yaml", &routes)],
    );
    let report = diff(&old, &new);
    let got: Vec<_> = report.changes.iter().map(|c| (c.class, c.kind)).collect();
    assert_eq!(got, vec![(B, "limit-tightened")], "{:?}", report.changes);
    assert!(report.has_breaking());
}

#[test]
fn changes_are_located_in_the_new_config_or_the_old_for_removals() {
    // Line 8 of routes.yaml is the first rule, line 10 the second.
    let (d1, old) = common::config(
        &api(&format!(
            "{GET_X_A}    - match: {{path: {{exact: /v1/y}}}}\n      backends: [{{backend: b}}]\n"
        )),
        &[],
    );
    let (d2, new) = common::config(&api(&GET_X_A.replace("[GET]", "[GET, POST]")), &[]);
    let report = diff(&old, &new);
    let removed = report
        .changes
        .iter()
        .find(|c| c.kind == "operation-removed")
        .unwrap();
    let added = report
        .changes
        .iter()
        .find(|c| c.kind == "method-added")
        .unwrap();
    let old_file = d1.path().join("routes.yaml").display().to_string();
    let new_file = d2.path().join("routes.yaml").display().to_string();
    assert_eq!(
        removed.location.as_deref(),
        Some(format!("{old_file}:10").as_str())
    );
    assert_eq!(
        added.location.as_deref(),
        Some(format!("{new_file}:8").as_str())
    );
    assert_eq!(removed.operation, "* api.example.com/v1/y");
    assert_eq!(added.operation, "POST api.example.com/v1/x");
    // Breaking changes come first, for people reading from the top.
    assert_eq!(report.changes[0].class, B);
}
