//! `gatehouse check`, versioning guidance: warnings (never errors) about public routes without a
//! version in their path or host, and about two versions of one API whose rules overlap.

use crate::table::{host_labels, Entry, Probe};
use gatehouse_config::{Config, PathMatch, Route, Rule};

/// One warning, located at the rule it is about.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Warning {
    /// `file:line`.
    pub location: String,
    /// What to consider.
    pub message: String,
}

/// The version token of a segment or label: `v1`, `v2beta`, `v1.2` -> `v1`, ...; `None` otherwise.
fn version_token(s: &str) -> Option<String> {
    let rest = s.strip_prefix('v').or_else(|| s.strip_prefix('V'))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("v{digits}"))
}

fn path_text(rule: &Rule) -> &str {
    match &rule.path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        PathMatch::Regex(r) => &r.1,
    }
}

/// The API version a rule serves, from its path, its route's hosts, or a version header/query
/// condition; `None` when it has none.
fn version_of(route: &Route, rule: &Rule) -> Option<String> {
    let from_path = path_text(rule)
        .split(['/', '(', ')', '?', '|'])
        .find_map(version_token);
    let from_host = || {
        host_labels(route)
            .iter()
            .find_map(|h| h.split(['.', '-']).find_map(version_token))
    };
    let from_condition = || {
        rule.headers
            .iter()
            .chain(&rule.query)
            .find(|kv| kv.name.contains("version"))
            .map(|kv| match &kv.value {
                gatehouse_config::ValueMatch::Exact(v) => format!("{}={v}", kv.name),
                _ => kv.name.clone(),
            })
    };
    from_path.or_else(from_host).or_else(from_condition)
}

/// The path with its version segment blanked: what two versions of one API have in common.
fn api_shape(rule: &Rule) -> String {
    path_text(rule)
        .split('/')
        .map(|s| if version_token(s).is_some() { "{v}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Versioning warnings for a config.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut versioned: Vec<(String, Entry)> = Vec::new();
    for route in &config.routes {
        for rule in route.rules.iter().filter(|r| crate::diff::forwards(r)) {
            match version_of(route, rule) {
                None => out.push(Warning {
                    location: rule.source.to_string(),
                    message: format!(
                        "route {} serves `{}` without a version in its path (`/v1/...`) or host (`v1.api...`): clients cannot be moved to a new version without breaking them",
                        route.id,
                        path_text(rule)
                    ),
                }),
                Some(v) => versioned.push((v, Entry { route, rule })),
            }
        }
    }
    for (i, j) in candidate_pairs(&versioned) {
        let ((va, a), (vb, b)) = (&versioned[i], &versioned[j]);
        if va != vb && overlap(a, b) {
            out.push(Warning {
                location: b.location(),
                message: format!(
                    "{vb} of route {} overlaps {va} (route {} at {}): some requests for one version reach the other",
                    b.route.id,
                    a.route.id,
                    a.location()
                ),
            });
        }
    }
    out
}

/// The pairs `(i, j)`, `i < j`, in that order, that [`overlap`] can accept: those of one API
/// shape or one route name family. Pairing every versioned rule with every other cost 10,000
/// versioned rules 5·10^7 comparisons; grouped, a rule meets only its own API's other rules.
fn candidate_pairs(versioned: &[(String, Entry)]) -> impl Iterator<Item = (usize, usize)> {
    use std::collections::HashMap;
    let family = |e: &Entry| e.route.id.name.split('-').next().unwrap_or("").to_string();
    let mut by_shape: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_family: HashMap<String, Vec<usize>> = HashMap::new();
    let keys: Vec<(String, String)> = (versioned.iter())
        .map(|(_, e)| (api_shape(e.rule), family(e)))
        .collect();
    for (i, (shape, fam)) in keys.iter().enumerate() {
        by_shape.entry(shape.clone()).or_default().push(i);
        by_family.entry(fam.clone()).or_default().push(i);
    }
    (0..versioned.len()).flat_map(move |i| {
        // Both lists are ascending: the later members of i's groups, merged.
        let after = |g: &Vec<usize>| g[g.partition_point(|&x| x <= i)..].to_vec();
        let mut js = after(&by_shape[&keys[i].0]);
        js.extend(after(&by_family[&keys[i].1]));
        js.sort_unstable();
        js.dedup();
        js.into_iter().map(move |j| (i, j))
    })
}

/// Two rules overlap when a request made for one (on a host both serve) is accepted by the
/// other's path and method conditions.
fn overlap(a: &Entry, b: &Entry) -> bool {
    let (ha, hb) = (host_labels(a.route), host_labels(b.route));
    let shared = ha
        .iter()
        .find(|h| hb.contains(h) || **h == "*")
        .or_else(|| hb.contains(&"*".to_string()).then(|| &ha[0]));
    let Some(host) = shared else { return false };
    let same_api = api_shape(a.rule) == api_shape(b.rule)
        || a.route.id.name.split('-').next() == b.route.id.name.split('-').next();
    if !same_api {
        return false;
    }
    let takes = |x: &Entry, y: &Entry| {
        Probe::for_rule(x.rule, host, "*").is_some_and(|mut p| {
            p.method = x
                .rule
                .methods
                .first()
                .cloned()
                .unwrap_or_else(|| "GET".into());
            crate::table::accepts(
                y.rule,
                &Probe {
                    headers: Vec::new(),
                    query: Vec::new(),
                    ..p
                },
            )
        })
    };
    takes(a, b) || takes(b, a)
}
