//! The public API as the route table exposes it: every (host, path condition) a client can reach,
//! with the rules that serve it, and a resolver that answers "which rule would take this request"
//! under the matching precedence (the same one the gateway's router applies).

use gatehouse_config::{
    Action, Config, HostMatch, KeyValueMatch, PathMatch, Route, Rule, ValueMatch,
};
use std::collections::BTreeMap;

/// A rule together with the route it belongs to.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub route: &'a Route,
    pub rule: &'a Rule,
}

impl Entry<'_> {
    /// `file:line` of the rule.
    pub fn location(&self) -> String {
        self.rule.source.to_string()
    }
}

/// A host as clients write it: `api.example.com`, `*.example.com`, or `*` for any host.
pub(crate) fn host_label(h: &HostMatch) -> String {
    match h {
        HostMatch::Exact(h) => h.clone(),
        HostMatch::Wildcard(suffix) => format!("*{suffix}"),
    }
}

/// The hosts of a route as labels; `*` when it serves any host.
pub(crate) fn host_labels(route: &Route) -> Vec<String> {
    if route.hosts.is_empty() {
        return vec!["*".into()];
    }
    route.hosts.iter().map(host_label).collect()
}

/// The path condition as one string: `/v1/tasks` (exact), `/v1/tasks/**` (prefix), `~regex`.
pub(crate) fn path_label(p: &PathMatch) -> String {
    match p {
        PathMatch::Exact(e) => e.clone(),
        PathMatch::Prefix(p) if p == "/" => "/**".into(),
        PathMatch::Prefix(p) => format!("{p}/**"),
        PathMatch::Regex(r) => format!("~{}", r.1),
    }
}

/// A method set: empty means any method (`*`).
pub(crate) fn methods_of(rule: &Rule) -> Vec<String> {
    if rule.methods.is_empty() {
        vec!["*".into()]
    } else {
        rule.methods.clone()
    }
}

/// Header and query conditions as sortable strings: `header x-env=staging`.
pub(crate) fn conditions(rule: &Rule) -> Vec<String> {
    let kv = |kind: &str, list: &[KeyValueMatch]| -> Vec<String> {
        list.iter()
            .map(|m| match &m.value {
                ValueMatch::Present => format!("{kind} {}", m.name),
                ValueMatch::Exact(v) => format!("{kind} {}={v}", m.name),
                ValueMatch::Regex(r) => format!("{kind} {}~{}", m.name, r.1),
            })
            .collect()
    };
    let mut out = kv("header", &rule.headers);
    out.extend(kv("query", &rule.query));
    out.sort();
    out
}

/// Every (host, path condition) of a config and the entries serving it, in load order.
pub(crate) type Endpoints<'a> = BTreeMap<(String, String), Vec<Entry<'a>>>;

/// The endpoints of a config.
pub(crate) fn endpoints(config: &Config) -> Endpoints<'_> {
    let mut out: Endpoints = BTreeMap::new();
    for route in &config.routes {
        for rule in &route.rules {
            for host in host_labels(route) {
                out.entry((host, path_label(&rule.path)))
                    .or_default()
                    .push(Entry { route, rule });
            }
        }
    }
    out
}

/// A request made up to ask the resolver who serves it.
pub(crate) struct Probe {
    pub host: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

impl Probe {
    /// The request that typically reaches `rule` on host label `host` with `method` (`*` = GET):
    /// its path condition's own path (regex rules have none: `None`) and its conditions satisfied.
    pub fn for_rule(rule: &Rule, host: &str, method: &str) -> Option<Probe> {
        let path = match &rule.path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.clone(),
            PathMatch::Regex(_) => return None,
        };
        let host = match host.strip_prefix('*') {
            Some("") => "any-host.invalid".to_string(),
            Some(suffix) => format!("x{suffix}"),
            None => host.to_string(),
        };
        let sample = |list: &[KeyValueMatch]| {
            list.iter()
                .map(|m| {
                    let v = match &m.value {
                        ValueMatch::Present => "1".to_string(),
                        ValueMatch::Exact(v) => v.clone(),
                        ValueMatch::Regex(r) => r.1.clone(),
                    };
                    (m.name.clone(), v)
                })
                .collect()
        };
        Some(Probe {
            host,
            method: if method == "*" {
                "GET".into()
            } else {
                method.into()
            },
            path,
            headers: sample(&rule.headers),
            query: sample(&rule.query),
        })
    }
}

fn kv_ok(conds: &[KeyValueMatch], have: &[(String, String)]) -> bool {
    conds.iter().all(|c| {
        let mut values = have.iter().filter(|(k, _)| *k == c.name).map(|(_, v)| v);
        match &c.value {
            ValueMatch::Present => values.next().is_some(),
            ValueMatch::Exact(want) => values.any(|v| v == want),
            ValueMatch::Regex(r) => values.any(|v| r.0.is_match(v)),
        }
    })
}

/// Whether `rule` accepts the probe (host already matched).
pub(crate) fn accepts(rule: &Rule, p: &Probe) -> bool {
    let path_ok = match &rule.path {
        PathMatch::Exact(e) => p.path == *e,
        PathMatch::Prefix(pre) => {
            pre == "/"
                || p.path == *pre
                || p.path
                    .strip_prefix(pre.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }
        PathMatch::Regex(r) => r.0.is_match(&p.path),
    };
    path_ok
        && (rule.methods.is_empty() || rule.methods.contains(&p.method))
        && kv_ok(&rule.headers, &p.headers)
        && kv_ok(&rule.query, &p.query)
}

/// The rule that takes the probe: exact host, then wildcards (longest suffix first), then routes
/// for any host, falling through when a class has no matching rule; within a class, precedence
/// and then load order.
pub(crate) fn resolve<'a>(config: &'a Config, p: &Probe) -> Option<Entry<'a>> {
    let mut exact = Vec::new();
    let mut wild: Vec<(usize, Entry)> = Vec::new();
    let mut any = Vec::new();
    for route in &config.routes {
        for rule in &route.rules {
            let e = Entry { route, rule };
            if route.hosts.is_empty() {
                any.push(e);
            }
            for h in &route.hosts {
                match h {
                    HostMatch::Exact(x) if *x == p.host => exact.push(e),
                    HostMatch::Wildcard(s) if p.host.len() > s.len() && p.host.ends_with(s) => {
                        wild.push((s.len(), e))
                    }
                    _ => {}
                }
            }
        }
    }
    let pick = |mut v: Vec<Entry<'a>>| {
        v.sort_by_key(|e| e.rule.precedence());
        v.into_iter().find(|e| accepts(e.rule, p))
    };
    if let Some(e) = pick(exact) {
        return Some(e);
    }
    wild.sort_by_key(|w| std::cmp::Reverse(w.0));
    let mut lengths: Vec<usize> = wild.iter().map(|w| w.0).collect();
    lengths.dedup();
    for len in lengths {
        let class = wild.iter().filter(|w| w.0 == len).map(|w| w.1).collect();
        if let Some(e) = pick(class) {
            return Some(e);
        }
    }
    pick(any)
}

/// Where a rule sends requests, for comparing destinations: backends with a share of traffic and
/// the rewrite, or the redirect / fixed response.
pub(crate) fn destination(rule: &Rule) -> String {
    match &rule.action {
        Action::Forward(bs) => {
            let mut names: Vec<String> = bs
                .iter()
                .filter(|b| b.weight > 0)
                .map(|b| b.backend.to_string())
                .collect();
            names.sort();
            format!("backend {}{}", names.join("+"), rewrite_label(rule))
        }
        Action::Redirect(r) => format!("redirect {}", redirect_label(r)),
        Action::Direct(d) => format!("fixed response {}", d.status),
    }
}

/// The rewrite as text, empty when there is none.
pub(crate) fn rewrite_label(rule: &Rule) -> String {
    use gatehouse_config::PathRewrite;
    let mut s = String::new();
    match rule.rewrite.path.as_deref() {
        Some(PathRewrite::Prefix(p)) => s.push_str(&format!(" (path prefix rewritten to {p})")),
        Some(PathRewrite::Regex(re, sub)) => {
            s.push_str(&format!(" (path rewritten {} -> {sub})", re.1))
        }
        None => {}
    }
    if let Some(h) = &rule.rewrite.host {
        s.push_str(&format!(" (host rewritten to {h})"));
    }
    s
}

/// A redirect as `308 https://host:port/path` with `*` for the parts kept from the request.
pub(crate) fn redirect_label(r: &gatehouse_config::Redirect) -> String {
    format!(
        "{} {}://{}{}{}",
        r.status,
        r.scheme.as_deref().unwrap_or("*"),
        r.host.as_deref().unwrap_or("*"),
        r.port.map(|p| format!(":{p}")).unwrap_or_default(),
        r.path.as_deref().unwrap_or("/*"),
    )
}
