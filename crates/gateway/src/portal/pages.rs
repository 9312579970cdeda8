//! Developer portal, pages: the shell every page shares (navigation, skip link, footer), the
//! catalogue, one page per API group, the changelog and the not-found page. Rendered once per
//! config version by `Site::build`, never per request.

use super::catalogue::{Catalogue, Group};
use super::changelog::Entry;
use super::html::{Esc, Html};
use super::operation::operation;

/// What every page needs to know about the site.
pub(crate) struct Shell<'a> {
    /// The portal's title.
    pub title: &'a str,
    /// Path prefix of every link (`""` on a listener of its own, `/portal` under a prefix).
    pub base: &'a str,
    /// Where the try-it script sends requests: the portal's proxy, or `""` for same-origin.
    pub try_url: &'a str,
    /// The config version the pages describe.
    pub version: &'a str,
}

/// Which navigation entry is the current page.
#[derive(PartialEq, Eq, Clone, Copy)]
pub(crate) enum Nav {
    Apis,
    Changelog,
    None,
}

impl Shell<'_> {
    /// A whole page around `main`.
    pub(crate) fn page(&self, heading: &str, nav: Nav, main: &str) -> String {
        let mut h = Html::default();
        let b = Esc(self.base);
        h.fmt(format_args!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · {}</title><link rel=\"stylesheet\" href=\"{b}/assets/portal.css\">\
             </head>\n<body data-try=\"{}\">\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header class=\"top\"><a class=\"brand\" href=\"{b}/\">{}</a>\
             <nav aria-label=\"Portal\"><ul>",
            Esc(heading),
            Esc(self.title),
            Esc(self.try_url),
            Esc(self.title),
        ));
        for (which, href, label) in [
            (Nav::Apis, "/", "APIs"),
            (Nav::Changelog, "/changelog", "Changelog"),
        ] {
            let current = if which == nav {
                " aria-current=\"page\""
            } else {
                ""
            };
            h.fmt(format_args!(
                "<li><a href=\"{b}{href}\"{current}>{label}</a></li>"
            ));
        }
        h.fmt(format_args!(
            "<li><a href=\"{b}/openapi.json\">OpenAPI</a></li></ul></nav></header>\n\
             <main id=\"main\" tabindex=\"-1\">{main}</main>\n\
             <footer><p>Config version <code>{}</code> · served by Gatehouse</p></footer>\
             <script src=\"{b}/assets/portal.js\" defer></script></body></html>\n",
            Esc(short(self.version)),
        ));
        h.0
    }
}

/// The first 12 characters of a version hash: enough to tell versions apart on a page.
fn short(v: &str) -> &str {
    v.get(..12).unwrap_or(v)
}

/// `2026-11-30T07:43:20.081Z` as `2026-11-30 07:43:20`.
fn readable_time(at: &str) -> String {
    at.get(..19).unwrap_or(at).replace('T', " ")
}

/// `/`: every API, grouped by host and version.
pub(crate) fn index(shell: &Shell, cat: &Catalogue) -> String {
    let mut h = Html::default();
    h.fmt(format_args!("<h1>{}</h1>", Esc(shell.title)));
    if cat.groups.is_empty() {
        h.raw("<p>No API is published yet: this gateway has no route.</p>");
    } else {
        let ops: usize = cat.groups.iter().map(|g| g.ops.len()).sum();
        h.fmt(format_args!(
            "<p class=\"lead\">{ops} operation{} in {} API{}. Pick one to read its operations and try them.</p>",
            if ops == 1 { "" } else { "s" },
            cat.groups.len(),
            if cat.groups.len() == 1 { "" } else { "s" },
        ));
    }
    let mut hosts: Vec<&str> = cat.groups.iter().map(|g| g.host.as_str()).collect();
    hosts.dedup();
    for host in hosts {
        let id = super::html::slug(&format!("host {host}"));
        h.fmt(format_args!(
            "<section class=\"host\" aria-labelledby=\"{id}\"><h2 id=\"{id}\">{}</h2><ul class=\"cards\">",
            Esc(host)
        ));
        for g in cat.groups.iter().filter(|g| g.host == host) {
            card(&mut h, shell, g);
        }
        h.raw("</ul></section>");
    }
    shell.page(shell.title, Nav::Apis, &h.0)
}

fn card(h: &mut Html, shell: &Shell, g: &Group) {
    h.fmt(format_args!(
        "<li class=\"card\"><h3><a href=\"{}/apis/{}\">{} API<span class=\"sr\"> on {}</span></a></h3>\
         <p>{} operation{}</p><ul class=\"ops\">",
        Esc(shell.base),
        Esc(&g.slug),
        Esc(&g.version),
        Esc(&g.host),
        g.ops.len(),
        if g.ops.len() == 1 { "" } else { "s" },
    ));
    for op in g.ops.iter().take(8) {
        h.fmt(format_args!(
            "<li><a href=\"{}/apis/{}#{}\"><span class=\"method m-{}\">{}</span> <code>{}</code></a></li>",
            Esc(shell.base),
            Esc(&g.slug),
            Esc(&op.anchor),
            Esc(&op.method.to_ascii_lowercase()),
            Esc(&op.method),
            Esc(&op.path),
        ));
    }
    if g.ops.len() > 8 {
        h.fmt(format_args!("<li>and {} more</li>", g.ops.len() - 8));
    }
    h.raw("</ul></li>");
}

/// `/apis/{slug}`: one API version on one host, every operation in full.
pub(crate) fn group(shell: &Shell, g: &Group) -> String {
    let mut h = Html::default();
    let heading = format!("{} {}", g.host, g.version);
    h.fmt(format_args!(
        "<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><a href=\"{}/\">APIs</a> › {}</nav>\
         <h1>{} <span class=\"version\">{}</span></h1>",
        Esc(shell.base),
        Esc(&heading),
        Esc(&g.host),
        Esc(&g.version)
    ));
    if let Some(s) = &g.server {
        h.fmt(format_args!("<p>Base URL: <code>{}</code></p>", Esc(s)));
    }
    if shell.try_url.is_empty() && g.host != "any host" {
        h.fmt(format_args!(
            "<p class=\"note\">“Try it” sends requests from your browser to this site; they reach these operations when you opened the portal on <code>{}</code>.</p>",
            Esc(&g.host)
        ));
    }
    h.raw("<h2 id=\"operations\">Operations</h2><ul class=\"toc\">");
    for op in &g.ops {
        h.fmt(format_args!(
            "<li><a href=\"#{}\"><span class=\"method m-{}\">{}</span> <code>{}</code></a>{}</li>",
            Esc(&op.anchor),
            Esc(&op.method.to_ascii_lowercase()),
            Esc(&op.method),
            Esc(&op.path),
            op.summary
                .as_deref()
                .map(|s| format!(" — {}", Esc(s)))
                .unwrap_or_default(),
        ));
    }
    h.raw("</ul>");
    for op in &g.ops {
        operation(&mut h, g, op);
    }
    shell.page(&heading, Nav::Apis, &h.0)
}

/// `/changelog`: what the last reloads changed in the public API, newest first.
pub(crate) fn changelog(shell: &Shell, entries: &[Entry]) -> String {
    let mut h = Html::default();
    h.raw("<h1>Changelog</h1><p class=\"lead\">Changes to the public API made by the last configuration reloads, newest first.</p>");
    if entries.is_empty() {
        h.raw("<p>No reload has changed the configuration since the gateway started.</p>");
    }
    for (i, e) in entries.iter().enumerate() {
        let count = |class: &str| e.changes.iter().filter(|c| c.class == class).count();
        h.fmt(format_args!(
            "<section class=\"release\" aria-labelledby=\"r{i}\"><h2 id=\"r{i}\">Reload at <time datetime=\"{}\">{} UTC</time></h2>\
             <p>Version <code>{}</code> → <code>{}</code>: {} breaking, {} non-breaking, {} informational.</p>",
            Esc(&e.at),
            Esc(&readable_time(&e.at)),
            Esc(short(&e.from)),
            Esc(short(&e.to)),
            count("breaking"),
            count("non-breaking"),
            count("informational"),
        ));
        if e.changes.is_empty() {
            h.raw("<p>No change to the public API.</p></section>");
            continue;
        }
        // A list, not a table: it reads the same at phone width. Config file locations stay out:
        // they describe the gateway's files, not the API, and this page is public.
        h.raw("<ul class=\"changes\">");
        for c in &e.changes {
            h.fmt(format_args!(
                "<li><span class=\"badge b-{}\">{}</span> <code>{}</code><br>{}</li>",
                Esc(&c.class),
                Esc(&c.class),
                Esc(&c.operation),
                Esc(&c.reason),
            ));
        }
        h.raw("</ul></section>");
    }
    shell.page("Changelog", Nav::Changelog, &h.0)
}

/// Any other path.
pub(crate) fn not_found(shell: &Shell) -> String {
    let main = format!(
        "<h1>Page not found</h1><p>There is no such page in this portal. <a href=\"{}/\">See every API</a>.</p>",
        Esc(shell.base)
    );
    shell.page("Page not found", Nav::None, &main)
}
