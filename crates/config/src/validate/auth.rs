//! Config flow, step 4 (policies): a `Policy`'s auth sections — `jwt`, `apiKey`, `basicAuth` and
//! `anyOf` — checked and turned into the model. Files they name (JWKS, secret, keys, htpasswd)
//! are read by the gateway when it builds the policy's state, not here.

use super::{relative_to_manifest, valid_token, V};
use crate::error::hint;
use crate::loader::Ctx;
use crate::model::*;
use crate::raw;
use std::time::Duration;

/// Clock skew allowed on `exp` and `nbf` unless `leeway` says otherwise.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// How often a JWKS URL is fetched again unless `refreshInterval` says otherwise.
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// Least time between refreshes caused by unknown `kid`s unless `minRefreshInterval` says.
const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// The algorithms a `jwt` can accept, by their JOSE names.
pub(crate) const JWT_ALGORITHMS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512", "none",
];

/// `jwt`.
pub(super) fn jwt(v: &mut V, ctx: &Ctx, spec: &raw::JwtSpec) -> Jwt {
    let at = "spec.jwt";
    let keys = jwt_keys(v, ctx, spec);
    let algorithms = spec.algorithms.clone().unwrap_or_default();
    let hmac = matches!(keys, JwtKeys::Secret(_) | JwtKeys::SecretFile(_));
    for (i, a) in algorithms.iter().enumerate() {
        let p = format!("{at}.algorithms[{i}]");
        if a == "none" {
            v.errors
                .push(ctx.error(&p, "`none` means unsigned tokens: never accepted"));
        } else if !JWT_ALGORITHMS.contains(&a.as_str()) {
            let msg = format!("unknown algorithm `{a}`{}", hint(a, JWT_ALGORITHMS));
            v.errors.push(ctx.error(&p, msg));
        } else if hmac != a.starts_with("HS") {
            let msg = match hmac {
                true => format!("`{a}` needs keys from `jwks`; a `secret` verifies HS256/384/512 only"),
                false => format!("`{a}` needs a shared `secret`; keys from `jwks` verify RS, PS, ES and EdDSA only"),
            };
            v.errors.push(ctx.error(&p, msg));
        }
    }
    let forward_claims = (spec.forward_claims.iter().flatten())
        .map(|(claim, header)| {
            if !valid_token(header) {
                let p = format!("{at}.forwardClaims.{claim}");
                v.errors
                    .push(ctx.error(&p, format!("invalid header name `{header}`")));
            }
            (claim.clone(), header.to_ascii_lowercase())
        })
        .collect();
    Jwt {
        issuer: spec.issuer.clone(),
        audiences: spec.audiences.clone().unwrap_or_default(),
        keys,
        algorithms,
        from: sources(
            v,
            ctx,
            &format!("{at}.from"),
            spec.from.as_deref(),
            "bearer",
        ),
        forward_claims,
        required_scopes: spec.required_scopes.clone().unwrap_or_default(),
        required_claims: (spec.required_claims.iter().flatten())
            .map(|(k, val)| (k.clone(), val.clone()))
            .collect(),
        leeway: v.duration(
            ctx,
            &format!("{at}.leeway"),
            spec.leeway.as_ref(),
            DEFAULT_LEEWAY,
        ),
    }
}

/// Exactly one of `jwks.url`, `jwks.file` and `secret` (`file` or `value`).
fn jwt_keys(v: &mut V, ctx: &Ctx, spec: &raw::JwtSpec) -> JwtKeys {
    let at = "spec.jwt";
    let fallback = JwtKeys::Secret(String::new());
    match (&spec.jwks, &spec.secret) {
        (Some(_), Some(_)) => {
            v.errors.push(ctx.error(
                at,
                "a `jwt` takes its keys from `jwks` or from `secret`, not both",
            ));
            fallback
        }
        (None, None) => {
            v.errors.push(ctx.error(
                at,
                "a `jwt` needs keys: `jwks: {url}` or `jwks: {file}` (or `secret` for HS256/384/512)",
            ));
            fallback
        }
        (Some(j), None) => match (&j.url, &j.file) {
            (Some(url), None) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    v.errors.push(ctx.error(
                        &format!("{at}.jwks.url"),
                        format!("expected an `http://` or `https://` URL, found `{url}`"),
                    ));
                }
                let d = |v: &mut V, f: &str, s: Option<&String>, def| {
                    let d = v.duration(ctx, &format!("{at}.jwks.{f}"), s, def);
                    if d.is_zero() {
                        let msg = "the interval must be longer than 0s";
                        v.errors.push(ctx.error(&format!("{at}.jwks.{f}"), msg));
                    }
                    d
                };
                JwtKeys::JwksUrl {
                    url: url.clone(),
                    refresh: d(
                        v,
                        "refreshInterval",
                        j.refresh_interval.as_ref(),
                        DEFAULT_JWKS_REFRESH,
                    ),
                    min_refresh: d(
                        v,
                        "minRefreshInterval",
                        j.min_refresh_interval.as_ref(),
                        DEFAULT_JWKS_MIN_REFRESH,
                    ),
                    ca_file: j.ca_file.as_ref().map(|f| {
                        if !url.starts_with("https://") {
                            let msg = "`caFile` is for an `https://` URL";
                            v.errors.push(ctx.error(&format!("{at}.jwks.caFile"), msg));
                        }
                        relative_to_manifest(ctx, f)
                    }),
                }
            }
            (None, Some(file)) => JwtKeys::JwksFile(relative_to_manifest(ctx, file)),
            _ => {
                v.errors.push(ctx.error(
                    &format!("{at}.jwks"),
                    "`jwks` needs exactly one of `url` and `file`",
                ));
                fallback
            }
        },
        (None, Some(s)) => match (&s.file, &s.value) {
            (Some(file), None) => JwtKeys::SecretFile(relative_to_manifest(ctx, file)),
            (None, Some(value)) if value.len() >= 32 => JwtKeys::Secret(value.clone()),
            (None, Some(_)) => {
                v.errors.push(ctx.error(
                    &format!("{at}.secret.value"),
                    "an HMAC secret must be at least 32 bytes long",
                ));
                fallback
            }
            _ => {
                v.errors.push(ctx.error(
                    &format!("{at}.secret"),
                    "`secret` needs exactly one of `file` and `value`",
                ));
                fallback
            }
        },
    }
}

/// `from`: where a credential is read; `default` when not written (`bearer`: the
/// `Authorization` header with the `Bearer ` prefix; `x-api-key`: that header).
fn sources(
    v: &mut V,
    ctx: &Ctx,
    at: &str,
    from: Option<&[raw::CredentialSourceSpec]>,
    default: &str,
) -> Vec<CredentialSource> {
    let Some(from) = from else {
        return vec![match default {
            "bearer" => CredentialSource::Header {
                name: "authorization".into(),
                prefix: Some("Bearer ".into()),
            },
            _ => CredentialSource::Header {
                name: default.into(),
                prefix: None,
            },
        }];
    };
    if from.is_empty() {
        v.errors
            .push(ctx.error(at, "`from` needs at least one source"));
    }
    let mut out = Vec::new();
    for (i, s) in from.iter().enumerate() {
        let p = format!("{at}[{i}]");
        let given = [s.header.is_some(), s.cookie.is_some(), s.query.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            v.errors.push(ctx.error(
                &p,
                "a source needs exactly one of `header`, `cookie` and `query`",
            ));
        }
        if s.prefix.is_some() && s.header.is_none() {
            v.errors
                .push(ctx.error(&format!("{p}.prefix"), "`prefix` goes with `header`"));
        }
        let name = s.header.as_ref().or(s.cookie.as_ref()).or(s.query.as_ref());
        if let Some(n) = name.filter(|n| !valid_token(n)) {
            v.errors.push(ctx.error(&p, format!("invalid name `{n}`")));
        }
        out.push(match (&s.header, &s.cookie, &s.query) {
            (Some(h), _, _) => CredentialSource::Header {
                name: h.to_ascii_lowercase(),
                prefix: s.prefix.clone(),
            },
            (None, Some(c), _) => CredentialSource::Cookie(c.clone()),
            (None, None, Some(q)) => CredentialSource::Query(q.clone()),
            _ => continue,
        });
    }
    out
}

/// `apiKey`.
pub(super) fn api_key(v: &mut V, ctx: &Ctx, spec: &raw::ApiKeySpec) -> ApiKey {
    let at = "spec.apiKey";
    if spec.keys.is_none() && spec.keys_file.is_none() {
        v.errors
            .push(ctx.error(at, "`apiKey` needs `keys`, `keysFile` or both"));
    }
    let mut keys = Vec::new();
    for (i, k) in spec.keys.iter().flatten().enumerate() {
        match parse_sha256(&k.sha256) {
            Some(sha256) => keys.push(ApiKeyEntry {
                consumer: k.consumer.clone(),
                sha256,
            }),
            None => v.errors.push(ctx.error(
                &format!("{at}.keys[{i}].sha256"),
                "expected the SHA-256 of the key: 64 hexadecimal digits (`sha256sum`)",
            )),
        }
        if k.consumer.is_empty() {
            v.errors
                .push(ctx.error(&format!("{at}.keys[{i}].consumer"), "the consumer is empty"));
        }
    }
    ApiKey {
        from: sources(
            v,
            ctx,
            &format!("{at}.from"),
            spec.from.as_deref(),
            "x-api-key",
        ),
        keys,
        keys_file: spec
            .keys_file
            .as_ref()
            .map(|f| relative_to_manifest(ctx, f)),
    }
}

/// 64 hex digits as 32 bytes.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// `basicAuth`.
pub(super) fn basic_auth(ctx: &Ctx, spec: &raw::BasicAuthSpec) -> BasicAuth {
    BasicAuth {
        htpasswd_file: relative_to_manifest(ctx, &spec.htpasswd_file),
        realm: spec.realm.clone().unwrap_or_else(|| "gatehouse".into()),
    }
}

/// `anyOf`: names of auth sections the policy has.
pub(super) fn any_of(
    v: &mut V,
    ctx: &Ctx,
    names: &[String],
    present: &[(AuthSection, bool)],
) -> Vec<AuthSection> {
    const NAMES: [&str; 4] = ["jwt", "apiKey", "basicAuth", "externalAuth"];
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let p = format!("spec.anyOf[{i}]");
        let Some(idx) = NAMES.iter().position(|k| k == n) else {
            let msg = format!("`{n}` is not an auth section{}", hint(n, NAMES));
            v.errors.push(ctx.error(&p, msg));
            continue;
        };
        let (section, set) = present[idx];
        if !set {
            v.errors
                .push(ctx.error(&p, format!("this policy has no `{n}` section")));
        } else if out.contains(&section) {
            v.errors
                .push(ctx.error(&p, format!("`{n}` is listed twice")));
        } else {
            out.push(section);
        }
    }
    if out.len() == 1 {
        v.errors.push(ctx.error(
            "spec.anyOf",
            "`anyOf` lists alternatives: name at least two auth sections",
        ));
    }
    out
}
