//! Golden tests of config errors: each `tests/golden/<case>/input` is loaded and every error line
//! must equal `expected.txt`. `UPDATE_GOLDEN=1 cargo test` rewrites the expectations.

use std::path::Path;

fn check(case: &str) {
    let dir = Path::new("tests/golden").join(case);
    let got = match gatehouse_config::load_path(&dir.join("input")) {
        Ok(c) => format!(
            "ok: {} listeners, {} backends, {} routes\n",
            c.listeners.len(),
            c.backends.len(),
            c.routes.len()
        ),
        Err(e) => format!("{e}\n"),
    };
    let expected_path = dir.join("expected.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&expected_path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(got, expected, "case {case}: got\n{got}");
}

#[test]
fn unknown_fields() {
    check("unknown-fields");
}

#[test]
fn bad_values() {
    check("bad-values");
}

#[test]
fn load_balancer() {
    check("load-balancer");
}

#[test]
fn references() {
    check("references");
}

#[test]
fn rules() {
    check("rules");
}

#[test]
fn syntax() {
    check("syntax");
}

#[test]
fn valid() {
    check("valid");
}

#[test]
fn quickstart_is_valid() {
    let c = gatehouse_config::load_sources(&[gatehouse_config::SourceFile {
        name: "quickstart".into(),
        text: gatehouse_config::QUICKSTART.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners[0].address.to_string(), "127.0.0.1:8080");
    assert_eq!(c.gateway.admin_address.to_string(), "127.0.0.1:9901");
}

#[test]
fn values() {
    check("values");
}

#[test]
fn every_error() {
    check("every-error");
}

#[test]
fn discovery() {
    check("discovery");
}

#[test]
fn policies() {
    check("policies");
}

#[test]
fn policies_valid() {
    check("policies-valid");
}

#[test]
fn traffic() {
    check("traffic");
}

#[test]
fn tls() {
    check("tls");
}

#[test]
fn edge_policies() {
    check("edge-policies");
}

#[test]
fn rollouts() {
    check("rollouts");
}
