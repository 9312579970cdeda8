//! Config flow, validation and the route table: a rule's regular expression, checked for syntax
//! when the config is validated and compiled once, on first use, by whichever snapshot uses it
//! first (a reload that keeps a rule keeps its compiled regex; `check` compiles none).

use serde::{Serialize, Serializer};
use std::cell::Cell;
use std::ops::Deref;
use std::sync::OnceLock;

/// A regular expression (anchored where the match must be whole) and the pattern as written,
/// which is what tables and JSON show.
#[derive(Debug, Clone)]
pub struct Pattern(pub LazyRegex, pub String);

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.1)
    }
}

/// A regex whose syntax validation accepted, compiled on first dereference.
#[derive(Debug, Clone)]
pub struct LazyRegex {
    /// The full expression, anchoring included.
    full: Box<str>,
    compiled: OnceLock<regex::Regex>,
}

impl LazyRegex {
    /// Wraps an expression validation accepted (see [`check_syntax`]).
    pub(crate) fn new(full: String) -> Self {
        LazyRegex {
            full: full.into(),
            compiled: OnceLock::new(),
        }
    }

    /// Wraps a regex validation compiled to check its size (and counts that compilation).
    pub(crate) fn compiled(re: regex::Regex) -> Self {
        count_regex_compilation();
        let lazy = LazyRegex::new(re.as_str().to_string());
        let _ = lazy.compiled.set(re);
        lazy
    }

    /// The full expression, anchoring included.
    pub fn full(&self) -> &str {
        &self.full
    }

    /// Whether it has been compiled yet.
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

impl Deref for LazyRegex {
    type Target = regex::Regex;

    fn deref(&self) -> &regex::Regex {
        self.compiled.get_or_init(|| {
            count_regex_compilation();
            // Syntax was checked by validation; the only other failure is the compiled size
            // limit, which validation checks by compiling the patterns that could reach it
            // (see `needs_compiling`). Should one still get past it, a larger limit keeps the
            // rule matching what it says rather than failing a request.
            regex::Regex::new(&self.full).unwrap_or_else(|_| {
                regex::RegexBuilder::new(&self.full)
                    .size_limit(1 << 30)
                    .build()
                    .unwrap_or_else(|_| never_matching())
            })
        })
    }
}

impl crate::Rule {
    /// Compiles the rule's regexes that are not compiled yet, so that no request pays for it:
    /// header, query and override conditions, the path rewrite, and the path condition when
    /// `with_path` (a route table that matches paths with a combined set never uses it).
    pub fn compile_regexes(&self, with_path: bool) {
        let force = |kv: &crate::KeyValueMatch| {
            if let crate::ValueMatch::Regex(p) = &kv.value {
                let _ = &*p.0;
            }
        };
        self.headers.iter().chain(&self.query).for_each(force);
        for o in &self.release.overrides {
            (o.headers
                .iter()
                .chain(&o.cookies)
                .chain(&o.query)
                .chain(&o.claims))
            .for_each(force);
        }
        if let Some(crate::PathRewrite::Regex(p, _)) = self.rewrite.path.as_deref() {
            let _ = &*p.0;
        }
        if let (true, crate::PathMatch::Regex(p)) = (with_path, &self.path) {
            let _ = &*p.0;
        }
    }
}

/// A regex no path or value matches (the last resort of [`LazyRegex`]'s compilation).
fn never_matching() -> regex::Regex {
    #[allow(clippy::unwrap_used)]
    regex::Regex::new(r"[^\s\S]").unwrap()
}

/// Whether validation should compile `pattern` rather than only parse it: counted repetitions
/// and long patterns are the ones whose compiled form can exceed the regex crate's size limit
/// (an error `check` must report); every other pattern is far below it.
pub(crate) fn needs_compiling(pattern: &str) -> bool {
    pattern.len() > 256 || pattern.contains('{')
}

/// The syntax error of `full`, if any, as the regex crate would report it.
pub(crate) fn check_syntax(full: &str) -> Result<(), String> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(full)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

thread_local! {
    /// Regex compilations on this thread (rules' regexes and route tables' regex sets).
    static COMPILATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts one regex compilation on this thread (see [`regex_compilations`]).
#[doc(hidden)]
pub fn count_regex_compilation() {
    COMPILATIONS.with(|c| c.set(c.get() + 1));
}

/// Regex compilations on the calling thread so far: lets tests assert that a reload compiled
/// only what changed, without timing anything.
#[doc(hidden)]
pub fn regex_compilations() -> u64 {
    COMPILATIONS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors of a one-route config whose rule matches the path `regex`.
    fn errors(regex: &str) -> String {
        let yaml = format!(
            r#"apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: r}}
spec:
  rules:
    - match: {{path: {{regex: '{regex}'}}}}
      directResponse: {{status: 200}}
"#
        );
        let source = crate::SourceFile {
            name: "t.yaml".into(),
            text: yaml,
        };
        match crate::load_sources(&[source]) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_syntax_check_reports_what_compiling_reports() {
        for bad in [
            "/a(",
            "/[z-a]",
            "/\\p{Nope}",
            "/(?P<x>a)(?P<x>b)",
            "/a{2,1}",
        ] {
            let full = format!("^(?:{bad})$");
            let want = regex::Regex::new(&full).unwrap_err().to_string();
            assert_eq!(check_syntax(&full).unwrap_err(), want, "{bad}");
        }
        assert!(check_syntax("^(?:/v[0-9]+/(users|teams)/.*)$").is_ok());
    }

    #[test]
    fn validation_reports_bad_and_oversized_regexes_and_compiles_the_rest_lazily() {
        let e = errors("/a(");
        assert!(
            e.contains("t.yaml:6:") && e.contains("invalid regex `/a(`"),
            "{e}"
        );
        // Valid syntax, but past the regex crate's compiled size limit: still a config error.
        let e = errors("/\\w{1000}{1000}");
        assert!(
            e.contains("invalid regex") && e.contains("size limit"),
            "{e}"
        );
        let before = regex_compilations();
        assert_eq!(errors("/v[0-9]+/.*"), "");
        assert_eq!(regex_compilations(), before, "a plain pattern was compiled");
        let lazy = LazyRegex::new("^(?:/v[0-9]+)$".into());
        assert!(!lazy.is_compiled());
        assert!(lazy.is_match("/v12") && !lazy.is_match("/v"));
        assert!(lazy.is_compiled());
        assert_eq!(regex_compilations(), before + 1);
    }
}
