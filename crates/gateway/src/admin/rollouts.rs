//! Admin API, progressive delivery: `GET /rollouts` (each Rollout's state, canary weight, step,
//! next change, last analysis figures and why it failed) and
//! `POST /rollouts/{ns}/{name}/{promote|pause|resume|abort}`, an operator's say over one rollout.
//! Each replica answers for its own state: replicas share none.

use super::json_response;
use crate::gateway::Gateway;
use crate::state::rollout::Action;
use bytes::Bytes;
use gatehouse_config::ObjectId;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

/// Whether `path` is one of this module's.
pub(super) fn owns(path: &str) -> bool {
    path == "/rollouts" || path.starts_with("/rollouts/")
}

/// Answers a `/rollouts` request.
pub(super) fn serve(gw: &Gateway, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let error = |status, kind: &str, message: String| {
        json_response(status, json!({"error": kind, "message": message}))
    };
    if path == "/rollouts" {
        if method != Method::GET && method != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET".into(),
            );
        }
        let list: Vec<_> = gw
            .state
            .rollouts
            .list()
            .iter()
            .map(|r| r.describe())
            .collect();
        let version = gw.snapshot.load().config.version.clone();
        return json_response(
            StatusCode::OK,
            json!({"version": version, "rollouts": list}),
        );
    }
    let parts: Vec<&str> = path.trim_start_matches("/rollouts/").split('/').collect();
    let [ns, name, action] = parts[..] else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "expected /rollouts/{namespace}/{name}/{promote|pause|resume|abort}".into(),
        );
    };
    let Some(action) = Action::parse(action) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown action `{action}`: use promote, pause, resume or abort"),
        );
    };
    if method != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST".into(),
        );
    }
    let id = ObjectId {
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let Some(state) = gw.state.rollouts.get(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout `{id}`"),
        );
    };
    match state.act(action) {
        Ok(()) => json_response(StatusCode::OK, state.describe()),
        Err(message) => error(StatusCode::CONFLICT, "conflict", message),
    }
}
