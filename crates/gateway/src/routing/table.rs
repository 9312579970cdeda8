//! Route lookup, within one host class: exact paths by hash, prefixes by segment trie, regexes
//! by one `RegexSet` pass; method, header and query conditions are checked only on the rules
//! those structures return as candidates, in precedence order.

use super::trie::PrefixTrie;
use super::{conditions_match, Entry};
use gatehouse_config::PathMatch;
use http::{HeaderMap, Method};
use regex::RegexSet;
use std::collections::HashMap;
use std::sync::Arc;

/// The regex rules of a class, compiled together: one scan of the path names every candidate.
struct Regexes {
    /// `None` when the combined set exceeds the regex crate's size limit: each rule's own
    /// regex is then tried in turn (slower, never wrong).
    set: Option<RegexSet>,
    /// The patterns of `set` as written, in order: a reload whose table has the same list
    /// takes the set over instead of compiling it again.
    sources: Vec<Box<str>>,
    /// Table index of the rule behind each pattern of `set`, in precedence order.
    rules: Vec<u32>,
}

/// The rules of one host class (one exact host, one wildcard suffix, or any host).
pub(crate) struct Table<T> {
    /// Every rule, in precedence order; indices below point here.
    pub(crate) entries: Vec<Arc<Entry<T>>>,
    exact: HashMap<Box<str>, Vec<u32>>,
    prefixes: PrefixTrie,
    /// Prefix `/`: matches every path, after every longer prefix.
    root: Vec<u32>,
    regexes: Option<Regexes>,
}

impl<T> Table<T> {
    /// Indexes `entries`, sorting them into precedence order first (a stable sort: load order
    /// breaks ties). The regex set of `previous` (the live table of the same host class) is
    /// reused when its patterns are the same.
    pub(crate) fn new(mut entries: Vec<Arc<Entry<T>>>, previous: Option<&Table<T>>) -> Self {
        entries.sort_by_key(|e| e.rule.precedence());
        entries.shrink_to_fit();
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut prefixes = PrefixTrie::new();
        let mut root = Vec::new();
        let (mut sources, mut regex_rules) = (Vec::new(), Vec::new());
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            match &e.rule.path {
                PathMatch::Exact(p) => exact.entry(p.as_str().into()).or_default().push(i),
                PathMatch::Prefix(p) if p == "/" => root.push(i),
                PathMatch::Prefix(p) => prefixes.insert(p, i),
                PathMatch::Regex(r) => {
                    sources.push(r.1.as_str().into());
                    regex_rules.push(i);
                }
            }
        }
        prefixes.shrink();
        let regexes = (!sources.is_empty()).then(|| Regexes {
            set: regex_set(&sources, previous),
            sources,
            rules: regex_rules,
        });
        let with_path = regexes.as_ref().is_some_and(|r| r.set.is_none());
        for e in &entries {
            // Compiles only what a new rule brings: a kept entry's regexes are compiled already.
            e.rule.compile_regexes(with_path);
        }
        Table {
            entries,
            exact,
            prefixes,
            root,
            regexes,
        }
    }

    /// The first rule in precedence order that the request satisfies.
    pub(crate) fn find(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<&Arc<Entry<T>>> {
        let ok = |i: u32| conditions_match(&self.entries[i as usize].rule, method, query, headers);
        let found = self
            .exact
            .get(path)
            .and_then(|list| list.iter().copied().find(|&i| ok(i)))
            .or_else(|| self.prefixes.find(path, ok))
            .or_else(|| self.root.iter().copied().find(|&i| ok(i)))
            .or_else(|| self.regex(path, ok));
        found.map(|i| &self.entries[i as usize])
    }

    /// The first regex rule matching `path` whose conditions hold.
    fn regex(&self, path: &str, ok: impl Fn(u32) -> bool) -> Option<u32> {
        let re = self.regexes.as_ref()?;
        let Some(set) = &re.set else {
            return re.rules.iter().copied().find(|&i| {
                let rule = &self.entries[i as usize].rule;
                matches!(&rule.path, PathMatch::Regex(r) if r.0.is_match(path)) && ok(i)
            });
        };
        // `matches` allocates; most requests to a class with regexes match none of them, and
        // `is_match` answers those without allocating.
        if !set.is_match(path) {
            return None;
        }
        set.matches(path)
            .iter()
            .map(|k| re.rules[k])
            .find(|&i| ok(i))
    }
}

/// The combined set of the regex rules `sources`, taken over from `previous` when it holds the
/// same patterns in the same order (compiling 500 patterns together costs more than the rest
/// of a table). `None` when the set exceeds the regex crate's size limit.
fn regex_set<T>(sources: &[Box<str>], previous: Option<&Table<T>>) -> Option<RegexSet> {
    let old = previous.and_then(|t| t.regexes.as_ref());
    if let Some(old) = old.filter(|old| old.sources == sources) {
        return old.set.clone();
    }
    gatehouse_config::count_regex_compilation();
    // The same anchoring validation gives each rule's own regex.
    RegexSet::new(sources.iter().map(|p| format!("^(?:{p})$"))).ok()
}
