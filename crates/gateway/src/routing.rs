//! Request flow, step 3: route lookup. The compiled table answers "which rule serves this request?"
//! under the precedence written in DESIGN.md: exact host, then wildcard (longest suffix first), then
//! any host; within each, `Rule::precedence` (exact path, longer prefix, regex; more conditions;
//! load order).

use gatehouse_config::{Config, HostMatch, PathMatch, Rule, ValueMatch};
use http::{HeaderMap, Method};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

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
}

/// Rules of one host class, in precedence order.
type Rules<T> = Vec<Arc<Entry<T>>>;

/// The compiled route table.
pub struct Router<T> {
    exact: HashMap<Box<str>, Rules<T>>,
    /// By suffix (`.example.com`), longest first.
    wildcard: Vec<(Box<str>, Rules<T>)>,
    any: Rules<T>,
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
        let mut exact: HashMap<Box<str>, Vec<Arc<Entry<T>>>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<Arc<Entry<T>>>> = HashMap::new();
        let mut any = Vec::new();
        for route in &config.routes {
            let name: Arc<str> = route.id.to_string().into();
            for (index, rule) in route.rules.iter().enumerate() {
                let entry = Arc::new(Entry {
                    route: name.clone(),
                    index,
                    rule: rule.clone(),
                    target: target(&name, rule),
                });
                if route.hosts.is_empty() {
                    any.push(entry.clone());
                }
                for h in &route.hosts {
                    match h {
                        HostMatch::Exact(e) => exact
                            .entry(e.as_str().into())
                            .or_default()
                            .push(entry.clone()),
                        HostMatch::Wildcard(w) => wildcard
                            .entry(w.as_str().into())
                            .or_default()
                            .push(entry.clone()),
                    }
                }
            }
        }
        let sort = |v: &mut Vec<Arc<Entry<T>>>| v.sort_by_key(|e| e.rule.precedence());
        exact.values_mut().for_each(sort);
        let mut wildcard: Vec<_> = wildcard.into_iter().collect();
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        wildcard.iter_mut().for_each(|(_, v)| sort(v));
        sort(&mut any);
        Router {
            exact,
            wildcard,
            any,
        }
    }

    /// The rule serving a request, if any. `host` is lowercase without port.
    pub fn lookup<'a>(
        &'a self,
        host: &str,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<&'a Arc<Entry<T>>> {
        let scan = |rules: &'a [Arc<Entry<T>>]| {
            rules
                .iter()
                .find(|e| rule_matches(&e.rule, method, path, query, headers))
        };
        if let Some(found) = self.exact.get(host).and_then(|r| scan(r)) {
            return Some(found);
        }
        for (suffix, rules) in &self.wildcard {
            if host.len() > suffix.len() && host.ends_with(&**suffix) {
                if let Some(found) = scan(rules) {
                    return Some(found);
                }
            }
        }
        scan(&self.any)
    }

    /// The first rule `accept` takes among the Routes whose `hosts` name `host` (exact, then
    /// wildcard): how a TLS passthrough listener picks a Route by the SNI name. Routes without
    /// `hosts` are left out: they match every HTTP request, and a catch-all for any encrypted
    /// connection must be asked for by name (a wildcard) rather than happen by accident.
    pub fn lookup_host(&self, host: &str, accept: impl Fn(&T) -> bool) -> Option<&Arc<Entry<T>>> {
        let first = |rules: &Rules<T>| rules.iter().position(|e| accept(&e.target));
        if let Some(rules) = self.exact.get(host) {
            if let Some(i) = first(rules) {
                return rules.get(i);
            }
        }
        (self.wildcard.iter())
            .filter(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
            .find_map(|(_, rules)| first(rules).and_then(|i| rules.get(i)))
    }

    /// The table in lookup order, for `gatehouse routes` and `GET /routes`.
    pub fn rows(&self, action: impl Fn(&Rule) -> String) -> Vec<RouteRow> {
        let mut out = Vec::new();
        let mut push = |host: &str, rules: &[Arc<Entry<T>>]| {
            for e in rules {
                out.push(RouteRow {
                    host: host.to_string(),
                    path: match &e.rule.path {
                        PathMatch::Exact(p) => format!("exact {p}"),
                        PathMatch::Prefix(p) => format!("prefix {p}"),
                        PathMatch::Regex(r) => format!("regex {}", r.1.as_str()),
                    },
                    conditions: conditions(&e.rule),
                    rule: format!("{}[{}]", e.route, e.index),
                    action: action(&e.rule),
                });
            }
        };
        let mut hosts: Vec<_> = self.exact.iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        for (h, rules) in hosts {
            push(h, rules);
        }
        for (suffix, rules) in &self.wildcard {
            push(&format!("*{suffix}"), rules);
        }
        push("*", &self.any);
        out
    }
}

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
    if !path_ok {
        return false;
    }
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
    fn no_route_when_nothing_matches() {
        let r = router(&TABLE.replace(
            "    - match: {path: {prefix: /}}\n      backends: [{backend: b}]\n",
            "",
        ));
        assert_eq!(find(&r, "h", "GET", "/nothing", &[]), None);
    }
}
