//! Config flow, step 4 (listeners): address, protocol, TLS files, timeouts, path normalisation,
//! the limits on what one client may make a listener hold, and the backend of a `TCP` listener.

use super::{relative_to_manifest, V};
use crate::loader::{Ctx, Object};
use crate::model::*;
use crate::raw;
use std::time::Duration;

pub(super) fn listener(
    v: &mut V,
    o: &Object,
    spec: &raw::ListenerSpec,
    backends: &[&ObjectId],
) -> Option<Listener> {
    let ctx = &o.ctx;
    let address = v.socket_addr(ctx, "spec.address", &spec.address);
    let protocol = match spec.protocol {
        raw::ListenerProtocol::HTTP => ListenerProtocol::HTTP,
        raw::ListenerProtocol::HTTPS => ListenerProtocol::HTTPS,
        raw::ListenerProtocol::TCP => ListenerProtocol::TCP,
        raw::ListenerProtocol::TLS => ListenerProtocol::TLS,
    };
    let backend = stream_backend(v, o, protocol, spec.backend.as_deref(), backends);
    let resolve = |p: &str| relative_to_manifest(ctx, p);
    let tls = spec.tls.as_ref().map(|t| Tls {
        certificates: t
            .certificates
            .iter()
            .map(|c| Certificate {
                cert_file: resolve(&c.cert_file),
                key_file: resolve(&c.key_file),
            })
            .collect(),
        client_auth: t
            .client_auth
            .as_ref()
            .map(|c| super::tls::client_auth(ctx, c)),
    });
    match (protocol, &tls) {
        (ListenerProtocol::HTTPS, None) => v
            .errors
            .push(ctx.error("spec", "an HTTPS listener needs `tls.certificates`")),
        (ListenerProtocol::HTTPS, Some(t)) if t.certificates.is_empty() => {
            v.errors.push(ctx.error(
                "spec.tls.certificates",
                "an HTTPS listener needs at least one certificate",
            ))
        }
        (ListenerProtocol::HTTP, Some(_)) => v
            .errors
            .push(ctx.error("spec.tls", "`tls` is only allowed on HTTPS listeners")),
        // A TLS passthrough listener never holds a key: the backend terminates TLS.
        (ListenerProtocol::TCP | ListenerProtocol::TLS, Some(_)) => v.errors.push(ctx.error(
            "spec.tls",
            "`tls` is only allowed on HTTPS listeners (a TLS listener passes TLS through untouched)",
        )),
        _ => {}
    }
    let timeouts = spec.timeouts.clone().unwrap_or_default();
    let idle_timeout = v.duration(
        ctx,
        "spec.timeouts.idle",
        timeouts.idle.as_ref(),
        Duration::from_secs(60),
    );
    Some(Listener {
        id: o.id.clone(),
        address: address?,
        protocol,
        tls,
        idle_timeout,
        escaped_slashes: spec
            .paths
            .as_ref()
            .and_then(|p| p.escaped_slashes)
            .unwrap_or_default(),
        limits: listener_limits(v, ctx, spec.limits.as_ref()),
        backend,
    })
}

/// The `backend` of a listener: required on `TCP`, refused elsewhere (a `TLS` listener finds its
/// backend through the Route whose `hosts` match the SNI name; HTTP ones through routing).
fn stream_backend(
    v: &mut V,
    o: &Object,
    protocol: ListenerProtocol,
    name: Option<&str>,
    backends: &[&ObjectId],
) -> Option<ObjectId> {
    let ctx = &o.ctx;
    let Some(name) = name else {
        if protocol == ListenerProtocol::TCP {
            v.errors
                .push(ctx.error("spec", "a TCP listener needs `backend`"));
        }
        return None;
    };
    if protocol != ListenerProtocol::TCP {
        v.errors.push(ctx.error(
            "spec.backend",
            "`backend` is only allowed on TCP listeners (others pick backends through Routes)",
        ));
        return None;
    }
    let id = match name.split_once('/') {
        Some((ns, n)) => ObjectId {
            namespace: ns.into(),
            name: n.into(),
        },
        None => ObjectId {
            namespace: o.id.namespace.clone(),
            name: name.into(),
        },
    };
    if !backends.contains(&&id) {
        let names: Vec<String> = (backends.iter())
            .map(|b| match b.namespace == o.id.namespace {
                true => b.name.clone(),
                false => b.to_string(),
            })
            .collect();
        v.errors.push(ctx.error(
            "spec.backend",
            format!(
                "unknown backend `{id}`{}",
                crate::error::hint(name, names.iter().map(String::as_str))
            ),
        ));
    }
    Some(id)
}

fn listener_limits(v: &mut V, ctx: &Ctx, spec: Option<&raw::ListenerLimits>) -> ListenerLimits {
    let d = ListenerLimits::default();
    let Some(spec) = spec else { return d };
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB, so neither can the head limit.
    let head = v.size(
        ctx,
        "spec.limits.maxRequestHeadersSize",
        spec.max_request_headers_size.as_ref(),
        d.max_request_headers_size,
    );
    if head < 8192 {
        v.errors.push(ctx.error(
            "spec.limits.maxRequestHeadersSize",
            format!("must be at least 8KiB, found {head} bytes"),
        ));
    }
    let max_connections = spec.max_connections.unwrap_or(d.max_connections);
    if max_connections == 0 {
        v.errors
            .push(ctx.error("spec.limits.maxConnections", "must be at least 1"));
    }
    ListenerLimits {
        max_connections,
        max_request_headers_size: head,
        max_uri_length: v.size(
            ctx,
            "spec.limits.maxUriLength",
            spec.max_uri_length.as_ref(),
            d.max_uri_length,
        ),
    }
}
