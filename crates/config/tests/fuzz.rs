//! Property test of the config loader: whatever the input, loading never panics and every error
//! says where it is. Two generators: arbitrary bytes (mostly invalid YAML, exercising the parser and
//! the error paths) and arbitrary YAML trees built from the manifests' own field names and plausible
//! values (exercising the deserializer's recovery and validation).
//!
//! CI runs proptest's default number of cases (256 per property, a few seconds). For a longer
//! local run: `PROPTEST_CASES=100000 cargo test -p gatehouse-config --test fuzz` (20,000 cases
//! took 95 s in a debug build here).

use gatehouse_config::{load_sources, SourceFile};
use proptest::prelude::*;

/// Loads `text` as one file and checks the properties every outcome must have.
fn load_and_check(text: &str) -> Result<(), TestCaseError> {
    // The parser counts a lone CR as a line break too; the bound only needs to be an upper one.
    let lines = text.matches(['\n', '\r']).count() + 1;
    let result = load_sources(&[SourceFile {
        name: "fuzz.yaml".into(),
        text: text.into(),
    }]);
    if let Err(errors) = result {
        prop_assert!(!errors.0.is_empty(), "an error result holds errors");
        for e in &errors.0 {
            // The one whole-input error has no line to point at: there is nothing in the input.
            if e.message.starts_with("no manifests found") {
                continue;
            }
            prop_assert!(e.mark.line >= 1, "error without a position: {e}");
            prop_assert!(e.mark.col >= 1, "error without a column: {e}");
            prop_assert!(
                e.mark.line <= lines + 1,
                "error past the end ({lines} lines): {e}"
            );
            prop_assert_eq!(&*e.file, "fuzz.yaml");
        }
    }
    Ok(())
}

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "spec",
    "admin",
    "address",
    "workers",
    "accessLog",
    "enabled",
    "path",
    "trustedProxies",
    "drainTimeout",
    "protocol",
    "tls",
    "certificates",
    "certFile",
    "keyFile",
    "timeouts",
    "idle",
    "connect",
    "endpoints",
    "weight",
    "loadBalancer",
    "policy",
    "hashOn",
    "header",
    "cookie",
    "clientAddress",
    "sticky",
    "ttl",
    "hosts",
    "rules",
    "match",
    "prefix",
    "exact",
    "regex",
    "methods",
    "extensionMethods",
    "headers",
    "query",
    "value",
    "backends",
    "backend",
    "redirect",
    "scheme",
    "host",
    "port",
    "statusCode",
    "directResponse",
    "status",
    "body",
    "rewrite",
    "pathPrefix",
    "pathRegex",
    "pattern",
    "substitution",
    "requestHeaders",
    "set",
    "add",
    "remove",
    "timeout",
    "nmae",
    "",
];

const SCALARS: &[&str] = &[
    "gatehouse.dev/v1alpha1",
    "Gateway",
    "Listener",
    "Backend",
    "Route",
    "Policy",
    "HTTP",
    "HTTPS",
    "TCP",
    "GET",
    "GETT",
    "127.0.0.1:8080",
    "127.0.0.1:0",
    "[::1]:99999",
    "/",
    "/v1",
    "v1",
    "(",
    "^/v1/(.*)$",
    "$1",
    "\\1",
    "5s",
    "0s",
    "5",
    "-1",
    "0",
    "204",
    "99999999999999999999",
    "true",
    "~",
    "null",
    "",
    "*.example.com",
    "a..b",
    "tasks",
    "default/tasks",
    "x-a",
    "1%",
    "é",
    "\u{0}",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(SCALARS).prop_map(|s| format!("{s:?}")),
        2 => proptest::sample::select(SCALARS).prop_map(|s| {
            // Plain where YAML allows it, so numbers, booleans and nulls are typed as such.
            if s.chars().all(|c| c.is_ascii_alphanumeric() || "./:-_".contains(c)) && !s.is_empty() {
                s.to_string()
            } else {
                format!("{s:?}")
            }
        }),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "[a-zA-Z0-9 :/._-]{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

/// A YAML value in flow style, built from the manifests' vocabulary.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |entries| {
                    let body: Vec<String> =
                        entries.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                    format!("{{{}}}", body.join(", "))
                }
            ),
        ]
    })
}

/// A document with the manifest's top-level shape, usually, in block style.
fn document() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(&["Gateway", "Listener", "Backend", "Route", "Rotue"][..]),
        proptest::option::of(value()),
        value(),
        proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..3),
    )
        .prop_map(|(kind, metadata, spec, extra)| {
            let mut doc = format!("apiVersion: gatehouse.dev/v1alpha1\nkind: {kind}\n");
            if let Some(m) = metadata {
                doc.push_str(&format!("metadata: {m}\n"));
            } else {
                doc.push_str("metadata: {name: x}\n");
            }
            doc.push_str(&format!("spec: {spec}\n"));
            for (k, v) in extra {
                doc.push_str(&format!("{k:?}: {v}\n"));
            }
            doc
        })
}

proptest! {
    // Cases come from PROPTEST_CASES (default 256). Failures are not persisted to files beside the
    // sources: proptest prints the minimal failing input, which belongs in a named test.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_have_positions(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_text_of_yaml_characters_never_panics(text in "[a-z:{}\\[\\],&*!|>'\"#%@`\n -]{0,200}") {
        load_and_check(&text)?;
    }

    #[test]
    fn arbitrary_manifests_never_panic_and_errors_have_positions(docs in proptest::collection::vec(document(), 1..4)) {
        load_and_check(&docs.join("---\n"))?;
    }
}

/// The generator reaches the deep checks, not only the parser: a plain valid manifest passes
/// the same property, and a small mutation of it fails with positioned errors.
#[test]
fn the_property_holds_for_a_valid_manifest() {
    let text = "apiVersion: gatehouse.dev/v1alpha1\nkind: Listener\nmetadata: {name: web}\nspec: {address: \"127.0.0.1:0\", protocol: HTTP}\n";
    assert!(load_sources(&[SourceFile {
        name: "fuzz.yaml".into(),
        text: text.into()
    }])
    .is_ok());
    load_and_check(text).unwrap();
}
