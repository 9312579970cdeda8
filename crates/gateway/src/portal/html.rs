//! Developer portal, rendering helpers: every piece of config- or document-supplied text goes into
//! a page through [`Esc`], so a title, summary or example can never become markup.

use std::fmt::{self, Write};

/// Text escaped for HTML element content and double-quoted attribute values.
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A page being written. `write!` into a `String` cannot fail, so the helpers ignore the result
/// in one place rather than at every call.
#[derive(Default)]
pub(crate) struct Html(pub String);

impl Html {
    /// Appends markup written by this crate (never data).
    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// Appends formatted markup; data in the arguments must be wrapped in [`Esc`].
    pub(crate) fn fmt(&mut self, args: fmt::Arguments<'_>) -> &mut Self {
        let _ = self.0.write_fmt(args);
        self
    }
}

/// Escaped text in which `` `code` `` spans become `<code>` (the one piece of Markdown that
/// OpenAPI descriptions and Gatehouse's own summaries use).
pub(crate) struct Prose<'a>(pub &'a str);

impl fmt::Display for Prose<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self.0.split('`').collect();
        // An odd number of backticks leaves the last one as text.
        let balanced = parts.len() % 2 == 1;
        for (i, part) in parts.iter().enumerate() {
            let code = i % 2 == 1 && (balanced || i + 1 < parts.len());
            match (code, i % 2 == 1) {
                (true, _) => write!(f, "<code>{}</code>", Esc(part))?,
                (false, true) => write!(f, "`{}", Esc(part))?,
                (false, false) => write!(f, "{}", Esc(part))?,
            }
        }
        Ok(())
    }
}

/// An id or URL segment from free text: lowercase letters, digits and single dashes.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            Esc(r#"<script>alert("x&y")</script> it's"#).to_string(),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; it&#39;s"
        );
        assert_eq!(Esc("plain ünïcode").to_string(), "plain ünïcode");
    }

    #[test]
    fn prose_makes_code_spans_and_escapes_the_rest() {
        assert_eq!(
            Prose("`/v1/<x>` and <b>").to_string(),
            "<code>/v1/&lt;x&gt;</code> and &lt;b&gt;"
        );
        assert_eq!(Prose("a `b").to_string(), "a `b");
    }

    #[test]
    fn slugs_are_url_and_id_safe() {
        assert_eq!(slug("api.example.com v1"), "api-example-com-v1");
        assert_eq!(slug("*.example.com"), "example-com");
        assert_eq!(slug("{}"), "x");
    }
}
