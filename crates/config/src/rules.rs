//! Config flow, step 5: checks of the route table as a whole — rules that duplicate another or that
//! can never be reached under the documented precedence.

use crate::error::ConfigError;
use crate::model::{Config, HostMatch, PathMatch, Rule, ValueMatch};
use std::collections::HashMap;

fn signature(rule: &Rule) -> String {
    let path = match &rule.path {
        PathMatch::Exact(p) => format!("exact:{p}"),
        PathMatch::Prefix(p) => format!("prefix:{p}"),
        PathMatch::Regex(r) => format!("regex:{}", r.1.as_str()),
    };
    let mut methods = rule.methods.clone();
    methods.sort();
    let kv = |list: &[crate::model::KeyValueMatch]| {
        let mut v: Vec<String> = list
            .iter()
            .map(|m| match &m.value {
                ValueMatch::Present => format!("{}?", m.name),
                ValueMatch::Exact(x) => format!("{}={x}", m.name),
                ValueMatch::Regex(r) => format!("{}~{}", m.name, r.1.as_str()),
            })
            .collect();
        v.sort();
        v.join("&")
    };
    format!(
        "{path}|{}|{}|{}",
        methods.join(","),
        kv(&rule.headers),
        kv(&rule.query)
    )
}

/// Adds an error for every rule that another rule makes unreachable.
pub(crate) fn check(config: &Config, errors: &mut Vec<ConfigError>) {
    // (host key, signature) -> first rule's description
    let mut first: HashMap<(String, String), String> = HashMap::new();
    let mut catch_all: HashMap<String, String> = HashMap::new();
    let host_keys = |hosts: &[HostMatch]| -> Vec<String> {
        if hosts.is_empty() {
            return vec!["*".into()];
        }
        hosts
            .iter()
            .map(|h| match h {
                HostMatch::Exact(e) => e.clone(),
                HostMatch::Wildcard(w) => format!("*{w}"),
            })
            .collect()
    };
    let describe = |route: &crate::model::Route, i: usize, r: &Rule| {
        format!("route {} rules[{i}] at {}", route.id, r.source)
    };
    for route in &config.routes {
        for key in host_keys(&route.hosts) {
            for (i, r) in route.rules.iter().enumerate() {
                if matches!(&r.path, PathMatch::Prefix(p) if p == "/") && r.condition_count() == 0 {
                    catch_all
                        .entry(key.clone())
                        .or_insert_with(|| describe(route, i, r));
                }
            }
        }
    }
    for route in &config.routes {
        for key in host_keys(&route.hosts) {
            for (i, r) in route.rules.iter().enumerate() {
                let error = |message: String| ConfigError {
                    file: r.source.file.clone(),
                    mark: r.source.mark(),
                    object: format!("Route {}", route.id),
                    path: format!("spec.rules[{i}].match"),
                    message,
                };
                let sig = signature(r);
                match first.get(&(key.clone(), sig.clone())) {
                    Some(prev) => {
                        errors.push(error(format!(
                            "duplicate rule: {prev} matches exactly the same requests{}, so this rule can never match",
                            if key == "*" { String::new() } else { format!(" for host `{key}`") }
                        )));
                        continue;
                    }
                    None => {
                        first.insert((key.clone(), sig), describe(route, i, r));
                    }
                }
                if let (PathMatch::Regex(_), Some(all)) = (&r.path, catch_all.get(&key)) {
                    errors.push(error(format!(
                        "unreachable rule: regex paths rank after prefixes, and the catch-all prefix `/` of {all} matches every request first"
                    )));
                }
            }
        }
    }
}
