//! Admin API, `GET /routes`: the compiled route table in lookup order, narrowed by
//! `?host=&path=` and paged by `?limit=&offset=`, with the total count of matching rows.

use super::json_response;
use crate::gateway::Gateway;
use crate::routing::RouteFilter;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

/// Reads the filter from a query string; an unknown parameter or a bad number is an error.
fn filter(query: Option<&str>) -> Result<RouteFilter, String> {
    let mut f = RouteFilter::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("`{k}` must be a whole number, not `{v}`"))
        };
        match &*k {
            "host" => f.host = Some(v.into_owned()),
            "path" => f.path = Some(v.into_owned()),
            "limit" => f.limit = Some(number(&v)?),
            "offset" => f.offset = number(&v)?,
            other => {
                return Err(format!(
                    "unknown parameter `{other}`: use host, path, limit, offset"
                ))
            }
        }
    }
    Ok(f)
}

/// Answers `GET /routes`.
pub(super) fn routes(gw: &Gateway, query: Option<&str>) -> Response<Full<Bytes>> {
    let f = match filter(query) {
        Ok(f) => f,
        Err(message) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request", "message": message}),
            )
        }
    };
    let snap = gw.snapshot.load();
    let page = snap.router.page(&f, crate::snapshot::describe_action);
    json_response(
        StatusCode::OK,
        json!({
            "version": snap.config.version,
            "total": page.total,
            "offset": page.offset,
            "routes": page.routes,
        }),
    )
}
