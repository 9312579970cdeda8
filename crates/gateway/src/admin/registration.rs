//! Admin API, registration: `PUT /backends/{ns}/{name}/endpoints/{id}` with a JSON body
//! `{"address": "IP:port", "weight": N}` creates or renews a lease on a backend whose discovery is
//! `registration`; `DELETE` on the same path leaves. Bad input gets a 4xx JSON error and changes
//! nothing.

use super::json_response;
use crate::gateway::Gateway;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// The largest registration body read.
const MAX_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lease {
    address: String,
    #[serde(default)]
    weight: Option<u32>,
}

fn error(status: StatusCode, kind: &str, message: String) -> Response<Full<Bytes>> {
    json_response(status, json!({"error": kind, "message": message}))
}

/// `(namespace, name, id)` of `/backends/{ns}/{name}/endpoints/{id}`.
pub(super) fn parse_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/backends/")?;
    let mut parts = rest.split('/');
    let (ns, name, literal, id) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    (literal == "endpoints" && parts.next().is_none() && valid(ns) && valid(name) && valid(id))
        .then_some((ns, name, id))
}

/// Serves one registration request for the path parts `(ns, name, id)`.
pub(super) async fn serve(
    gw: &Gateway,
    method: &Method,
    (ns, name, id): (&str, &str, &str),
    body: Incoming,
) -> Response<Full<Bytes>> {
    let backend_id = format!("{ns}/{name}");
    let snap = gw.snapshot.load();
    let Some(backend) = snap.backends.iter().find(|b| *b.id == backend_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_backend",
            format!("no backend {backend_id}"),
        );
    };
    let Some(registry) = backend.state.registry.get() else {
        return error(
            StatusCode::CONFLICT,
            "not_registrable",
            format!("backend {backend_id} does not use `discovery: {{registration: ...}}`"),
        );
    };
    match *method {
        Method::DELETE => {
            if registry.deregister(id) {
                json_response(StatusCode::OK, json!({"ok": true, "id": id}))
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "unknown_endpoint",
                    format!("no lease `{id}` on backend {backend_id}"),
                )
            }
        }
        Method::PUT => {
            let bytes = match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "bad_body",
                        format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
                    )
                }
            };
            let lease: Lease = match serde_json::from_slice(&bytes) {
                Ok(l) => l,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_json",
                        format!("expected {{\"address\": \"IP:port\", \"weight\": N}}: {e}"),
                    )
                }
            };
            let Ok(address) = lease.address.parse::<SocketAddr>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_address",
                    format!("invalid address `{}`: expected IP:port", lease.address),
                );
            };
            if lease.weight == Some(0) || address.port() == 0 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_endpoint",
                    "the weight must be at least 1 and the port above 0".into(),
                );
            }
            let new = registry.register(id, address, lease.weight.unwrap_or(1));
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(
                status,
                json!({"ok": true, "id": id, "address": address.to_string(),
                       "ttl": gatehouse_config::units::DisplayDuration(registry.ttl()).to_string()}),
            )
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use PUT or DELETE".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_parsed_strictly() {
        assert_eq!(
            parse_path("/backends/default/tasks/endpoints/laptop-1"),
            Some(("default", "tasks", "laptop-1"))
        );
        assert_eq!(parse_path("/backends/default/tasks/endpoints/"), None);
        assert_eq!(parse_path("/backends/default/tasks/endpoints/a/b"), None);
        assert_eq!(parse_path("/backends/default/tasks/other/a"), None);
        assert_eq!(parse_path("/backends/default/tasks/endpoints/a%20b"), None);
    }
}
