//! Config flow, step 4 (Gateway): `spec.portal`, the developer portal — exactly one of `address`
//! and `pathPrefix`, a sane prefix, a title that fits a page heading.

use super::V;
use crate::loader::Ctx;
use crate::portal::{Portal, PortalMount, DEFAULT_PORTAL_TITLE};
use crate::raw;

/// Titles longer than this are a mistake (a pasted paragraph), not a heading.
const MAX_TITLE: usize = 120;

pub(super) fn portal(v: &mut V, ctx: &Ctx, spec: &raw::PortalSpec) -> Option<Portal> {
    let title = match spec.title.as_deref().map(str::trim) {
        None => DEFAULT_PORTAL_TITLE.to_string(),
        Some("") => {
            v.errors
                .push(ctx.error("spec.portal.title", "title must not be empty"));
            return None;
        }
        Some(t) if t.chars().count() > MAX_TITLE || t.chars().any(char::is_control) => {
            v.errors.push(ctx.error(
                "spec.portal.title",
                format!("title must be one line of at most {MAX_TITLE} characters"),
            ));
            return None;
        }
        Some(t) => t.to_string(),
    };
    let mount = match (&spec.address, &spec.path_prefix) {
        (Some(_), Some(_)) => {
            v.errors.push(ctx.error(
                "spec.portal.pathPrefix",
                "set either `address` (a listener of its own) or `pathPrefix` (on every HTTP listener), not both",
            ));
            return None;
        }
        (None, None) => {
            v.errors.push(ctx.error(
                "spec.portal",
                "the portal needs `address` (such as `127.0.0.1:8081`) or `pathPrefix` (such as `/portal`)",
            ));
            return None;
        }
        (Some(a), None) => PortalMount::Address(v.socket_addr(ctx, "spec.portal.address", a)?),
        (None, Some(p)) => PortalMount::PathPrefix(path_prefix(v, ctx, p)?),
    };
    Some(Portal { mount, title })
}

/// A prefix of whole segments in a clean spelling (what path normalisation produces), so the
/// portal's own check is a plain byte comparison on the normalised path.
fn path_prefix(v: &mut V, ctx: &Ctx, p: &str) -> Option<String> {
    let trimmed = p.trim_end_matches('/');
    let clean = trimmed.starts_with('/')
        && trimmed[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        });
    if !clean {
        v.errors.push(ctx.error(
            "spec.portal.pathPrefix",
            format!("invalid path prefix `{p}`: expected segments of letters, digits, `-._~` such as `/portal` (not `/` alone)"),
        ));
        return None;
    }
    Some(trimmed.to_string())
}

/// A portal `address` may not be one a listener or the admin API binds: one of them would fail to
/// start, or a reload would be refused, with a less helpful message than this one.
pub(super) fn address_conflicts(
    v: &mut V,
    ctx: &Ctx,
    config: &crate::model::Config,
    listeners: &std::collections::HashMap<std::net::SocketAddr, &Ctx>,
) {
    let Some(Portal {
        mount: PortalMount::Address(a),
        ..
    }) = &config.gateway.portal
    else {
        return;
    };
    if a.port() == 0 {
        return;
    }
    let holder = if *a == config.gateway.admin_address {
        Some("the admin API".to_string())
    } else {
        listeners.get(a).map(|l| l.object.clone())
    };
    if let Some(holder) = holder {
        v.errors.push(ctx.error(
            "spec.portal.address",
            format!("address {a} is already used by {holder}"),
        ));
    }
}
