//! Route lookup, within one host class: exact paths by hash, prefixes by segment trie, regexes
//! by one `RegexSet` pass; method, header and query conditions are checked only on the rules
//! those structures return as candidates, in precedence order.

use super::trie::PrefixTrie;
use super::{conditions_match, Entry};
use gatehouse_config::PathMatch;
use http::{HeaderMap, Method};
use regex::RegexSet;
use std::collections::HashMap;
use std::ops::Range;
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
///
/// Most classes at scale hold one rule (one host per Route): the parts a class may lack are
/// empty without allocating (`exact`, `regexes` boxed and absent, the trie without a root, `/`
/// rules a range), so such a class is its entry list and little else, and a router of 10,000
/// hosts stays small to build, keep and drop.
pub(crate) struct Table<T> {
    /// Every rule, in precedence order; indices below point here.
    pub(crate) entries: Vec<Arc<Entry<T>>>,
    /// Boxed: 8 bytes instead of a map's 48 in every class, and most classes have none.
    #[allow(clippy::box_collection)]
    exact: Option<Box<HashMap<Box<str>, Vec<u32>>>>,
    prefixes: PrefixTrie,
    /// Prefix `/`: matches every path, after every longer prefix. These rules are contiguous
    /// in precedence order (no other prefix is one byte long: validation has every path start
    /// with `/`), so a range names them.
    root: Range<u32>,
    regexes: Option<Box<Regexes>>,
}

impl<T> Table<T> {
    /// A class holding `entries` and not indexed yet: [`Table::index`] must run before lookups.
    /// (The router fills its classes in place, then indexes each once.)
    pub(crate) fn pending(entries: Vec<Arc<Entry<T>>>) -> Self {
        Table {
            entries,
            exact: None,
            prefixes: PrefixTrie::new(),
            root: 0..0,
            regexes: None,
        }
    }

    /// Indexes the entries, sorting them into precedence order first (a stable sort: load
    /// order breaks ties). The regex set of `previous` (the live table of the same host class,
    /// looked up only when this class has regex rules) is reused when its patterns are the same.
    pub(crate) fn index<'p>(&mut self, previous: impl FnOnce() -> Option<&'p Table<T>>)
    where
        T: 'p,
    {
        let entries = &mut self.entries;
        if entries.len() > 1 {
            entries.sort_by_key(|e| e.rule.precedence());
        }
        entries.shrink_to_fit();
        let mut exact: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut prefixes = PrefixTrie::new();
        let mut root: Option<Range<u32>> = None;
        let (mut sources, mut regex_rules) = (Vec::new(), Vec::new());
        let prefix_count = (entries.iter())
            .filter(|e| matches!(&e.rule.path, PathMatch::Prefix(p) if p != "/"))
            .count();
        prefixes.reserve(prefix_count);
        for (i, e) in entries.iter().enumerate() {
            let i = i as u32;
            match &e.rule.path {
                PathMatch::Exact(p) => exact.entry(p.as_str().into()).or_default().push(i),
                PathMatch::Prefix(p) if p == "/" => {
                    let r = root.get_or_insert(i..i);
                    debug_assert_eq!(r.end, i, "`/` rules are contiguous in precedence order");
                    r.end = i + 1;
                }
                PathMatch::Prefix(p) => prefixes.insert(p, i),
                PathMatch::Regex(r) => {
                    sources.push(r.1.as_str().into());
                    regex_rules.push(i);
                }
            }
        }
        prefixes.shrink();
        let regexes = (!sources.is_empty()).then(|| {
            Box::new(Regexes {
                set: regex_set(&sources, previous()),
                sources,
                rules: regex_rules,
            })
        });
        let with_path = regexes.as_ref().is_some_and(|r| r.set.is_none());
        for e in entries.iter() {
            // Compiles only what a new rule brings: a kept entry's regexes are compiled already.
            e.rule.compile_regexes(with_path);
        }
        self.exact = (!exact.is_empty()).then(|| Box::new(exact));
        self.prefixes = prefixes;
        self.root = root.unwrap_or(0..0);
        self.regexes = regexes;
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
        let found = (self.exact.as_ref())
            .and_then(|exact| exact.get(path))
            .and_then(|list| list.iter().copied().find(|&i| ok(i)))
            .or_else(|| self.prefixes.find(path, ok))
            .or_else(|| self.root.clone().find(|&i| ok(i)))
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
