//! `gatehouse diff`, limits: rule timeouts and the listener limits every client is held to.

use crate::diff::Out;
use crate::Class;
use gatehouse_config::{Config, Rule};

fn secs(d: std::time::Duration) -> String {
    format!("{}", gatehouse_config::units::DisplayDuration(d))
}

/// A shorter timeout fails requests that took between the two: breaking; longer is not.
pub(crate) fn timeout(out: &mut Out, op: &str, a: &Rule, b: &Rule, at: &str) {
    match (a.timeout, b.timeout) {
        (Some(x), Some(y)) if y < x => out.push(
            Class::Breaking,
            "limit-tightened",
            op,
            format!(
                "timeout {} now (was {}): slower responses become 504",
                secs(y),
                secs(x)
            ),
            at,
        ),
        (Some(x), Some(y)) if y > x => out.push(
            Class::NonBreaking,
            "limit-relaxed",
            op,
            format!("timeout {} now (was {})", secs(y), secs(x)),
            at,
        ),
        (None, Some(y)) => out.push(
            Class::Informational,
            "limit-set",
            op,
            format!("timeout {} set (was the default)", secs(y)),
            at,
        ),
        (Some(x), None) => out.push(
            Class::Informational,
            "limit-set",
            op,
            format!("timeout {} removed: the default applies", secs(x)),
            at,
        ),
        _ => {}
    }
}

/// Listener limits (`maxUriLength`, `maxRequestHeadersSize`) lowered refuse requests that passed.
pub(crate) fn listener_limits(out: &mut Out, old: &Config, new: &Config) {
    for l in &new.listeners {
        let Some(o) = old.listeners.iter().find(|o| o.id == l.id) else {
            continue;
        };
        let op = format!("* {}", l.address);
        let pairs = [
            (
                "maxUriLength",
                o.limits.max_uri_length,
                l.limits.max_uri_length,
            ),
            (
                "maxRequestHeadersSize",
                o.limits.max_request_headers_size,
                l.limits.max_request_headers_size,
            ),
        ];
        for (name, x, y) in pairs {
            if y < x {
                out.push(
                    Class::Breaking,
                    "limit-tightened",
                    &op,
                    format!(
                        "listener {} {name} {y} now (was {x}): larger requests are refused",
                        l.id
                    ),
                    "",
                );
            } else if y > x {
                out.push(
                    Class::NonBreaking,
                    "limit-relaxed",
                    &op,
                    format!("listener {} {name} {y} now (was {x})", l.id),
                    "",
                );
            }
        }
    }
}
