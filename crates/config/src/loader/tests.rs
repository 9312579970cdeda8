//! Tests of the two passes of a load: a valid config read with each tree dropped once read is
//! exactly the config read with every tree kept (rule definition sites included), and any error
//! sends the load to the pass with trees, whose report is the one given.

use super::*;

const PREAMBLE: &str = "apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: \"127.0.0.1:0\", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: up}
spec: {endpoints: [\"127.0.0.1:1\"]}
";

/// A Route with `rules` rules, one per path `/r{name}/{i}`.
fn route(name: &str, rules: usize) -> String {
    let mut s = format!(
        "---\napiVersion: gatehouse.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n  hosts: [\"{name}.example.com\"]\n  rules:\n"
    );
    for i in 0..rules {
        s.push_str(&format!(
            "    # rule {i}\n    - match: {{path: {{prefix: \"/{name}/{i}\"}}}}\n      backends: [{{backend: up}}]\n"
        ));
    }
    s
}

fn source(name: &str, text: &str) -> SourceFile {
    SourceFile {
        name: name.into(),
        text: text.into(),
    }
}

fn files_of(dir: &Path) -> Vec<SourceFile> {
    let files = collect_files(dir).expect("manifests");
    let read = |f: &PathBuf| {
        source(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
        )
    };
    files.iter().map(read).collect()
}

/// Both passes on `sources`: the one without trees (`None` when it gave up) and the one with.
fn both(sources: &[SourceFile]) -> (Option<Config>, Result<Config, ConfigErrors>) {
    let streamed = load_streaming(sources, &mut Documents::default());
    (
        streamed,
        load_with_trees(sources, &mut Documents::default()),
    )
}

#[test]
fn valid_configs_read_the_same_without_trees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cases = vec![
        files_of(&root.join("tests/golden/valid/input")),
        files_of(&root.join("tests/golden/policies-valid/input")),
        files_of(&root.join("quickstart.yaml")),
    ];
    // Several files, several rules per route, comments between rules, and a second file the
    // fast reader gives up on half-way (an anchor) whose documents are then saphyr's.
    let routes: String = (0..50)
        .map(|i| route(&format!("r{i}"), 1 + i % 3))
        .collect();
    let anchored = format!(
        "{}---\nkind: Route\napiVersion: gatehouse.dev/v1alpha1\nmetadata: {{name: anchored}}\nspec:\n  rules:\n    - match: {{path: {{prefix: /a}}}}\n      backends: &b [{{backend: up}}]\n    - match: {{path: {{prefix: /b}}}}\n      backends: *b\n",
        route("before", 2)
    );
    cases.push(vec![
        source("a.yaml", &format!("{PREAMBLE}{routes}")),
        source("b.yaml", &anchored),
    ]);
    for sources in &cases {
        let (streamed, kept) = both(sources);
        let kept = kept.unwrap_or_else(|e| panic!("{e}"));
        let streamed = streamed.expect("a valid config is read in one pass");
        assert_eq!(format!("{streamed:?}"), format!("{kept:?}"));
    }
}

/// Rule definition sites, which the pass without trees records while each tree is there.
#[test]
fn rules_record_where_they_are_written() {
    let text = format!("{PREAMBLE}{}", route("r", 3));
    let config = load_sources(&[source("gw.yaml", &text)]).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<(usize, usize)> = config.routes[0]
        .rules
        .iter()
        .map(|r| (r.source.line, r.source.col))
        .collect();
    // The preamble is 9 lines and the route's head 7: rule i starts at line 18 + 3i, column 7.
    assert_eq!(lines, [(18, 7), (21, 7), (24, 7)]);
    assert_eq!(config.routes[0].source.line, 11);
}

#[test]
fn any_error_is_reported_by_the_pass_with_trees() {
    let good = format!("{PREAMBLE}{}", route("r", 2));
    let cases = [
        // Found while reading a document: an unknown field.
        vec![source(
            "a.yaml",
            &good.replace(
                "backends: [{backend: up}]\n    # rule 1",
                "backend: [{backend: up}]\n    # rule 1",
            ),
        )],
        // Found by validation: a backend that does not exist.
        vec![source(
            "a.yaml",
            &good.replace(
                "{backend: up}]\n    # rule 1",
                "{backend: down}]\n    # rule 1",
            ),
        )],
        // Found across rules: the same route twice.
        vec![source("a.yaml", &good), source("b.yaml", &route("r", 1))],
        // A syntax error in a second file, after valid documents the fast reader gave.
        vec![
            source("a.yaml", &good),
            source("b.yaml", &format!("{}---\nkind: [\n", route("s", 1))),
        ],
        // No documents at all.
        vec![source("a.yaml", "# nothing\n")],
    ];
    for sources in &cases {
        let (streamed, kept) = both(sources);
        assert!(streamed.is_none(), "an invalid config gave a config");
        let kept = kept.expect_err("invalid").to_string();
        let reported = load_sources(sources).expect_err("invalid").to_string();
        assert_eq!(reported, kept);
    }
    // And the errors point at their fields, not at where their documents start.
    let bad = &cases[1];
    let report = load_sources(bad).expect_err("invalid").to_string();
    assert_eq!(
        report,
        "a.yaml:19:28: Route default/r spec.rules[0].backends[0].backend: unknown backend `default/down`"
    );
}
