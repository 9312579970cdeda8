//! Config flow, step 4 (release by routing): a rule's `stickySplit`, `overrides` and `mirror`,
//! checked (references resolved, every error collected) and turned into the model.

use super::{kv_matches, valid_token, Refs, V};
use crate::error::hint;
use crate::loader::Ctx;
use crate::model::{Mirror, ObjectId, Override, Release, StickySplit};
use crate::raw;

/// Copies in flight per rule when `mirror.maxInFlight` is not given.
const DEFAULT_MIRROR_IN_FLIGHT: u32 = 64;

/// Mirrored bodies up to this size when `mirror.maxBodySize` is not given.
const DEFAULT_MIRROR_BODY: usize = 64 * 1024;

/// The validated release settings of the rule at `at`.
pub(super) fn release(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    r: &raw::RuleSpec,
    route: &ObjectId,
    refs: &Refs,
) -> Release {
    let forwards = !r.backends.is_empty();
    let used = [
        ("stickySplit", r.sticky_split.is_some()),
        ("overrides", !r.overrides.is_empty()),
        ("mirror", r.mirror.is_some()),
    ];
    for (field, _) in used.iter().filter(|(_, on)| *on && !forwards) {
        v.errors.push(ctx.error(
            &format!("{at}.{field}"),
            format!("`{field}` only applies to rules with `backends`"),
        ));
    }
    let sticky_split = r
        .sticky_split
        .as_ref()
        .and_then(|s| sticky(v, ctx, &format!("{at}.stickySplit"), s));
    let overrides = (r.overrides.iter().enumerate())
        .map(|(i, o)| {
            let at = format!("{at}.overrides[{i}]");
            over(v, ctx, &at, o, (route, &r.policies), refs)
        })
        .collect();
    let mirror =
        (r.mirror.as_ref()).map(|m| mirror(v, ctx, &format!("{at}.mirror"), m, route, refs));
    Release {
        sticky_split,
        overrides,
        mirror: mirror.map(Box::new),
    }
}

fn sticky(v: &mut V, ctx: &Ctx, at: &str, s: &raw::StickySplitSpec) -> Option<StickySplit> {
    let (field, name, made) = match (&s.cookie, &s.header) {
        (Some(c), None) => ("cookie", c, StickySplit::Cookie(c.clone())),
        (None, Some(h)) => ("header", h, StickySplit::Header(h.to_ascii_lowercase())),
        _ => {
            v.errors.push(ctx.error(
                at,
                "`stickySplit` needs exactly one of `cookie` or `header`",
            ));
            return None;
        }
    };
    if !valid_token(name) {
        v.errors.push(ctx.error(
            &format!("{at}.{field}"),
            format!("invalid {field} name `{name}`"),
        ));
        return None;
    }
    Some(made)
}

fn over(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    o: &raw::OverrideSpec,
    (route, policies): (&ObjectId, &[String]),
    refs: &Refs,
) -> Override {
    let m = &o.matches;
    if !m.claims.is_empty() && !has_jwt(&r_policies(policies, route), refs) {
        // Claims come from a verified JWT: on a rule without a jwt policy nothing sets them,
        // and an override that can never match must not pass for one that works.
        v.errors.push(ctx.error(
            &format!("{at}.match.claims"),
            "matching on `claims` needs a jwt policy on this rule (list a Policy with a `jwt` section in `policies`)",
        ));
    }
    if m.headers.is_empty() && m.cookies.is_empty() && m.query.is_empty() && m.claims.is_empty() {
        v.errors.push(ctx.error(
            &format!("{at}.match"),
            "an override needs at least one of `headers`, `cookies`, `query` or `claims` (it would take every request)",
        ));
    }
    let headers = kv_matches(v, ctx, &format!("{at}.match.headers"), &m.headers, true);
    let cookies = kv_matches(v, ctx, &format!("{at}.match.cookies"), &m.cookies, false);
    let query = kv_matches(v, ctx, &format!("{at}.match.query"), &m.query, false);
    let claims = kv_matches(v, ctx, &format!("{at}.match.claims"), &m.claims, false);
    let backend = backend_ref(v, ctx, &format!("{at}.backend"), &o.backend, route, refs);
    Override {
        headers,
        cookies,
        query,
        claims,
        backend,
    }
}

fn mirror(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    m: &raw::MirrorSpec,
    route: &ObjectId,
    refs: &Refs,
) -> Mirror {
    let backend = backend_ref(v, ctx, &format!("{at}.backend"), &m.backend, route, refs);
    let percent = v.percent(ctx, &format!("{at}.percent"), m.percent.as_ref(), 100);
    let max_body_size = v.size(
        ctx,
        &format!("{at}.maxBodySize"),
        m.max_body_size.as_ref(),
        DEFAULT_MIRROR_BODY,
    );
    let max_in_flight = m.max_in_flight.unwrap_or(DEFAULT_MIRROR_IN_FLIGHT);
    if max_in_flight == 0 {
        v.errors.push(ctx.error(
            &format!("{at}.maxInFlight"),
            "maxInFlight must be above 0 (remove `mirror` to stop mirroring)",
        ));
    }
    Mirror {
        backend,
        percent,
        max_body_size,
        max_in_flight,
    }
}

/// Resolves a backend reference written in a rule of `route`, with "did you mean" when unknown.
fn backend_ref(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    name: &str,
    route: &ObjectId,
    refs: &Refs,
) -> ObjectId {
    let id = match name.split_once('/') {
        Some((ns, n)) => ObjectId {
            namespace: ns.into(),
            name: n.into(),
        },
        None => ObjectId {
            namespace: route.namespace.clone(),
            name: name.into(),
        },
    };
    if refs.backends.binary_search(&&id).is_err() {
        let names: Vec<String> = (refs.backends.iter())
            .map(|b| match b.namespace == route.namespace {
                true => b.name.clone(),
                false => b.to_string(),
            })
            .collect();
        v.errors.push(ctx.error(
            at,
            format!(
                "unknown backend `{id}`{}",
                hint(name, names.iter().map(String::as_str))
            ),
        ));
    }
    id
}

/// The rule's policy references, resolved in `route`'s namespace.
fn r_policies(names: &[String], route: &ObjectId) -> Vec<ObjectId> {
    (names.iter())
        .map(|name| match name.split_once('/') {
            Some((ns, n)) => ObjectId {
                namespace: ns.into(),
                name: n.into(),
            },
            None => ObjectId {
                namespace: route.namespace.clone(),
                name: name.clone(),
            },
        })
        .collect()
}

/// Whether one of `policies` has a `jwt` section.
fn has_jwt(policies: &[ObjectId], refs: &Refs) -> bool {
    policies.iter().any(|p| refs.jwt_policies.contains(p))
}
