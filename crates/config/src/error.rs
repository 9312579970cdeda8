//! Config flow, every step: the one error type a config problem becomes, with file, line, column and
//! field path, and the "did you mean" helper used for misspelt fields and references.

use crate::yaml::Mark;
use std::fmt;
use std::sync::Arc;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (as given on the command line, or `<embedded>`).
    pub file: Arc<str>,
    /// Where in the file.
    pub mark: Mark,
    /// The object the problem belongs to, such as `Route team-tasks/tasks-v1`; empty for file-level errors.
    pub object: String,
    /// The field path inside the object, such as `spec.rules[0].backends[1].backend`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mark.line == 0 {
            // File-level problems (unreadable file) have no position.
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.mark.line, self.mark.col)?;
        }
        match (self.object.is_empty(), self.path.is_empty()) {
            (true, true) => {}
            (true, false) => write!(f, "{}: ", self.path)?,
            (false, true) => write!(f, "{}: ", self.object)?,
            (false, false) => write!(f, "{} {}: ", self.object, self.path)?,
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one load, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` or nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(word, candidates) {
        Some(c) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("adress", ["address", "weight"]),
            Some("address")
        );
        assert_eq!(
            did_you_mean("Endpionts", ["endpoints", "protocol"]),
            Some("endpoints")
        );
        assert_eq!(did_you_mean("zzz", ["address", "weight"]), None);
    }
}
