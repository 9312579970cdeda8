//! The API-contract commands: `gatehouse diff` (two config revisions, from paths or from git) and
//! `gatehouse openapi`. Both load configs through the ordinary config flow and hand them to
//! `gatehouse-contract`.

use gatehouse_config::Config;
use gatehouse_contract::{Class, Report};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// When `gatehouse diff` exits 1.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FailOn {
    /// Never: the report is informative only.
    None,
    /// When any change is breaking (the default).
    Breaking,
    /// When anything changed at all.
    Any,
}

/// Output format of `gatehouse diff`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One line per change, for people.
    Human,
    /// `{"changes": [...]}`, for tools.
    Json,
}

/// Exit status for a config that does not load: apart from 1 (breaking) so CI can tell them apart.
const LOAD_FAILED: u8 = 2;

fn load(path: &Path, label: &str) -> Result<Config, ExitCode> {
    gatehouse_config::load_path(path).map_err(|e| {
        eprintln!("{label} config does not load:");
        crate::print_errors(&e);
        ExitCode::from(LOAD_FAILED)
    })
}

/// `gatehouse diff OLD NEW` or `gatehouse diff --git A..B PATH`.
pub(crate) fn diff(
    git: Option<String>,
    paths: Vec<PathBuf>,
    format: Format,
    fail_on: FailOn,
) -> ExitCode {
    // Temporary directories holding git revisions, named back to `rev:` in the report.
    let mut names = Vec::new();
    let loaded = match git {
        Some(range) => from_git(
            &range,
            paths.first().map_or(Path::new("."), |p| p),
            &mut names,
        ),
        None => match paths.as_slice() {
            [old, new] => load(old, "old").and_then(|o| Ok((o, load(new, "new")?))),
            _ => {
                eprintln!("usage: gatehouse diff OLD NEW, or gatehouse diff --git A..B PATH");
                Err(ExitCode::from(LOAD_FAILED))
            }
        },
    };
    let (old, new) = match loaded {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let mut report = gatehouse_contract::diff(&old, &new);
    for c in &mut report.changes {
        for (tmp, rev) in &names {
            c.reason = c.reason.replace(tmp.as_str(), rev);
            c.location = c.location.take().map(|l| l.replace(tmp.as_str(), rev));
        }
    }
    match format {
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => emit(&s),
            Err(e) => {
                eprintln!("cannot write the report: {e}");
                return ExitCode::FAILURE;
            }
        },
        Format::Human => print_human(&report),
    }
    let fail = match fail_on {
        FailOn::None => false,
        FailOn::Breaking => report.has_breaking(),
        FailOn::Any => !report.changes.is_empty(),
    };
    if fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One line on standard output; a closed pipe (`| head`) is not an error worth a panic.
fn emit(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn print_human(report: &Report) {
    if report.changes.is_empty() {
        emit("no change to the public API");
        return;
    }
    for c in &report.changes {
        emit(&c.to_string());
    }
    let count = |class| report.changes.iter().filter(|c| c.class == class).count();
    emit(&format!(
        "{} change(s): {} breaking, {} non-breaking, {} informational",
        report.changes.len(),
        count(Class::Breaking),
        count(Class::NonBreaking),
        count(Class::Informational)
    ));
}

/// Both revisions of `path` read with git itself (`git ls-tree`, `git show`) into temporary
/// directories: the working tree is never checked out or touched.
fn from_git(
    range: &str,
    path: &Path,
    names: &mut Vec<(String, String)>,
) -> Result<(Config, Config), ExitCode> {
    let fail = |msg: String| {
        eprintln!("{msg}");
        ExitCode::from(LOAD_FAILED)
    };
    let (a, b) = range.split_once("..").ok_or_else(|| {
        fail(format!(
            "`{range}`: expected a range A..B (B defaults to HEAD)"
        ))
    })?;
    let b = if b.is_empty() { "HEAD" } else { b };
    let top = git(Path::new("."), &["rev-parse", "--show-toplevel"]).map_err(fail)?;
    let top = PathBuf::from(top.trim());
    let cwd = std::env::current_dir().map_err(|e| fail(format!("current directory: {e}")))?;
    let top_real = top.canonicalize().unwrap_or(top.clone());
    let cwd_real = cwd.canonicalize().unwrap_or(cwd);
    let rel_cwd = cwd_real.strip_prefix(&top_real).unwrap_or(Path::new(""));
    let rel = normalize(&rel_cwd.join(path));
    let old = revision(&top, a, &rel).map_err(fail)?;
    let new = revision(&top, b, &rel).map_err(fail)?;
    let old_cfg = load(&old.1, &format!("old ({a})"))?;
    let new_cfg = load(&new.1, &format!("new ({b})"))?;
    for (dir, rev) in [(&old.0, a), (&new.0, b)] {
        names.push((format!("{}/", dir.path().display()), format!("{rev}:")));
    }
    Ok((old_cfg, new_cfg))
}

/// `a/./b/../c` -> `a/c`, without touching the file system (the path may exist only in git).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| format!("git {}: output is not UTF-8", args.join(" ")))
}

/// Writes the files under `rel` at revision `rev` into a temporary directory; returns it (kept
/// alive by the handle) and the path of `rel` inside it. Error messages from loading then name
/// files as `<tmp>/<rel>`, which keeps the repository-relative path readable.
fn revision(top: &Path, rev: &str, rel: &Path) -> Result<(tempfile::TempDir, PathBuf), String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!(
            "gatehouse-diff-{}-",
            rev.replace(['/', '~', '^'], "_")
        ))
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let spec = rel.to_string_lossy().to_string();
    let spec = if spec.is_empty() {
        ".".to_string()
    } else {
        spec
    };
    let list = git(
        top,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "--full-tree",
            rev,
            "--",
            &spec,
        ],
    )?;
    if list.trim().is_empty() {
        return Err(format!("`{spec}` does not exist at revision {rev}"));
    }
    for file in list.lines() {
        let bytes = Command::new("git")
            .arg("-C")
            .arg(top)
            .args(["show", &format!("{rev}:{file}")])
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !bytes.status.success() {
            return Err(format!("git show {rev}:{file} failed"));
        }
        let target = dir.path().join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, &bytes.stdout).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    let root = dir.path().join(rel);
    Ok((dir, root))
}

/// `gatehouse openapi PATH`: the OpenAPI 3.1 document on standard output.
pub(crate) fn openapi(path: &Path) -> ExitCode {
    let config = match gatehouse_config::load_path(path) {
        Ok(c) => c,
        Err(e) => {
            crate::print_errors(&e);
            return ExitCode::FAILURE;
        }
    };
    match gatehouse_contract::openapi_document(&config)
        .map_err(|e| e.to_string())
        .and_then(|d| serde_json::to_string_pretty(&d).map_err(|e| e.to_string()))
    {
        Ok(s) => {
            emit(&s);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Documents `validateRequests` cannot use (a `pattern` that is no regular expression): `run`
/// would refuse them, so `check` does too.
pub(crate) fn validation_errors(config: &Config) -> Vec<String> {
    let rules = (config.routes.iter()).flat_map(|r| r.rules.iter().map(move |rule| (r, rule)));
    rules
        .filter_map(|(route, rule)| gatehouse_contract::RequestValidator::for_rule(route, rule))
        .filter_map(|v| v.err())
        .map(|e| format!("request validation: {e}"))
        .collect()
}

/// `gatehouse check`'s versioning guidance: printed, never failing.
pub(crate) fn print_warnings(config: &Config) {
    use std::io::Write;
    // Buffered: stderr is unbuffered, and `eprintln!` made a write call per piece of each line
    // (five per warning, 50,000 for a 10,000-route config without versions).
    let mut out = std::io::BufWriter::new(std::io::stderr().lock());
    for w in gatehouse_contract::warnings(config) {
        // Nothing useful is left to do when stderr is gone.
        let _ = writeln!(out, "warning: {}: {}", w.location, w.message);
    }
    let _ = out.flush();
}
