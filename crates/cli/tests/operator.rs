//! Operator experience of the `gatehouse` binary: what `check`, `routes` and `run` say about
//! configs that are empty, skipped or listener-less, and that every command takes its config both
//! as `PATH` and as `-c PATH`. Output is the point here, so most tests compare it whole.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Runs the binary in `dir` (so the paths it prints are the relative ones given to it).
fn gatehouse(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        // `run` logs to stderr; keep the log quiet so the tests see only what `run` prints itself.
        .env("GATEHOUSE_LOG", "off")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, file: &str, yaml: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, yaml).unwrap();
}

const BACKEND_ONLY: &str = "\
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec:
  endpoints: [\"127.0.0.1:9001\"]
";

const LISTENER: &str = "\
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: \"127.0.0.1:0\", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: hello}
spec:
  rules:
    - match: {path: {exact: /hello}}
      directResponse: {status: 200, body: hi}
";

#[test]
fn check_of_an_empty_directory_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("gw")).unwrap();
    write(tmp.path(), "gw/notes.txt", "not a manifest");
    let out = gatehouse(tmp.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "gw: no manifests found: expected `*.yaml`, `*.yml` or `*.json` files in this directory or below\n1 error\n"
    );
}

#[test]
fn run_of_an_empty_directory_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("gw")).unwrap();
    let out = gatehouse(tmp.path(), &["run", "-c", "gw"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("gw: no manifests found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_of_files_without_documents_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "gw/empty.yaml", "# nothing yet\n---\n");
    let out = gatehouse(tmp.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "gw/empty.yaml: no manifests found: the files hold no YAML documents\n1 error\n"
    );
}

#[test]
fn check_warns_about_a_config_without_listener() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "gw/tasks.yaml", BACKEND_ONLY);
    let out = gatehouse(tmp.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "warning: no Listener: the gateway would serve only its admin API (`gatehouse run` refuses this config)\n"
    );
    assert!(text(&out.stdout).starts_with("ok: 0 listener(s), 1 backend(s)"));
}

#[test]
fn run_refuses_a_config_without_listener() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "gw/tasks.yaml", BACKEND_ONLY);
    let out = gatehouse(tmp.path(), &["run", "-c", "gw"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: no Listener: the gateway would serve only its admin API; add a Listener manifest\n"
    );
}

#[test]
fn upper_case_extensions_are_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "gw/edge.YAML", LISTENER);
    write(tmp.path(), "gw/tasks.Yml", BACKEND_ONLY);
    let out = gatehouse(tmp.path(), &["check", "gw"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: 1 listener(s), 1 backend(s), 1 route(s) with 1 rule(s)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn every_command_takes_the_path_positionally_or_with_c() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "gw/edge.yaml", LISTENER);
    for args in [["check", "gw"], ["check", "-c"], ["check", "--config"]] {
        let mut args = args.to_vec();
        if args.len() == 2 && args[1].starts_with('-') {
            args.push("gw");
        }
        let out = gatehouse(tmp.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).starts_with("ok: 1 listener(s)"));
    }
    let positional = gatehouse(tmp.path(), &["routes", "gw"]);
    let option = gatehouse(tmp.path(), &["routes", "-c", "gw"]);
    assert!(positional.status.success() && option.status.success());
    assert_eq!(text(&positional.stdout), text(&option.stdout));
    assert!(text(&option.stdout).contains("exact /hello"));

    // `run` with a positional path loads it: shown here by a config it refuses before binding.
    write(tmp.path(), "bare/tasks.yaml", BACKEND_ONLY);
    let out = gatehouse(tmp.path(), &["run", "bare"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no Listener"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn both_forms_at_once_and_neither_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gatehouse(tmp.path(), &["check", "a", "-c", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
    let out = gatehouse(tmp.path(), &["routes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("required arguments were not provided"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_shows_both_forms() {
    for cmd in ["run", "check", "routes"] {
        let out = gatehouse(Path::new("."), &[cmd, "--help"]);
        let help = text(&out.stdout);
        assert!(
            help.contains("[PATH]") || help.contains("<PATH>"),
            "{cmd}: {help}"
        );
        assert!(help.contains("-c, --config <PATH>"), "{cmd}: {help}");
    }
    let out = gatehouse(Path::new("."), &["--help"]);
    assert!(text(&out.stdout).contains("`gatehouse check -c config/` work too"));
}

#[test]
fn routes_shows_redirect_ports_and_host_rewrites() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "gw/edge.yaml",
        "\
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: up}
spec: {endpoints: [\"127.0.0.1:9001\"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: r}
spec:
  hosts: [shop.example.com]
  rules:
    - match: {path: {prefix: /old}}
      redirect: {scheme: https, host: new.example.com, port: 8443, path: /new, statusCode: 301}
    - match: {path: {prefix: /port-only}}
      redirect: {port: 8080}
    - match: {path: {prefix: /api}}
      rewrite: {pathPrefix: /, host: api.internal}
      backends: [{backend: up}]
",
    );
    let out = gatehouse(tmp.path(), &["routes", "gw"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
HOST              PATH               CONDITIONS  RULE          ACTION
shop.example.com  prefix /port-only              default/r[1]  redirect 302 :8080
shop.example.com  prefix /old                    default/r[0]  redirect 301 https://new.example.com:8443/new
shop.example.com  prefix /api                    default/r[2]  forward default/up (1) rewrite prefix / rewrite host api.internal
"
    );
}
