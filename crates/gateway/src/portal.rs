//! Developer portal, beside the data plane: a server-rendered site of the gateway's public API
//! (catalogue, operations, try-it, changelog). Config flow: each reload renders the whole site once
//! (`Site::build`, off the request path) and puts it in the snapshot; requests only look pages up.
//! Served on a listener of its own (`portal.address`, `portal/server.rs`) or under
//! `portal.pathPrefix` on every HTTP listener, checked before routing (`proxy/handler.rs`).

mod catalogue;
mod changelog;
mod html;
mod operation;
mod pages;
mod server;
mod tryit;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use gatehouse_config::{Config, PortalMount};
use http::{header, HeaderValue, Method, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub(crate) use changelog::Changelog;
pub(crate) use server::PortalControl;

const CSS: &str = include_str!("portal/assets/portal.css");
const JS: &str = include_str!("portal/assets/portal.js");

/// One ready response: body and content type.
struct Page {
    body: Bytes,
    content_type: &'static str,
}

/// Every page of the portal for one config version, rendered once.
pub(crate) struct Site {
    /// `Some(prefix)` when served on the HTTP listeners under it.
    prefix: Option<String>,
    pages: HashMap<String, Page>,
    not_found: Bytes,
}

/// A portal answer: status, content type, body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// `Location`, for the redirect from the bare prefix to its directory form.
    pub location: Option<String>,
}

impl Site {
    /// Renders the whole site for `config`; `None` when the config has no portal.
    pub(crate) fn build(config: &Config, changelog: &[changelog::Entry]) -> Option<Site> {
        let portal = config.gateway.portal.as_ref()?;
        let (prefix, base, try_url) = match &portal.mount {
            PortalMount::Address(_) => (None, String::new(), "/try".to_string()),
            PortalMount::PathPrefix(p) => (Some(p.clone()), p.clone(), String::new()),
        };
        let doc = match gatehouse_contract::openapi_document(config) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("portal: no OpenAPI document for this config: {e}");
                serde_json::json!({"openapi": "3.1.0", "paths": {}})
            }
        };
        let cat = catalogue::Catalogue::from_openapi(&doc);
        let shell = pages::Shell {
            title: &portal.title,
            base: &base,
            try_url: &try_url,
            version: &config.version,
        };
        let html = |s: String| Page {
            body: Bytes::from(s),
            content_type: "text/html; charset=utf-8",
        };
        let mut map = HashMap::new();
        map.insert("/".to_string(), html(pages::index(&shell, &cat)));
        map.insert(
            "/changelog".to_string(),
            html(pages::changelog(&shell, changelog)),
        );
        for g in &cat.groups {
            map.insert(format!("/apis/{}", g.slug), html(pages::group(&shell, g)));
        }
        let mut json = serde_json::to_vec_pretty(&public(doc)).unwrap_or_default();
        json.push(b'\n');
        map.insert(
            "/openapi.json".to_string(),
            Page {
                body: Bytes::from(json),
                content_type: "application/json",
            },
        );
        map.insert(
            "/assets/portal.css".to_string(),
            Page {
                body: Bytes::from_static(CSS.as_bytes()),
                content_type: "text/css; charset=utf-8",
            },
        );
        map.insert(
            "/assets/portal.js".to_string(),
            Page {
                body: Bytes::from_static(JS.as_bytes()),
                content_type: "text/javascript; charset=utf-8",
            },
        );
        Some(Site {
            prefix,
            pages: map,
            not_found: Bytes::from(pages::not_found(&shell)),
        })
    }

    /// The page at `path` (relative to the portal's root), or the not-found page.
    pub(crate) fn page(&self, method: &Method, path: &str) -> Answer {
        if method != Method::GET && method != Method::HEAD {
            return Answer {
                status: StatusCode::METHOD_NOT_ALLOWED,
                content_type: "text/plain; charset=utf-8",
                body: Bytes::from_static(b"the portal's pages answer GET and HEAD\n"),
                location: None,
            };
        }
        let path = if path.is_empty() { "/" } else { path };
        match self.pages.get(path) {
            Some(p) => Answer {
                status: StatusCode::OK,
                content_type: p.content_type,
                body: p.body.clone(),
                location: None,
            },
            None => Answer {
                status: StatusCode::NOT_FOUND,
                content_type: "text/html; charset=utf-8",
                body: self.not_found.clone(),
                location: None,
            },
        }
    }

    /// On an HTTP listener: the answer when `path` is under the portal's prefix, else `None` (the
    /// request goes on to routing). Paths arrive normalised, so a byte comparison is enough.
    pub(crate) fn on_listener(&self, method: &Method, path: &str) -> Option<Answer> {
        let prefix = self.prefix.as_deref()?;
        let rest = path.strip_prefix(prefix)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        if rest.is_empty() {
            // `/portal` -> `/portal/`, so relative navigation has one spelling.
            return Some(Answer {
                status: StatusCode::PERMANENT_REDIRECT,
                content_type: "text/plain; charset=utf-8",
                body: Bytes::new(),
                location: Some(format!("{prefix}/")),
            });
        }
        Some(self.page(method, rest))
    }
}

impl Answer {
    /// As an HTTP response with the headers every portal answer carries: no framing by other
    /// sites, no content sniffing, scripts and styles from the portal only.
    pub(crate) fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let mut r = Response::new(B::from(self.body.clone()));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(l) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, l);
        }
        r
    }
}

/// The document as the public may read it: without the config file and line each operation
/// comes from (`x-gatehouse-rule`), which describe the gateway's files, not the API.
fn public(mut doc: serde_json::Value) -> serde_json::Value {
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            item.remove("x-gatehouse-rule");
            for op in item.values_mut().filter_map(|o| o.as_object_mut()) {
                op.remove("x-gatehouse-rule");
            }
        }
    }
    doc
}

/// A reload's portal work, done before the swap.
#[derive(Default)]
pub(crate) struct Prepared {
    /// The rendered site, for the new snapshot.
    pub site: Option<Arc<Site>>,
    /// The changelog entry, kept once the swap happened.
    entry: Option<changelog::Entry>,
}

/// Diffs `old` and `new` and renders the site for `new`, its changelog included. Runs on the
/// control runtime's blocking pool: the diff and the rendering are CPU work of their own, kept
/// off the threads that serve traffic. A config without a portal costs nothing here.
pub(crate) async fn prepare(
    changelog: Arc<Mutex<Changelog>>,
    old: Option<Arc<Config>>,
    new: Arc<Config>,
) -> Prepared {
    if new.gateway.portal.is_none() {
        return Prepared::default();
    }
    let done = crate::runtime::control().spawn_blocking(move || {
        let entry = old.as_deref().and_then(|old| Changelog::entry(old, &new));
        let log = changelog.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let site = Site::build(&new, &log.entries(entry.as_ref())).map(Arc::new);
        if let Some(site) = &site {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            tracing::info!(pages = site.pages.len(), ms, "portal rendered");
        }
        Prepared { site, entry }
    });
    done.await.unwrap_or_default()
}

impl Prepared {
    /// After the swap: the reload happened, so its changes join the changelog.
    pub(crate) fn commit(self, changelog: &Mutex<Changelog>) {
        if let Some(e) = self.entry {
            changelog.lock().unwrap_or_else(|p| p.into_inner()).push(e);
        }
    }
}

/// Where the try-it proxy sends requests: the first plain-HTTP listener, at its bound address (a
/// wildcard address is reached on loopback).
pub(crate) fn try_target(
    config: &Config,
    bound: &HashMap<String, SocketAddr>,
) -> Option<SocketAddr> {
    config
        .listeners
        .iter()
        .filter(|l| l.protocol == gatehouse_config::ListenerProtocol::HTTP)
        .find_map(|l| bound.get(&l.id.to_string()))
        .map(|a| {
            let mut a = *a;
            if a.ip().is_unspecified() {
                a.set_ip(match a {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            a
        })
}
