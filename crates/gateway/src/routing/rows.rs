//! Route tables for people (`gatehouse routes`, `GET /routes`): the compiled table in lookup
//! order, optionally narrowed to a host and a path prefix and cut into pages, formatting only the
//! rows of the page so a 10,000-rule table answers a page without building 10,000 strings.

use super::{conditions, Entry, RouteRow, Router};
use gatehouse_config::{PathMatch, Rule};
use serde::Serialize;

/// Which rows to show.
#[derive(Debug, Default, Clone)]
pub struct RouteFilter {
    /// A host name: rows that can serve it, in lookup order (its exact class, the wildcards
    /// that cover it, any host). Starting with `*` it names one class as printed
    /// (`*.example.com`, `*`).
    pub host: Option<String>,
    /// Rows whose path pattern starts with this text (`/v1` shows `prefix /v1/tasks`).
    pub path: Option<String>,
    /// Rows to skip.
    pub offset: usize,
    /// Rows to show at most; `None`: all.
    pub limit: Option<usize>,
}

/// One page of the route table.
#[derive(Debug, Serialize)]
pub struct RoutePage {
    /// Rows matching the filter, over all pages.
    pub total: usize,
    /// Rows skipped.
    pub offset: usize,
    /// This page.
    pub routes: Vec<RouteRow>,
}

/// The pattern of a rule's path condition.
fn pattern(rule: &Rule) -> &str {
    match &rule.path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        PathMatch::Regex(r) => &r.1,
    }
}

fn row<T>(host: &str, e: &Entry<T>, action: &impl Fn(&Rule) -> String) -> RouteRow {
    RouteRow {
        host: host.to_string(),
        path: match &e.rule.path {
            PathMatch::Exact(p) => format!("exact {p}"),
            PathMatch::Prefix(p) => format!("prefix {p}"),
            PathMatch::Regex(r) => format!("regex {}", r.1.as_str()),
        },
        conditions: conditions(&e.rule),
        rule: format!("{}[{}]", e.route, e.index),
        action: action(&e.rule),
    }
}

/// Whether the class printed as `class` is shown for the `host` filter.
fn class_shown(class: &str, host: &str) -> bool {
    if host.starts_with('*') {
        return class == host;
    }
    // `*.example.com` covers `a.example.com`, not `example.com`; `*` covers every host.
    class == host
        || class == "*"
        || class
            .strip_prefix('*')
            .is_some_and(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
}

impl<T> Router<T> {
    /// The table in lookup order, for `gatehouse routes` and `GET /routes`.
    pub fn rows(&self, action: impl Fn(&Rule) -> String) -> Vec<RouteRow> {
        self.page(&RouteFilter::default(), action).routes
    }

    /// The rows `filter` selects, in lookup order, with their total count.
    pub fn page(&self, filter: &RouteFilter, action: impl Fn(&Rule) -> String) -> RoutePage {
        let host = filter.host.as_deref().map(str::to_ascii_lowercase);
        let mut total = 0;
        let mut routes = Vec::new();
        let end = filter
            .limit
            .map_or(usize::MAX, |l| filter.offset.saturating_add(l));
        for (class, table) in self.classes() {
            if host.as_deref().is_some_and(|h| !class_shown(&class, h)) {
                continue;
            }
            let shown = table.entries.iter().filter(|e| {
                filter
                    .path
                    .as_deref()
                    .is_none_or(|p| pattern(&e.rule).starts_with(p))
            });
            for e in shown {
                if total >= filter.offset && total < end {
                    routes.push(row(&class, e, &action));
                }
                total += 1;
            }
        }
        RoutePage {
            total,
            offset: filter.offset,
            routes,
        }
    }
}
