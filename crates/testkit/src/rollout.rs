//! Test fixture (outside the request flow): the stable and canary backends, the route and the
//! Rollout that the rollout tests of the gateway and of the `gatehouse` binary share.

use crate::discovery::fill;
use std::net::SocketAddr;

/// After a Gateway and listener `web` (`---` first): the documents below, `{schedule}` being the
/// Rollout spec's own lines (`startTime`, `steps`, `analysis`), indented two spaces.
const DOCUMENTS: &str = r#"
---
kind: Backend
metadata: {name: tasks}
spec: {endpoints: ["{stable}"]}
---
kind: Backend
metadata: {name: tasks-canary}
spec: {endpoints: ["{canary}"]}
---
kind: Route
metadata: {name: tasks-v1}
spec:
  rules:
    - backends: [{backend: tasks}]
---
kind: Rollout
metadata: {name: tasks-canary}
spec:
  route: tasks-v1
  stable: tasks
  canary: tasks-canary
{schedule}
"#;

/// Backends `tasks` (at `stable`) and `tasks-canary` (at `canary`), route `tasks-v1` whose one
/// rule names only `tasks`, and Rollout `tasks-canary` of that route with `schedule` (its spec's
/// `startTime` / `steps` / `analysis` lines, indented two spaces). Starts with `---`: append it
/// to the Gateway and listener documents.
pub fn rollout_documents(stable: SocketAddr, canary: SocketAddr, schedule: &str) -> String {
    fill(
        DOCUMENTS,
        &[
            ("stable", &stable.to_string()),
            ("canary", &canary.to_string()),
            ("schedule", schedule.trim_matches('\n')),
        ],
    )
}
