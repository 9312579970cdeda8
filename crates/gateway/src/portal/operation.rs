//! Developer portal, one operation on its group page: what it does, which authentication it needs,
//! its limits, parameters, bodies and responses, and a "try it" form that sends a real request
//! through the gateway (`assets/portal.js` submits it).

use super::catalogue::{Group, Operation, Payload};
use super::html::{slug, Esc, Html, Prose};

pub(crate) fn operation(h: &mut Html, g: &Group, op: &Operation) {
    let a = Esc(&op.anchor);
    h.fmt(format_args!(
        "<section class=\"op\" id=\"{a}\" aria-labelledby=\"{a}-h\"><h3 id=\"{a}-h\">\
         <span class=\"method m-{}\">{}</span> <code>{}</code>{}</h3>",
        Esc(&op.method.to_ascii_lowercase()),
        Esc(&op.method),
        Esc(&op.path),
        if op.deprecated {
            " <span class=\"badge b-breaking\">deprecated</span>"
        } else {
            ""
        },
    ));
    if let Some(s) = &op.summary {
        h.fmt(format_args!("<p class=\"summary\">{}</p>", Prose(s)));
    }
    if let Some(d) = &op.description {
        h.fmt(format_args!("<p>{}</p>", Prose(d)));
    }
    h.raw("<dl class=\"facts\"><dt>Authentication</dt><dd>");
    if op.auth.is_empty() {
        h.raw("none");
    } else {
        let alternatives: Vec<String> = op
            .auth
            .iter()
            .map(|all| {
                all.iter()
                    .map(|s| Esc(s).to_string())
                    .collect::<Vec<_>>()
                    .join(" <em>and</em> ")
            })
            .collect();
        h.raw(&alternatives.join("<br><em>or</em> "));
    }
    h.raw("</dd>");
    for (k, v) in &op.limits {
        h.fmt(format_args!(
            "<dt>{}</dt><dd>{}</dd>",
            Esc(&words(k)),
            Esc(v)
        ));
    }
    if !op.limits.iter().any(|(k, _)| k.contains("rate")) {
        h.raw("<dt>Rate limit</dt><dd>none</dd>");
    }
    h.raw("</dl>");
    params(h, op);
    if let Some(b) = &op.body {
        h.raw("<h4>Request body</h4>");
        payload(h, b);
    }
    if !op.responses.is_empty() {
        h.raw("<h4>Responses</h4><ul class=\"responses\">");
        for (code, desc, body) in &op.responses {
            h.fmt(format_args!(
                "<li><strong>{}</strong> {}",
                Esc(code),
                Esc(desc.as_deref().unwrap_or(""))
            ));
            if let Some(b) = body {
                payload(h, b);
            }
            h.raw("</li>");
        }
        h.raw("</ul>");
    }
    try_form(h, g, op);
    h.raw("</section>");
}

/// `rate-limit` -> `Rate limit`.
fn words(k: &str) -> String {
    let s = k.replace(['-', '_'], " ");
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn params(h: &mut Html, op: &Operation) {
    if op.params.is_empty() {
        return;
    }
    h.raw("<h4>Parameters</h4><div class=\"scroll\"><table><thead><tr><th scope=\"col\">Name</th>\
           <th scope=\"col\">In</th><th scope=\"col\">Type</th><th scope=\"col\">Description</th></tr></thead><tbody>");
    for p in &op.params {
        h.fmt(format_args!(
            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&p.name),
            if p.required {
                " <span class=\"req\">required</span>"
            } else {
                ""
            },
            Esc(&p.location),
            Esc(p.schema.as_deref().unwrap_or("")),
            Esc(p.description.as_deref().unwrap_or("")),
        ));
    }
    h.raw("</tbody></table></div>");
}

fn payload(h: &mut Html, b: &Payload) {
    h.fmt(format_args!(
        "<p>Content type <code>{}</code></p>",
        Esc(&b.content_type)
    ));
    if let Some(e) = &b.example {
        h.fmt(format_args!(
            "<p class=\"label\">Example{}</p><pre><code>{}</code></pre>",
            if b.generated {
                " (made from the schema)"
            } else {
                ""
            },
            Esc(e)
        ));
    }
    if let Some(s) = &b.schema {
        h.fmt(format_args!(
            "<details><summary>Schema</summary><pre><code>{}</code></pre></details>",
            Esc(s)
        ));
    }
}

/// The try-it form. Without script it explains itself; with it, `portal.js` builds the request
/// from the fields and shows the gateway's real answer in the live region below.
fn try_form(h: &mut Html, g: &Group, op: &Operation) {
    let id = Esc(&op.anchor);
    let host = if g.host == "any host" {
        ""
    } else {
        g.host.as_str()
    };
    h.fmt(format_args!(
        "<form class=\"try\" data-method=\"{}\" data-path=\"{}\" data-host=\"{}\" aria-labelledby=\"{id}-try\">\
         <h4 id=\"{id}-try\">Try it</h4><noscript><p>Trying an operation needs JavaScript; or use curl.</p></noscript>",
        Esc(&op.method),
        Esc(&op.path),
        Esc(host),
    ));
    // A prefix rule serves every path below its own: let the path be edited.
    if op.limits.iter().any(|(k, v)| k == "match" && v == "prefix") {
        h.fmt(format_args!(
            "<p class=\"field\"><label for=\"{id}-path\">Path (<code>{}</code> or any path below it)</label>\
             <input id=\"{id}-path\" data-in=\"fullpath\" data-name=\"path\" value=\"{}\" required></p>",
            Esc(&op.path),
            Esc(&op.path),
        ));
    }
    for p in op.params.iter().filter(|p| p.location != "cookie") {
        let field = format!("{}-{}-{}", op.anchor, slug(&p.location), slug(&p.name));
        h.fmt(format_args!(
            "<p class=\"field\"><label for=\"{f}\"><code>{}</code> ({}{})</label>\
             <input id=\"{f}\" data-in=\"{}\" data-name=\"{}\" value=\"{}\"{}></p>",
            Esc(&p.name),
            Esc(&p.location),
            if p.required { ", required" } else { "" },
            Esc(&p.location),
            Esc(&p.name),
            Esc(p.example.as_deref().unwrap_or("")),
            if p.required { " required" } else { "" },
            f = Esc(&field),
        ));
    }
    h.fmt(format_args!(
        "<p class=\"field\"><label for=\"{id}-headers\">Headers, one <code>Name: value</code> per line (credentials go here)</label>\
         <textarea id=\"{id}-headers\" data-headers rows=\"2\" spellcheck=\"false\"></textarea></p>"
    ));
    // An undocumented body may still be sent with the methods that carry one.
    let body = match &op.body {
        Some(b) => Some((b.content_type.as_str(), b.example.as_deref().unwrap_or(""))),
        None if matches!(op.method.as_str(), "POST" | "PUT" | "PATCH") => {
            Some(("application/json", ""))
        }
        None => None,
    };
    if let Some((content_type, example)) = body {
        h.fmt(format_args!(
            "<p class=\"field\"><label for=\"{id}-body\">Body (<code>{}</code>)</label>\
             <textarea id=\"{id}-body\" data-body data-content-type=\"{}\" rows=\"6\" spellcheck=\"false\">{}</textarea></p>",
            Esc(content_type),
            Esc(content_type),
            Esc(example),
        ));
    }
    h.fmt(format_args!(
        "<p><button type=\"submit\">Send {} request</button></p>\
         <div class=\"result\" role=\"status\" aria-live=\"polite\" id=\"{id}-result\"></div></form>",
        Esc(&op.method)
    ));
}
