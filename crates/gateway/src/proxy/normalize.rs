//! Request flow, before routing: the one path normaliser. Every request path is brought to a single
//! spelling here, once, before the route table and every policy see it, and that spelling is what
//! the upstream receives — so no spelling of `/admin` can miss an `/admin` rule and still be
//! served as `/admin` by a backend that decodes more than the gateway did.
//!
//! The rule (documented in the README, "Path normalisation"):
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded (RFC 3986
//!    §6.2.2.2) and every remaining escape is written in upper case (§6.2.2.1);
//! 2. repeated slashes are merged;
//! 3. `.` and `..` segments are resolved (§5.2.4), after step 1 so `%2e` counts as a dot;
//! 4. refused with 400: an escaped slash `%2F` or backslash `%5C` (unless the listener keeps them,
//!    as opaque bytes of one segment), a raw `\`, any control character raw or escaped (`%00`-`%1F`,
//!    `%7F`), an escape that is not `%` followed by two hex digits, and a dot segment carrying
//!    parameters (`..;x`, `.;x`), which servlet containers resolve as `..` after this gateway
//!    has routed it as an ordinary name (the `/x/..;/admin` bypass).
//!
//! Clean paths — the overwhelming majority — are recognised in one pass over their bytes and cost no
//! allocation.

pub(crate) use gatehouse_config::EscapedSlashes;
use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// `%2F` or `%5C`: a backend that decodes it would see a different path than the router.
    EscapedSlash,
    /// A raw backslash, which some backends treat as a separator.
    Backslash,
    /// A control character, raw or escaped (`%00` truncates paths in C-based backends).
    Control,
    /// `%` not followed by two hex digits.
    InvalidEscape,
    /// The path does not start with `/`.
    NotAbsolute,
    /// `..;x` or `.;x`: a dot segment to a backend that strips path parameters.
    DotSegmentParams,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::EscapedSlash => "the path contains an encoded slash or backslash",
            PathError::Backslash => "the path contains a backslash",
            PathError::Control => "the path contains a control character",
            PathError::InvalidEscape => "the path contains an invalid percent-escape",
            PathError::NotAbsolute => "the request target must start with `/`",
            PathError::DotSegmentParams => "the path contains a dot segment with parameters",
        })
    }
}

/// The normal form of `path`, or `None` when it already is in normal form (no allocation).
pub(crate) fn normalize(path: &str, slashes: EscapedSlashes) -> Result<Option<String>, PathError> {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_clean(b) {
        return Ok(None);
    }
    let decoded = decode(b, slashes)?;
    let dot_params = |seg: &str| {
        seg.split_once(';')
            .is_some_and(|(name, _)| name == "." || name == "..")
    };
    if decoded.split('/').any(dot_params) {
        return Err(PathError::DotSegmentParams);
    }
    let out = resolve(&decoded);
    Ok(if out == path { None } else { Some(out) })
}

/// Whether the path needs no work: no escape, backslash or control byte, no empty segment inside
/// it, no `.` or `..` segment. One pass, no allocation.
fn is_clean(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' | b'\\' | 0..=0x1f | 0x7f => return false,
            b'/' => {
                let rest = &b[i + 1..];
                let dots = rest.iter().take_while(|&&c| c == b'.').count();
                let seg_end = rest.get(dots).is_none_or(|&c| c == b'/');
                // `//`, or a segment that is `.` or `..` (or starts `.;`, `..;`).
                let params = rest.get(dots) == Some(&b';');
                if rest.first() == Some(&b'/') || ((seg_end || params) && (dots == 1 || dots == 2))
                {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Step 1 and the refusals of step 4.
fn decode(b: &[u8], slashes: EscapedSlashes) -> Result<String, PathError> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::InvalidEscape);
                };
                let v = hi << 4 | lo;
                if is_unreserved(v) {
                    out.push(v as char);
                } else if v < 0x20 || v == 0x7f {
                    return Err(PathError::Control);
                } else if (v == b'/' || v == b'\\') && slashes == EscapedSlashes::Reject {
                    return Err(PathError::EscapedSlash);
                } else {
                    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
                    out.push('%');
                    out.push(UPPER[hi as usize] as char);
                    out.push(UPPER[lo as usize] as char);
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::Control),
            _ => {}
        }
        // Copy the run of ordinary bytes up to the next special one in one go (keeps any
        // non-ASCII UTF-8 sequence whole: the loop only stops on ASCII bytes).
        let run = b[i..]
            .iter()
            .position(|&c| matches!(c, b'%' | b'\\' | 0..=0x1f | 0x7f))
            .map_or(b.len(), |n| i + n);
        // The input is a `str` and the run ends on an ASCII byte or the end: a char boundary.
        out.push_str(std::str::from_utf8(&b[i..run]).unwrap_or_default());
        i = run;
    }
    Ok(out)
}

/// Steps 2 and 3 on a decoded path that starts with `/`.
fn resolve(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in path.split('/').skip(1) {
        match seg {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, EscapedSlashes::Reject).map(|o| o.unwrap_or_else(|| p.to_string()))
    }

    #[test]
    fn clean_paths_are_left_alone_without_allocating() {
        for p in [
            "/",
            "/v1/tasks/7",
            "/a/",
            "/.well-known/acme",
            "/a..b/c.d",
            "/...",
            "/a/...b",
            "/caf\u{e9}",
            "/a;b/c;d=1",
            "/...;x",
        ] {
            assert_eq!(normalize(p, EscapedSlashes::Reject), Ok(None), "{p}");
        }
    }

    #[test]
    fn spellings_collapse_to_one_form() {
        let cases = [
            ("/%61dmin", "/admin"),
            ("/%41DMIN", "/ADMIN"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b//", "/a/b/"),
            ("/x/../admin", "/admin"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/x/%2E./admin", "/admin"),
            ("/x/.%2e/admin", "/admin"),
            ("/./admin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..//c", "/a/c"),
            ("/%7euser", "/~user"),
            ("/a%2db", "/a-b"),
            ("/q%3fx", "/q%3Fx"),
            ("/sp%20ace", "/sp%20ace"),
            ("/pct%25", "/pct%25"),
            ("/%e2%82%ac", "/%E2%82%AC"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn dangerous_spellings_are_refused() {
        let cases = [
            ("/admin%2f", PathError::EscapedSlash),
            ("/x/..%2fadmin", PathError::EscapedSlash),
            ("/x/..%2Fadmin", PathError::EscapedSlash),
            ("/x/..%5cadmin", PathError::EscapedSlash),
            ("/x/..\\admin", PathError::Backslash),
            ("/admin%00.json", PathError::Control),
            ("/a%0d%0aSet-Cookie:x", PathError::Control),
            ("/a%7f", PathError::Control),
            ("/a%zz", PathError::InvalidEscape),
            ("/a%4", PathError::InvalidEscape),
            ("/a%", PathError::InvalidEscape),
            ("/%%32%65", PathError::InvalidEscape),
            ("/x/..;/admin", PathError::DotSegmentParams),
            ("/x/.;a/admin", PathError::DotSegmentParams),
            ("/x/%2e%2e;/admin", PathError::DotSegmentParams),
            ("admin", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), Err(want), "{input}");
        }
    }

    #[test]
    fn a_listener_may_keep_escaped_slashes_as_data() {
        let keep =
            |p| normalize(p, EscapedSlashes::Keep).map(|o| o.unwrap_or_else(|| String::from(p)));
        assert_eq!(keep("/files/a%2fb").as_deref(), Ok("/files/a%2Fb"));
        assert_eq!(keep("/x/..%2fadmin").as_deref(), Ok("/x/..%2Fadmin"));
        assert_eq!(keep("/x/..%5Cadmin").as_deref(), Ok("/x/..%5Cadmin"));
        assert_eq!(keep("/x/..\\admin"), Err(PathError::Backslash));
    }

    // Bounded for CI; a longer local run: `PROPTEST_CASES=1000000 cargo test -p gatehouse-gateway
    // --lib normalize`.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Paths built from the characters that matter here: separators, dots, escapes (valid,
        /// invalid, of unreserved and reserved bytes), backslashes and ordinary text.
        #[test]
        fn normal_form_is_a_fixed_point_without_dot_segments_or_decodable_escapes(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "/", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%61", "%7E", "%25", "%3f",
                "%20", "%e2%82%ac", "%", "%4", "%zz", "\\", "a", "B", "~", "-", "_", "x.y",
                "%00", "%1f", "\u{e9}",
            ]), 0..16),
            keep in proptest::bool::ANY,
        ) {
            let path = format!("/{}", parts.concat());
            let mode = if keep { EscapedSlashes::Keep } else { EscapedSlashes::Reject };
            if let Ok(out) = normalize(&path, mode) {
                let out = out.unwrap_or(path.clone());
                // Idempotent: the normal form is already normal.
                proptest::prop_assert_eq!(normalize(&out, mode), Ok(None));
                proptest::prop_assert!(out.starts_with('/'));
                proptest::prop_assert!(!out.contains("//"), "{out}");
                for seg in out.split('/') {
                    proptest::prop_assert!(seg != "." && seg != "..", "{out}");
                }
                let b = out.as_bytes();
                for (i, &c) in b.iter().enumerate() {
                    proptest::prop_assert!(c != b'\\' && c >= 0x20 && c != 0x7f);
                    if c == b'%' {
                        let (hi, lo) = (hex(b[i + 1]).unwrap(), hex(b[i + 2]).unwrap());
                        proptest::prop_assert!(!is_unreserved(hi << 4 | lo), "{out}");
                        proptest::prop_assert!(!b[i + 1].is_ascii_lowercase());
                        proptest::prop_assert!(!b[i + 2].is_ascii_lowercase());
                    }
                }
            }
        }

        /// Arbitrary text never panics the normaliser, and whatever it accepts is a fixed point.
        #[test]
        fn arbitrary_paths_never_panic(path in "\\PC*") {
            let path = format!("/{path}");
            if let Ok(Some(out)) = normalize(&path, EscapedSlashes::Reject) {
                proptest::prop_assert_eq!(normalize(&out, EscapedSlashes::Reject), Ok(None));
            }
        }
    }
}
