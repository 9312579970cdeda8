//! Config flow, step 4 (part): checks of single rule values that their YAML type lets through:
//! request methods, direct-response bodies and regex substitutions.

use crate::error::hint;

/// The methods of RFC 9110 §9 and RFC 5789 (PATCH). Anything else is far more often a typo
/// (`GETT`) than a real extension method, so extension methods are listed apart, on purpose.
pub(crate) const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// `method` as matched (uppercase), or why it is refused. Standard methods may be written in any
/// case; everything else belongs in `extensionMethods`.
pub(crate) fn standard_method(method: &str) -> Result<String, String> {
    let upper = method.to_ascii_uppercase();
    if STANDARD_METHODS.contains(&upper.as_str()) {
        return Ok(upper);
    }
    Err(format!(
        "unknown method `{method}`{}; a non-standard method such as `PURGE` is matched by listing it in `extensionMethods`",
        hint(method, STANDARD_METHODS)
    ))
}

/// An extension method (`PURGE`, `PROPFIND`), or why it is refused. Only uppercase tokens are
/// accepted: methods are case-sensitive on the wire, and every registered extension is uppercase.
pub(crate) fn extension_method(method: &str) -> Result<String, String> {
    if STANDARD_METHODS.contains(&method.to_ascii_uppercase().as_str()) {
        return Err(format!(
            "`{method}` is a standard method: list it in `methods`"
        ));
    }
    let ok = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(method.to_string())
    } else {
        Err(format!(
            "invalid extension method `{method}`: use uppercase letters, digits, `-` and `_`"
        ))
    }
}

/// Why a direct response with `status` cannot carry `body`, if it cannot: HTTP forbids a body
/// on 1xx, 204 and 304 (RFC 9110 §6.4.1), and 205 must not have one either (§15.3.6). Clients
/// would otherwise see the body as the start of the next response.
pub(crate) fn body_not_allowed(status: u16, body: &str) -> Option<String> {
    let forbidden = (100..200).contains(&status) || matches!(status, 204 | 205 | 304);
    (forbidden && !body.is_empty()).then(|| {
        format!("status {status} cannot carry a body: remove `body` or use another status")
    })
}

/// Problems with a regex rewrite's substitution: `\1` (sed's syntax, copied as text by the regex
/// engine) instead of `$1`, and references to groups the pattern does not have.
pub(crate) fn substitution_problems(pattern: &regex::Regex, substitution: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = substitution.as_bytes();
    for w in bytes.windows(2) {
        if w[0] == b'\\' && w[1].is_ascii_digit() {
            let n = w[1] as char;
            out.push(format!(
                "`\\{n}` is copied literally: capture groups are written `${n}` (or `${{{n}}}` before a letter or digit)"
            ));
        }
    }
    let groups = pattern.captures_len();
    let names: Vec<&str> = pattern.capture_names().flatten().collect();
    let mut rest = substitution;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(tail) = rest.strip_prefix('$') {
            rest = tail; // `$$` is a literal dollar.
            continue;
        }
        let (name, braced) = match rest.strip_prefix('{') {
            Some(r) => (r.split('}').next().unwrap_or(""), true),
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], false)
            }
        };
        if name.is_empty() {
            continue;
        }
        let known = match name.parse::<usize>() {
            Ok(n) => n < groups,
            Err(_) => names.contains(&name),
        };
        if !known {
            let digits_then_more =
                name.starts_with(|c: char| c.is_ascii_digit()) && name.parse::<usize>().is_err();
            let extra = if !braced && digits_then_more {
                " (to follow `$N` with letters, write `${N}`)".to_string()
            } else {
                String::new()
            };
            out.push(format!(
                "`${name}` refers to no capture group of the pattern ({} group{}){extra}",
                groups - 1,
                if groups == 2 { "" } else { "s" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_standard_or_listed_as_extensions() {
        assert_eq!(standard_method("get"), Ok("GET".into()));
        let e = standard_method("GETT").unwrap_err();
        assert!(e.contains("did you mean `GET`"), "{e}");
        assert_eq!(extension_method("PURGE"), Ok("PURGE".into()));
        assert!(extension_method("purge").is_err());
        assert!(extension_method("GET").is_err());
    }

    #[test]
    fn bodies_are_refused_where_http_has_none() {
        for s in [101, 204, 205, 304] {
            assert!(body_not_allowed(s, "x").is_some(), "{s}");
            assert!(body_not_allowed(s, "").is_none(), "{s}");
        }
        assert!(body_not_allowed(200, "x").is_none());
    }

    #[test]
    fn substitutions_use_dollar_references_to_existing_groups() {
        let re = regex::Regex::new("^/v1/(?P<id>[0-9]+)/(.*)$").unwrap();
        assert!(substitution_problems(&re, "/$1/${2}/$id/$$").is_empty());
        let p = substitution_problems(&re, "/\\1");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("`$1`"), "{p:?}");
        let p = substitution_problems(&re, "/$3");
        assert!(p[0].contains("refers to no capture group"), "{p:?}");
        let p = substitution_problems(&re, "/$1x");
        assert!(p[0].contains("${N}"), "{p:?}");
    }
}
