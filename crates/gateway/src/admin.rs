//! Admin API, beside the data plane: readiness, liveness, metrics, the effective config, the route
//! table, backends, rollouts, and `POST /reload`. Bound to loopback by default; it is not behind
//! routing.

mod registration;
mod rollouts;
mod routes;

use crate::gateway::Gateway;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    r
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// The admin listener: the gateway, and the addresses it was started with, which only a restart
/// changes.
struct Admin {
    gw: Arc<Gateway>,
    /// `admin.address` as configured when this listener was bound.
    configured_at_start: SocketAddr,
    /// The address actually bound (the port is known even when `:0` was asked for).
    serving: SocketAddr,
}

/// `GET /config`: the effective config as manifests, and where the admin API serves. A reload can
/// change `admin.address` in the config but not the bound listener: both are shown, flagged.
fn config(admin: &Admin) -> Response<Full<Bytes>> {
    let snap = admin.gw.snapshot.load();
    let configured = snap.config.gateway.admin_address;
    json_response(
        StatusCode::OK,
        json!({
            "version": snap.config.version,
            "lastReload": admin.gw.status(),
            "admin": {
                "address": configured.to_string(),
                "serving": admin.serving.to_string(),
                "restartRequired": configured != admin.configured_at_start,
            },
            "config": snap.config.to_manifests(),
        }),
    )
}

/// Answers one admin request.
async fn route(admin: &Admin, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let gw = &admin.gw;
    let path = req.uri().path();
    let method = req.method();
    let get = method == Method::GET || method == Method::HEAD;
    if let Some((ns, name, id)) = registration::parse_path(path) {
        let (method, ns, name, id) = (
            method.clone(),
            ns.to_string(),
            name.to_string(),
            id.to_string(),
        );
        return registration::serve(gw, &method, (&ns, &name, &id), req.into_body()).await;
    }
    if rollouts::owns(path) {
        return rollouts::serve(gw, method, path);
    }
    match path {
        "/ready" | "/live" | "/metrics" | "/config" | "/routes" | "/backends" if !get => {
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "method_not_allowed", "message": "use GET"}),
            )
        }
        "/reload" if method != Method::POST => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method_not_allowed", "message": "use POST"}),
        ),
        "/live" => text(StatusCode::OK, "live\n".into(), "text/plain"),
        "/ready" => {
            if gw.is_draining() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "draining\n".into(),
                    "text/plain",
                )
            } else {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            gw.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/config" => config(admin),
        "/routes" => routes::routes(gw, req.uri().query()),
        "/backends" => {
            let snap = gw.snapshot.load();
            let now_ms = crate::state::now_ms();
            let backends: Vec<_> = snap
                .backends
                .iter()
                .map(|b| {
                    let mut v = b.state.describe(now_ms);
                    v["name"] = json!(&*b.id);
                    v["protocol"] = json!(b.protocol);
                    v["loadBalancer"] = json!(b.policy);
                    v
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"version": snap.config.version, "backends": backends}),
            )
        }
        "/reload" => match gw.reload("admin").await {
            Ok(version) => json_response(StatusCode::OK, json!({"ok": true, "version": version})),
            Err(errors) => json_response(
                StatusCode::BAD_REQUEST,
                json!({"ok": false, "version": gw.snapshot.load().config.version, "errors": errors}),
            ),
        },
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": "admin endpoints: /ready /live /metrics /config /routes /backends /rollouts, POST /reload, POST /rollouts/{ns}/{name}/{action}"}),
        ),
    }
}

/// Binds the admin listener and serves it in the background; returns the bound address.
pub async fn serve(gw: Arc<Gateway>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    gw.set_admin_addr(local);
    let admin = Arc::new(Admin {
        configured_at_start: gw.snapshot.load().config.gateway.admin_address,
        serving: local,
        gw,
    });
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let admin = admin.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(route(&admin, req).await) }
                });
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(local)
}
