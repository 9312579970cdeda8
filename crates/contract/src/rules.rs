//! `gatehouse diff`, one operation served by a rule on both sides: what changed in its
//! conditions, destination, rewrite, redirect, fixed response, timeout and OpenAPI document.

use crate::diff::{forwards, Out};
use crate::table::{self, destination, redirect_label, rewrite_label, Entry};
use crate::Class;
use gatehouse_config::Action;

/// Compares the rule serving `op` in the old config (`a`) with the one in the new (`b`).
pub(crate) fn compare(out: &mut Out, op: &str, a: &Entry, b: &Entry) {
    let at = b.location();
    conditions(out, op, a, b, &at);
    action(out, op, a, b, &at);
    if rewrite_label(a.rule) != rewrite_label(b.rule) && forwards(a.rule) && forwards(b.rule) {
        let same_backends = destination_backends(a) == destination_backends(b);
        out.push(
            if same_backends {
                Class::Breaking
            } else {
                Class::Informational
            },
            "rewrite-changed",
            op,
            format!(
                "rewrite{} now{}{}",
                label_or_none(&rewrite_label(a.rule)),
                label_or_none(&rewrite_label(b.rule)),
                if same_backends {
                    ": the same backend receives other paths or hosts"
                } else {
                    " (with a new backend)"
                }
            ),
            &at,
        );
    }
    crate::limits::timeout(out, op, a.rule, b.rule, &at);
    let both = out.policies.clone();
    crate::policies::compare(
        out,
        op,
        (&both.0, &crate::policies::rule_policies(a.rule)),
        (&both.1, &crate::policies::rule_policies(b.rule)),
        &at,
    );
    validation(out, op, a, b, &at);
    if let (Some(x), Some(y)) = (doc(a), doc(b)) {
        crate::oas_diff::diff(out, op, (a.rule, x), (b.rule, y));
    } else if let (None, Some(y)) = (doc(a), doc(b)) {
        out.push(
            Class::Informational,
            "documented",
            op,
            "an OpenAPI document describes it now".into(),
            &y.file.display().to_string(),
        );
    }
}

/// `validateRequests` turned on refuses requests the document does not describe, which passed
/// before: breaking. Turned off: nothing is refused any more.
fn validation(out: &mut Out, op: &str, a: &Entry, b: &Entry, at: &str) {
    let validates = |e: &Entry| doc(e).is_some_and(|d| d.validate_requests);
    match (validates(a), validates(b)) {
        (false, true) => out.push(
            Class::Breaking,
            "validation-enabled",
            op,
            "requests are now validated against the OpenAPI document; those it does not describe are refused (400)".into(),
            at,
        ),
        (true, false) => out.push(
            Class::NonBreaking,
            "validation-disabled",
            op,
            "requests are no longer validated against the OpenAPI document".into(),
            at,
        ),
        _ => {}
    }
}

fn label_or_none(s: &str) -> String {
    if s.is_empty() {
        " (none)".into()
    } else {
        s.to_string()
    }
}

fn destination_backends(e: &Entry) -> Vec<String> {
    match &e.rule.action {
        Action::Forward(bs) => {
            let mut v: Vec<String> = bs
                .iter()
                .filter(|b| b.weight > 0)
                .map(|b| b.backend.to_string())
                .collect();
            v.sort();
            v
        }
        _ => Vec::new(),
    }
}

/// The OpenAPI document that describes the rule: its own, else its Route's.
pub(crate) fn doc<'a>(e: &Entry<'a>) -> Option<&'a gatehouse_config::openapi::OpenApi> {
    e.rule.openapi.as_deref().or(e.route.openapi.as_ref())
}

fn conditions(out: &mut Out, op: &str, a: &Entry, b: &Entry, at: &str) {
    let (ca, cb) = (table::conditions(a.rule), table::conditions(b.rule));
    for c in cb.iter().filter(|c| !ca.contains(c)) {
        out.push(
            Class::Breaking,
            "narrowed",
            op,
            format!("requests now need {c}; clients without it no longer reach it"),
            at,
        );
    }
    for c in ca.iter().filter(|c| !cb.contains(c)) {
        out.push(
            Class::NonBreaking,
            "widened",
            op,
            format!("{c} no longer required"),
            at,
        );
    }
}

fn action(out: &mut Out, op: &str, a: &Entry, b: &Entry, at: &str) {
    match (&a.rule.action, &b.rule.action) {
        (Action::Forward(_), Action::Forward(_)) => {
            let (x, y) = (destination_backends(a), destination_backends(b));
            if x != y {
                out.push(
                    Class::Informational,
                    "backend-changed",
                    op,
                    format!("served by {} now (was {})", y.join("+"), x.join("+")),
                    at,
                );
            }
        }
        (Action::Redirect(x), Action::Redirect(y)) => {
            let (lx, ly) = (redirect_label(x), redirect_label(y));
            if (&x.scheme, &x.host, x.port, &x.path) != (&y.scheme, &y.host, y.port, &y.path) {
                out.push(
                    Class::Breaking,
                    "redirect-changed",
                    op,
                    format!("redirects to {ly} now (was {lx}): clients land elsewhere"),
                    at,
                );
            } else if x.status != y.status {
                out.push(
                    Class::Informational,
                    "redirect-changed",
                    op,
                    format!("redirect status {} now (was {})", y.status, x.status),
                    at,
                );
            }
        }
        (Action::Direct(x), Action::Direct(y)) => {
            if x.status != y.status {
                out.push(
                    Class::Breaking,
                    "response-changed",
                    op,
                    format!("the gateway answers {} now (was {})", y.status, x.status),
                    at,
                );
            } else if x.body != y.body || x.content_type != y.content_type {
                out.push(
                    Class::Informational,
                    "response-changed",
                    op,
                    "the fixed response's body changed".into(),
                    at,
                );
            }
        }
        (Action::Forward(_), _) => out.push(
            Class::Breaking,
            "action-changed",
            op,
            format!("no longer forwarded: {} now", destination(b.rule)),
            at,
        ),
        (_, _) => out.push(
            Class::Informational,
            "action-changed",
            op,
            format!("{} now (was {})", destination(b.rule), destination(a.rule)),
            at,
        ),
    }
}
