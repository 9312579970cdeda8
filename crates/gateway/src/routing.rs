//! Request flow, step 3: route lookup. The compiled table answers "which rule serves this request?"
//! under the precedence written in DESIGN.md: exact host, then wildcard (longest suffix first), then
//! any host; within each, `Rule::precedence` (exact path, longer prefix, regex; more conditions;
//! load order).

use gatehouse_config::{Config, HostMatch, ObjectId, PathMatch, Rule, ValueMatch};
use http::{HeaderMap, Method};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

mod fingerprint;
pub(crate) mod rollout;
mod rows;
pub mod split;
mod table;
mod trie;

pub use rows::{RouteFilter, RoutePage};
use table::Table;

/// A rule as the table holds it, with the payload the runtime attaches (its compiled action).
pub struct Entry<T> {
    /// `namespace/name` of the route.
    pub route: Arc<str>,
    /// Index of the rule in its route.
    pub index: usize,
    /// The validated rule.
    pub rule: Rule,
    /// Runtime payload.
    pub target: T,
    /// Content hash of `rule` (see [`fingerprint`]), so a reload can keep an unchanged entry; 0
    /// when the builder does not reuse entries.
    pub fingerprint: u64,
}

/// The compiled route table.
pub struct Router<T> {
    exact: HashMap<Box<str>, Table<T>>,
    /// By suffix (`.example.com`).
    wildcard: HashMap<Box<str>, Table<T>>,
    any: Table<T>,
}

/// One line of the printed route table.
#[derive(Debug, Serialize)]
pub struct RouteRow {
    /// `api.example.com`, `*.example.com` or `*`.
    pub host: String,
    /// Path condition, e.g. `prefix /v1`.
    pub path: String,
    /// Other conditions, e.g. `GET,POST header:x-env=staging`.
    pub conditions: String,
    /// `namespace/name[index]`.
    pub rule: String,
    /// What happens.
    pub action: String,
}

impl<T> Router<T> {
    /// Compiles the table; `target` builds the payload of each rule.
    pub fn build(config: &Config, mut target: impl FnMut(&Arc<str>, &Rule) -> T) -> Self {
        Self::build_with(config, |route, index, rule| {
            let route = route.shared();
            Arc::new(Entry {
                route: route.clone(),
                index,
                rule: rule.clone(),
                target: target(route, rule),
                fingerprint: 0,
            })
        })
    }

    /// Compiles the table from entries `entry` makes (or reuses) for each rule, given the route
    /// name and the rule's index in its route.
    pub fn build_with(
        config: &Config,
        entry: impl FnMut(&RouteName, usize, &Rule) -> Arc<Entry<T>>,
    ) -> Self {
        Self::build_reusing(config, None, entry)
    }

    /// [`Router::build_with`], taking over from `previous` (the live table) what does not
    /// depend on the entries themselves: a host class's regex set when its patterns are the
    /// same.
    pub fn build_reusing(
        config: &Config,
        previous: Option<&Router<T>>,
        mut entry: impl FnMut(&RouteName, usize, &Rule) -> Arc<Entry<T>>,
    ) -> Self {
        // Sized like the live table: a reload mostly keeps its hosts. Classes are filled in
        // place and indexed once full (no second map of per-class lists).
        let mut classes = Classes {
            exact: HashMap::with_capacity(previous.map_or(0, |p| p.exact.len())),
            wildcard: HashMap::with_capacity(previous.map_or(0, |p| p.wildcard.len())),
            last: None,
        };
        let mut any = Vec::new();
        let mut text = String::new();
        for route in &config.routes {
            let name = RouteName::new(&mut text, &route.id);
            for (index, rule) in route.rules.iter().enumerate() {
                let e = entry(&name, index, rule);
                let Some((last, others)) = route.hosts.split_last() else {
                    any.push(e);
                    continue;
                };
                for h in others {
                    classes.add(h, e.clone());
                }
                classes.add(last, e);
            }
        }
        let Classes {
            mut exact,
            mut wildcard,
            ..
        } = classes;
        // The live table of a class is looked up only by a class with regex rules.
        for (k, t) in &mut exact {
            t.index(|| previous?.exact.get(k));
        }
        for (k, t) in &mut wildcard {
            t.index(|| previous?.wildcard.get(k));
        }
        let mut any = Table::pending(any);
        any.index(|| previous.map(|p| &p.any));
        Router {
            exact,
            wildcard,
            any,
        }
    }

    /// The rule serving a request, if any. `host` is lowercase without port.
    ///
    /// Cost: one hash probe for the exact host, one per `.` of the host for wildcards (the
    /// suffix after each dot, longest first, which is the documented order), and within a class
    /// one probe per path segment plus one regex-set pass; never a scan of the rules.
    pub fn lookup<'a>(
        &'a self,
        host: &str,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<&'a Arc<Entry<T>>> {
        let find = |t: &'a Table<T>| t.find(method, path, query, headers);
        if let Some(found) = self.exact.get(host).and_then(find) {
            return Some(found);
        }
        if !self.wildcard.is_empty() {
            // A wildcard suffix matches when the host is longer and ends with it; suffixes start
            // with `.`, so the candidates are the host's tails from each dot after the first byte.
            let dots = host.bytes().enumerate().skip(1).filter(|&(_, b)| b == b'.');
            for (at, _) in dots {
                if let Some(found) = self.wildcard.get(&host[at..]).and_then(find) {
                    return Some(found);
                }
            }
        }
        find(&self.any)
    }

    /// The first rule `accept` takes among the Routes whose `hosts` name `host` (exact, then
    /// wildcard, longest suffix first): how a TLS passthrough listener picks a Route by the SNI
    /// name. Routes without `hosts` are left out: they match every HTTP request, and a catch-all
    /// for any encrypted connection must be asked for by name (a wildcard) rather than happen by
    /// accident.
    pub fn lookup_host<'a>(
        &'a self,
        host: &str,
        accept: impl Fn(&T) -> bool,
    ) -> Option<&'a Arc<Entry<T>>> {
        let first = |t: &'a Table<T>| t.entries.iter().find(|e| accept(&e.target));
        if let Some(found) = self.exact.get(host).and_then(first) {
            return Some(found);
        }
        let dots = host.bytes().enumerate().skip(1).filter(|&(_, b)| b == b'.');
        dots.into_iter()
            .find_map(|(at, _)| self.wildcard.get(&host[at..]).and_then(first))
    }

    /// Every distinct entry of the table, each once (a rule serving several hosts sits in
    /// several classes), in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry<T>>> {
        let mut seen = std::collections::HashSet::new();
        // An entry only one class holds has a strong count of 1 while the router is borrowed
        // (no class can let go of it): it needs no set. One several classes hold counts at
        // least 2 and goes through the set, as does one a request or another snapshot also
        // holds. (At 10,000 hosts, sorting the classes and a set of every entry were most of
        // indexing the live table on a reload.)
        (self.exact.values())
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.any))
            .flat_map(|t| t.entries.iter())
            .filter(move |e| Arc::strong_count(e) == 1 || seen.insert(Arc::as_ptr(e)))
    }

    /// How many entries the classes hold together: [`Router::entries`] yields at most this many.
    pub(crate) fn entry_slots(&self) -> usize {
        (self.exact.values())
            .chain(self.wildcard.values())
            .map(|t| t.entries.len())
            .sum::<usize>()
            + self.any.entries.len()
    }

    /// Host classes in lookup order: exact hosts (sorted), wildcards (longest suffix first),
    /// any host; each with its display name.
    fn classes(&self) -> impl Iterator<Item = (String, &Table<T>)> {
        let mut hosts: Vec<_> = self.exact.iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        let mut wild: Vec<_> = self.wildcard.iter().collect();
        wild.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        let exact = hosts.into_iter().map(|(h, t)| (h.to_string(), t));
        let wild = wild.into_iter().map(|(s, t)| (format!("*{s}"), t));
        exact
            .chain(wild)
            .chain(std::iter::once(("*".to_string(), &self.any)))
    }
}

/// The `namespace/name` of the Route whose rules are being built: its text, written without
/// the formatting machinery into a buffer reused from Route to Route, and a shared copy made
/// the first time an entry needs one. A reload that keeps a rule keeps the name its entry
/// holds: 10,000 kept Routes allocate no name.
pub struct RouteName<'a> {
    text: &'a str,
    shared: std::cell::OnceCell<Arc<str>>,
}

impl<'a> RouteName<'a> {
    /// The name of `id`, written into `buf`.
    fn new(buf: &'a mut String, id: &ObjectId) -> Self {
        buf.clear();
        id.push_to(buf);
        RouteName {
            text: buf,
            shared: std::cell::OnceCell::new(),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        self.text
    }

    /// The name as an entry holds it, made on first use and then shared by the Route's rules.
    pub fn shared(&self) -> &Arc<str> {
        self.shared.get_or_init(|| self.text.into())
    }
}

/// The host classes of a table being built, filled rule by rule and indexed once full.
struct Classes<'c, T> {
    exact: HashMap<Box<str>, Table<T>>,
    wildcard: HashMap<Box<str>, Table<T>>,
    /// The host the previous rule went to, whose class therefore exists.
    last: Option<&'c HostMatch>,
}

impl<'c, T> Classes<'c, T> {
    /// Adds `e` to the class of `host`, making the class (not indexed yet) on its first rule.
    /// One hash a rule either way: a host other than the previous rule's is mostly a new one
    /// (one host per Route), whose key must be allocated anyway; the same host as the previous
    /// rule's (many Routes of one host) is found without allocating.
    fn add(&mut self, host: &'c HostMatch, e: Arc<Entry<T>>) {
        let known = self.last == Some(host);
        self.last = Some(host);
        let (map, key) = match host {
            HostMatch::Exact(x) => (&mut self.exact, x),
            HostMatch::Wildcard(w) => (&mut self.wildcard, w),
        };
        if known {
            if let Some(t) = map.get_mut(key.as_str()) {
                t.entries.push(e);
                return;
            }
        }
        (map.entry(key.as_str().into()))
            .or_insert_with(|| Table::pending(Vec::with_capacity(1)))
            .entries
            .push(e);
    }
}

/// A content hash of a rule, its definition site (file and line) left out: equal fingerprints
/// mean a reload can keep the rule's compiled entry, also when lines were added above it.
pub fn fingerprint(rule: &Rule) -> u64 {
    // Written through the rule's `Serialize` form, so it covers everything `GET /config` shows
    // of the rule; a binary encoding, since formatting JSON was most of the cost (~7,000
    // instructions a rule, 72 M a reload of 10,000 rules).
    fingerprint::hash(rule)
}

/// Method, header and query conditions of a rule, for route tables.
fn conditions(rule: &Rule) -> String {
    let mut parts = Vec::new();
    if !rule.methods.is_empty() {
        parts.push(rule.methods.join(","));
    }
    let kv = |kind: &str, m: &gatehouse_config::KeyValueMatch| match &m.value {
        ValueMatch::Present => format!("{kind}:{}", m.name),
        ValueMatch::Exact(v) => format!("{kind}:{}={v}", m.name),
        ValueMatch::Regex(r) => format!("{kind}:{}~{}", m.name, r.1.as_str()),
    };
    parts.extend(rule.headers.iter().map(|m| kv("header", m)));
    parts.extend(rule.query.iter().map(|m| kv("query", m)));
    parts.join(" ")
}

/// Whether a request satisfies every condition of a rule (host already matched).
pub fn rule_matches(
    rule: &Rule,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> bool {
    let path_ok = match &rule.path {
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => prefix_matches(p, path),
        PathMatch::Regex(r) => r.0.is_match(path),
    };
    path_ok && conditions_match(rule, method, query, headers)
}

/// Whether a request satisfies a rule's method, header and query conditions (path and host
/// already matched).
pub fn conditions_match(
    rule: &Rule,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
) -> bool {
    if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == method.as_str()) {
        return false;
    }
    for h in &rule.headers {
        let mut values = headers.get_all(h.name.as_str()).iter();
        let ok = match &h.value {
            ValueMatch::Present => values.next().is_some(),
            ValueMatch::Exact(want) => values.any(|v| v.as_bytes() == want.as_bytes()),
            ValueMatch::Regex(r) => values.any(|v| v.to_str().is_ok_and(|s| r.0.is_match(s))),
        };
        if !ok {
            return false;
        }
    }
    for q in &rule.query {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
        let mut values = pairs.filter(|(k, _)| k == q.name.as_str()).map(|(_, v)| v);
        let ok = match &q.value {
            ValueMatch::Present => values.next().is_some(),
            ValueMatch::Exact(want) => values.any(|v| v == want.as_str()),
            ValueMatch::Regex(r) => values.any(|v| r.0.is_match(&v)),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Segment-aware prefix: `/v1/tasks` matches `/v1/tasks` and `/v1/tasks/7`, not `/v1/tasks7`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::{load_sources, SourceFile};

    fn router(yaml: &str) -> Router<()> {
        let config = load_sources(&[SourceFile {
            name: "t.yaml".into(),
            text: yaml.into(),
        }])
        .unwrap_or_else(|e| panic!("{e}"));
        Router::build(&config, |_, _| ())
    }

    fn find(
        r: &Router<()>,
        host: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Option<String> {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r.lookup(host, &method.parse().unwrap(), path, query, &h)
            .map(|e| format!("{}[{}]", e.route, e.index))
    }

    const TABLE: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec: {endpoints: ["127.0.0.1:1"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: any}
spec:
  rules:
    - match: {path: {prefix: /}}
      backends: [{backend: b}]
    - match: {path: {prefix: /v1/tasks}}
      backends: [{backend: b}]
    - match: {path: {prefix: /v1}}
      backends: [{backend: b}]
    - match: {path: {exact: /v1/tasks/special}}
      backends: [{backend: b}]
    - match: {path: {prefix: /v1/tasks}, headers: [{name: x-env, value: staging}]}
      backends: [{backend: b}]
    - match: {path: {prefix: /v1/tasks}, methods: [POST], query: [{name: version, value: "2"}]}
      backends: [{backend: b}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: wild}
spec:
  hosts: ["*.example.com"]
  rules:
    - match: {path: {prefix: /v1}}
      backends: [{backend: b}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: exact}
spec:
  hosts: ["api.example.com"]
  rules:
    - match: {path: {prefix: /v1/tasks}}
      backends: [{backend: b}]
    - match: {path: {regex: "/re/[0-9]+"}}
      backends: [{backend: b}]
"#;

    #[test]
    fn precedence_table() {
        let r = router(TABLE);
        // host, method, uri, headers, expected rule
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            // host class first: exact host beats wildcard beats any
            (
                "api.example.com",
                "GET",
                "/v1/tasks/1",
                &[],
                "default/exact[0]",
            ),
            (
                "web.example.com",
                "GET",
                "/v1/tasks/1",
                &[],
                "default/wild[0]",
            ),
            ("other.org", "GET", "/v1/tasks/1", &[], "default/any[1]"),
            // falling through to a less specific host class when nothing matches
            (
                "api.example.com",
                "GET",
                "/v1/other",
                &[],
                "default/wild[0]",
            ),
            (
                "api.example.com",
                "GET",
                "/elsewhere",
                &[],
                "default/any[0]",
            ),
            ("api.example.com", "GET", "/re/42", &[], "default/exact[1]"),
            ("example.com", "GET", "/v1/x", &[], "default/any[2]"),
            // exact beats prefix; longer prefix beats shorter; segment-aware prefixes
            ("h", "GET", "/v1/tasks/special", &[], "default/any[3]"),
            ("h", "GET", "/v1/tasks", &[], "default/any[1]"),
            ("h", "GET", "/v1/tasks7", &[], "default/any[2]"),
            ("h", "GET", "/v1", &[], "default/any[2]"),
            ("h", "GET", "/v10", &[], "default/any[0]"),
            // more conditions win
            (
                "h",
                "GET",
                "/v1/tasks/1",
                &[("x-env", "staging")],
                "default/any[4]",
            ),
            ("h", "POST", "/v1/tasks/1?version=2", &[], "default/any[5]"),
            ("h", "POST", "/v1/tasks/1?version=3", &[], "default/any[1]"),
            ("h", "GET", "/v1/tasks/1?version=2", &[], "default/any[1]"),
            // two conditions (method + query) beat one (header)
            (
                "h",
                "POST",
                "/v1/tasks/1?version=2",
                &[("x-env", "staging")],
                "default/any[5]",
            ),
        ];
        for (host, method, uri, headers, want) in cases {
            assert_eq!(
                find(&r, host, method, uri, headers).as_deref(),
                Some(*want),
                "{host} {method} {uri}"
            );
        }
    }

    #[test]
    fn entries_yields_each_rule_once_whatever_holds_it() {
        let yaml = TABLE.to_string()
            + r#"---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: multi}
spec:
  hosts: ["a.example.com", "*.example.org", "api.example.com"]
  rules:
    - match: {path: {prefix: /m}}
      backends: [{backend: b}]
    - match: {path: {exact: /m/x}}
      backends: [{backend: b}]
"#;
        let r = router(&yaml);
        let names = |r: &Router<()>| {
            let mut v: Vec<String> = r
                .entries()
                .map(|e| format!("{}[{}]", e.route, e.index))
                .collect();
            v.sort();
            v
        };
        // 6 rules of `any`, 1 of `wild`, 2 of `exact`, 2 of `multi`.
        let all = names(&r);
        assert_eq!(all.len(), 11, "{all:?}");
        all.windows(2).for_each(|w| assert_ne!(w[0], w[1]));
        // `multi`'s rules sit in three classes each.
        assert_eq!(r.entry_slots(), 11 + 2 * 2);
        // A rule held from outside too (a request in flight) is still yielded once.
        let held: Vec<_> = r.entries().cloned().collect();
        assert_eq!(names(&r), all);
        drop(held);
    }

    #[test]
    fn a_large_class_sorts_by_precedence_keeping_load_order_among_equals() {
        // 83 rules in one class: precedence first, load order among equals.
        // `TABLE`'s Backend, and one Route of its own.
        let backend = TABLE.split("---").next().unwrap_or_default();
        let mut yaml = format!(
            "{backend}---\napiVersion: gatehouse.dev/v1alpha1\nkind: Route\nmetadata: {{name: big}}\nspec:\n  rules:\n"
        );
        let rule = |m: &str| format!("    - match: {m}\n      backends: [{{backend: b}}]\n");
        for i in 0..40 {
            yaml += &rule(&format!(
                "{{path: {{prefix: /a}}, headers: [{{name: x-h{i}}}]}}"
            ));
        }
        for i in 0..40 {
            let two = format!("[{{name: x-h{i}}}, {{name: x-env, value: staging}}]");
            yaml += &rule(&format!("{{path: {{prefix: /a}}, headers: {two}}}"));
        }
        yaml += &rule("{path: {prefix: /a/b}}");
        yaml += &rule("{path: {exact: /a/b/c}}");
        yaml += &rule("{path: {prefix: /a}}");
        let r = router(&yaml);
        let both = [("x-h7", "1"), ("x-h3", "1")];
        // Equal precedence: load order (3 before 7); more conditions first; no condition last.
        assert_eq!(
            find(&r, "h", "GET", "/a/x", &both).as_deref(),
            Some("default/big[3]")
        );
        let staging = [("x-h7", "1"), ("x-h3", "1"), ("x-env", "staging")];
        assert_eq!(
            find(&r, "h", "GET", "/a/x", &staging).as_deref(),
            Some("default/big[43]")
        );
        assert_eq!(
            find(&r, "h", "GET", "/a/x", &[]).as_deref(),
            Some("default/big[82]")
        );
        // A longer prefix beats conditions; an exact path beats prefixes.
        assert_eq!(
            find(&r, "h", "GET", "/a/b/d", &both).as_deref(),
            Some("default/big[80]")
        );
        assert_eq!(
            find(&r, "h", "GET", "/a/b/c", &both).as_deref(),
            Some("default/big[81]")
        );
    }

    #[test]
    fn no_route_when_nothing_matches() {
        let r = router(&TABLE.replace(
            "    - match: {path: {prefix: /}}\n      backends: [{backend: b}]\n",
            "",
        ));
        assert_eq!(find(&r, "h", "GET", "/nothing", &[]), None);
    }
}
