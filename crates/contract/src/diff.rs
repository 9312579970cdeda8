//! `gatehouse diff`: the public API change between two compiled configs, operation by operation
//! (host, method, path condition), each change classified for existing clients.

use crate::policies::Policies;
use crate::table::{self, destination, endpoints, Entry, Probe};
use crate::{Change, Class, Report};
use gatehouse_config::{Action, Config, Rule};
use std::collections::BTreeSet;

/// Collects changes with the operation they belong to.
pub(crate) struct Out {
    pub changes: Vec<Change>,
    /// The policies of the old and the new config, for rules that name them.
    pub policies: std::rc::Rc<(Policies, Policies)>,
}

impl Out {
    pub fn push(&mut self, class: Class, kind: &'static str, op: &str, reason: String, at: &str) {
        self.changes.push(Change {
            class,
            kind,
            operation: op.to_string(),
            reason,
            location: Some(at.to_string()).filter(|s| !s.is_empty()),
        });
    }
}

/// The change report between `old` and `new`, breaking changes first.
pub(crate) fn diff(old: &Config, new: &Config) -> Report {
    let mut out = Out {
        changes: Vec::new(),
        policies: std::rc::Rc::new((Policies::of(old), Policies::of(new))),
    };
    let (eo, en) = (endpoints(old), endpoints(new));
    let keys: BTreeSet<&(String, String)> = eo.keys().chain(en.keys()).collect();
    for key in keys {
        let (host, path) = key;
        let no = Vec::new();
        let (o, n) = (eo.get(key).unwrap_or(&no), en.get(key).unwrap_or(&no));
        endpoint(&mut out, old, new, host, path, o, n);
    }
    crate::limits::listener_limits(&mut out, old, new);
    let mut changes = out.changes;
    changes.sort_by_key(|c| c.class);
    Report { changes }
}

fn methods(entries: &[Entry]) -> BTreeSet<String> {
    entries
        .iter()
        .flat_map(|e| table::methods_of(e.rule))
        .collect()
}

/// Entries that take `method` (`*`: rules for any method), in precedence order.
fn taking<'a>(entries: &[Entry<'a>], method: &str) -> Vec<Entry<'a>> {
    let mut v: Vec<Entry> = entries
        .iter()
        .filter(|e| table::methods_of(e.rule).iter().any(|m| m == method))
        .copied()
        .collect();
    v.sort_by_key(|e| e.rule.precedence());
    v
}

/// The rules taking `method`, or the rules for any method when none names it.
fn or_any<'a>(entries: &[Entry<'a>], method: &str) -> Vec<Entry<'a>> {
    let t = taking(entries, method);
    if t.is_empty() {
        taking(entries, "*")
    } else {
        t
    }
}

fn endpoint(
    out: &mut Out,
    old: &Config,
    new: &Config,
    host: &str,
    path: &str,
    o: &[Entry],
    n: &[Entry],
) {
    let (mo, mn) = (methods(o), methods(n));
    let any_o = mo.contains("*");
    let any_n = mn.contains("*");
    let op = |m: &str| format!("{m} {host}{path}");
    if any_o && !any_n && !n.is_empty() {
        let kept: Vec<&str> = mn.iter().map(String::as_str).collect();
        out.push(
            Class::Breaking,
            "methods-narrowed",
            &op("*"),
            format!(
                "only {} accepted now; other methods were routed before",
                kept.join(", ")
            ),
            &n[0].location(),
        );
    }
    for m in mo.union(&mn) {
        if m == "*" {
            let (to, tn) = (taking(o, m), taking(n, m));
            match (any_o, any_n) {
                (true, true) => variants(out, old, new, host, m, &to, &tn, &op(m)),
                (true, false) if n.is_empty() => to
                    .iter()
                    .for_each(|e| removed(out, new, host, m, e, &op(m))),
                (false, true) if o.is_empty() => {
                    tn.iter().for_each(|e| added(out, old, host, m, e, &op(m)))
                }
                (false, true) => out.push(
                    Class::NonBreaking,
                    "methods-widened",
                    &op(m),
                    "every method accepted now".into(),
                    &tn[0].location(),
                ),
                _ => {}
            }
            continue;
        }
        // A method without a rule of its own is served by the rules for any method.
        let (to, tn) = (or_any(o, m), or_any(n, m));
        match (to.is_empty(), tn.is_empty()) {
            (false, true) => to
                .iter()
                .for_each(|e| removed(out, new, host, m, e, &op(m))),
            (true, false) if o.is_empty() => {
                tn.iter().for_each(|e| added(out, old, host, m, e, &op(m)))
            }
            (true, false) => out.push(
                Class::NonBreaking,
                "method-added",
                &op(m),
                format!("{m} accepted now: {}", destination(tn[0].rule)),
                &tn[0].location(),
            ),
            (false, false) => variants(out, old, new, host, m, &to, &tn, &op(m)),
            (true, true) => {}
        }
    }
}

/// Pairs the rules of one operation by their header/query conditions and compares each pair;
/// a single rule on each side is compared directly (its conditions may have changed).
#[allow(clippy::too_many_arguments)]
fn variants(
    out: &mut Out,
    old: &Config,
    new: &Config,
    host: &str,
    m: &str,
    o: &[Entry],
    n: &[Entry],
    op: &str,
) {
    if let ([a], [b]) = (o, n) {
        return crate::rules::compare(out, op, a, b);
    }
    let sig = |e: &Entry| table::conditions(e.rule);
    for a in o {
        match n.iter().find(|b| sig(b) == sig(a)) {
            Some(b) => crate::rules::compare(out, op, a, b),
            None => removed(out, new, host, m, a, op),
        }
    }
    for b in n.iter().filter(|b| !o.iter().any(|a| sig(a) == sig(b))) {
        added(out, old, host, m, b, op);
    }
}

fn with_conditions(op: &str, rule: &Rule) -> String {
    let c = table::conditions(rule);
    if c.is_empty() {
        op.to_string()
    } else {
        format!("{op} [{}]", c.join(", "))
    }
}

/// A rule that is new for this operation: breaking when it takes requests another rule served
/// somewhere else before (a higher-precedence rule stealing part of an old rule's traffic).
fn added(out: &mut Out, old: &Config, host: &str, m: &str, e: &Entry, op: &str) {
    let op = with_conditions(op, e.rule);
    let before = Probe::for_rule(e.rule, host, m).and_then(|p| table::resolve(old, &p));
    match before {
        Some(prev) if destination(prev.rule) != destination(e.rule) => out.push(
            Class::Breaking,
            "traffic-taken",
            &op,
            format!(
                "requests served by the rule at {} ({}) now go to {}",
                prev.location(),
                destination(prev.rule),
                destination(e.rule)
            ),
            &e.location(),
        ),
        Some(prev) => out.push(
            Class::NonBreaking,
            "operation-added",
            &op,
            format!(
                "same destination as the rule at {} that served it before",
                prev.location()
            ),
            &e.location(),
        ),
        None => out.push(
            Class::NonBreaking,
            "operation-added",
            &op,
            format!("new: {}", destination(e.rule)),
            &e.location(),
        ),
    }
}

/// A rule gone from this operation: breaking unless its requests still reach the same place.
fn removed(out: &mut Out, new: &Config, host: &str, m: &str, e: &Entry, op: &str) {
    let op = with_conditions(op, e.rule);
    let after = Probe::for_rule(e.rule, host, m).and_then(|p| table::resolve(new, &p));
    match after {
        Some(next) if destination(next.rule) == destination(e.rule) => out.push(
            Class::Informational,
            "rule-removed",
            &op,
            format!(
                "its requests still reach {} through the rule at {}",
                destination(e.rule),
                next.location()
            ),
            &e.location(),
        ),
        Some(next) => out.push(
            Class::Breaking,
            "operation-removed",
            &op,
            format!(
                "requests fall through to the rule at {} ({})",
                next.location(),
                destination(next.rule)
            ),
            &e.location(),
        ),
        None => out.push(
            Class::Breaking,
            "operation-removed",
            &op,
            "no rule takes these requests any more: clients get 404".into(),
            &e.location(),
        ),
    }
}

/// Whether a rule forwards to backends (rather than answering itself).
pub(crate) fn forwards(rule: &Rule) -> bool {
    matches!(rule.action, Action::Forward(_))
}
