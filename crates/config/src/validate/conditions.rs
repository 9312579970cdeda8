//! Config flow, validation of a Route rule's parts: header and query conditions, redirects and
//! header changes (split from `validate.rs`).

use super::{valid_token, V};
use crate::loader::Ctx;
use crate::model::*;
use crate::raw;
use std::collections::BTreeMap;

/// Header or query conditions (`match.headers`, `match.query`, override conditions).
pub(super) fn kv_matches(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    specs: &[raw::KeyValueMatchSpec],
    header: bool,
) -> Vec<KeyValueMatch> {
    let mut out = Vec::new();
    for (i, h) in specs.iter().enumerate() {
        let p = format!("{at}[{i}]");
        if header && !valid_token(&h.name) {
            v.errors.push(ctx.error(
                &format!("{p}.name"),
                format!("invalid header name `{}`", h.name),
            ));
            continue;
        }
        let value = match (&h.value, &h.regex) {
            (Some(_), Some(_)) => {
                v.errors
                    .push(ctx.error(&p, "use one of `value` or `regex`, not both"));
                continue;
            }
            (Some(val), None) => ValueMatch::Exact(val.clone()),
            (None, Some(re)) => match v.regex(ctx, &format!("{p}.regex"), re, true) {
                Some(r) => ValueMatch::Regex(r),
                None => continue,
            },
            (None, None) => ValueMatch::Present,
        };
        let name = if header {
            h.name.to_ascii_lowercase()
        } else {
            h.name.clone()
        };
        out.push(KeyValueMatch { name, value });
    }
    out
}

/// A rule's `redirect`.
pub(super) fn redirect(v: &mut V, ctx: &Ctx, at: &str, r: &raw::RedirectSpec) -> Option<Redirect> {
    let status = r.status_code.unwrap_or(302);
    if ![301, 302, 303, 307, 308].contains(&status) {
        v.errors.push(ctx.error(
            &format!("{at}.statusCode"),
            "statusCode must be one of 301, 302, 303, 307, 308",
        ));
    }
    if let Some(s) = &r.scheme {
        if s != "http" && s != "https" {
            v.errors.push(ctx.error(
                &format!("{at}.scheme"),
                format!("scheme must be `http` or `https`, found `{s}`"),
            ));
        }
    }
    if let Some(p) = &r.path {
        if !p.starts_with('/') {
            v.errors
                .push(ctx.error(&format!("{at}.path"), "a path must start with `/`"));
        }
    }
    Some(Redirect {
        scheme: r.scheme.clone(),
        host: r.host.clone(),
        port: r.port,
        path: r.path.clone(),
        status,
    })
}

/// `requestHeaders` / `responseHeaders` changes.
pub(super) fn header_mods(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    spec: Option<&raw::HeaderModsSpec>,
) -> HeaderMods {
    let Some(spec) = spec else {
        return HeaderMods::default();
    };
    let check = |v: &mut V, field: &str, map: &BTreeMap<String, String>| -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, val) in map {
            if !valid_token(k) {
                v.errors.push(ctx.error(
                    &format!("{at}.{field}.{k}"),
                    format!("invalid header name `{k}`"),
                ));
            } else if val.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                v.errors.push(ctx.error(
                    &format!("{at}.{field}.{k}"),
                    "header values cannot contain CR, LF or NUL",
                ));
            } else {
                out.push((k.to_ascii_lowercase(), val.clone()));
            }
        }
        out
    };
    let set = check(v, "set", &spec.set);
    let add = check(v, "add", &spec.add);
    let mut remove = Vec::new();
    for (i, k) in spec.remove.iter().enumerate() {
        if valid_token(k) {
            remove.push(k.to_ascii_lowercase());
        } else {
            v.errors.push(ctx.error(
                &format!("{at}.remove[{i}]"),
                format!("invalid header name `{k}`"),
            ));
        }
    }
    HeaderMods { set, add, remove }
}
