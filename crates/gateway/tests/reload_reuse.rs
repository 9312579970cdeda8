//! Diff-based reloads of rules whose compiled form depends on more than the rule: rules that
//! validate requests against an OpenAPI document and rules a Rollout drives. A reload keeps
//! them while the document and the Rollout are unchanged (counted by comparing the snapshots'
//! compiled entries), rebuilds exactly the rules of a changed one, and over real sockets a kept
//! rule goes on enforcing its document and following its rollout's live state.

use gatehouse_config::{load_sources, SourceFile};
use gatehouse_gateway::snapshot::Snapshot;
use gatehouse_gateway::state::StateStore;
use gatehouse_gateway::telemetry::metrics::Metrics;
use gatehouse_testkit::gateway::{with_api_version, GATEWAY_AND_WEB};
use gatehouse_testkit::reuse::rebuilt_routes;
use gatehouse_testkit::rollout::rollout_documents;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A snapshot of `yaml` (a manifest in `dir`, whose relative `openapi.file`s resolve there),
/// built over `store` from `prev`, and its state plan put in force.
fn snapshot(dir: &Path, yaml: &str, prev: Option<&Snapshot>, store: &StateStore) -> Snapshot {
    let source = SourceFile {
        name: dir.join("gatehouse.yaml").display().to_string(),
        text: with_api_version(yaml),
    };
    let config = load_sources(&[source]).unwrap_or_else(|e| panic!("{e}"));
    let metrics = Metrics::new();
    let config = Arc::new(config);
    let plan = store.plan(&config, &metrics);
    let snap = Snapshot::build_from(config, &metrics, &plan, prev).unwrap();
    store.commit(&plan);
    snap
}

/// `default/{prefix}{i}` for each `i`, sorted as `rebuilt_routes` sorts.
fn names(prefix: &str, range: impl Iterator<Item = usize>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("default/{prefix}{i}")).collect();
    v.sort();
    v
}

/// An API whose `limit` query parameter is `$ref`erenced from its components, at most `max`.
fn items_api(max: u32) -> String {
    format!(
        r##"openapi: 3.1.0
info: {{title: Items, version: "1"}}
paths:
  /items:
    get:
      parameters:
        - {{name: limit, in: query, required: true, schema: {{$ref: "#/components/schemas/Limit"}}}}
      responses: {{"200": {{description: ok}}}}
components:
  schemas:
    Limit: {{type: integer, minimum: 1, maximum: {max}}}
"##
    )
}

/// Backend `b` at `upstream`; `routes` Routes `r{i}` described by the Route-level `api.yaml`
/// (validating), and `others` Routes `s{i}` whose rule validates against its own `other.yaml`.
/// Each rule serves the documents' `/items` under its own prefix.
fn validating_routes(upstream: &str, routes: usize, others: usize) -> String {
    let mut yaml =
        format!("kind: Backend\nmetadata: {{name: b}}\nspec: {{endpoints: [\"{upstream}\"]}}\n");
    for i in 0..routes {
        yaml.push_str(&format!(
            r#"---
kind: Route
metadata: {{name: r{i}}}
spec:
  openapi: {{file: api.yaml, validateRequests: true}}
  rules:
    - match: {{path: {{prefix: /svc{i}}}}}
      rewrite: {{pathPrefix: /}}
      backends: [{{backend: b}}]
"#
        ));
    }
    for i in 0..others {
        yaml.push_str(&format!(
            r#"---
kind: Route
metadata: {{name: s{i}}}
spec:
  rules:
    - match: {{path: {{prefix: /other{i}}}}}
      rewrite: {{pathPrefix: /}}
      backends: [{{backend: b}}]
      openapi: {{file: other.yaml, validateRequests: true}}
"#
        ));
    }
    yaml
}

#[test]
fn a_reload_keeps_validating_rules_whose_document_is_unchanged_and_rebuilds_its_users_when_it_changes(
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.yaml"), items_api(100)).unwrap();
    std::fs::write(dir.path().join("other.yaml"), items_api(100)).unwrap();
    let before = validating_routes("127.0.0.1:1", 1_000, 10);
    let store = StateStore::default();
    let old = snapshot(dir.path(), &before, None, &store);

    // One route of 1,010 changed: that one is compiled again.
    let after = before.replace("{prefix: /svc500}", "{prefix: /svc500b}");
    assert_ne!(before, after);
    let new = snapshot(dir.path(), &after, Some(&old), &store);
    assert_eq!(
        rebuilt_routes(&old, &new),
        (vec!["default/r500".to_string()], 1_009)
    );

    // The Route-level document's referenced schema changed: every rule it describes, and no
    // other.
    std::fs::write(dir.path().join("api.yaml"), items_api(10)).unwrap();
    let newer = snapshot(dir.path(), &after, Some(&new), &store);
    assert_eq!(rebuilt_routes(&new, &newer), (names("r", 0..1_000), 10));

    // A rule-level document changed: exactly the rules that name it.
    std::fs::write(dir.path().join("other.yaml"), items_api(50)).unwrap();
    let newest = snapshot(dir.path(), &after, Some(&newer), &store);
    assert_eq!(rebuilt_routes(&newer, &newest), (names("s", 0..10), 1_000));

    // The same files again: nothing to compile.
    let same = snapshot(dir.path(), &after, Some(&newest), &store);
    assert_eq!(rebuilt_routes(&newest, &same), (Vec::new(), 1_010));

    // Validation switched off on a Route: its rule is compiled again (without the step).
    let off = after.replacen(
        "openapi: {file: api.yaml, validateRequests: true}",
        "openapi: {file: api.yaml}",
        1,
    );
    let unvalidated = snapshot(dir.path(), &off, Some(&same), &store);
    assert_eq!(
        rebuilt_routes(&same, &unvalidated),
        (vec!["default/r0".to_string()], 1_009)
    );
}

#[tokio::test]
async fn kept_rules_go_on_validating_and_an_edited_document_is_enforced_after_a_reload() {
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.yaml"), items_api(100)).unwrap();
    std::fs::write(dir.path().join("other.yaml"), items_api(100)).unwrap();
    let before = format!(
        "{GATEWAY_AND_WEB}---\n{}",
        validating_routes(&up.addr.to_string(), 50, 2)
    );
    let gw = TestGateway::start_in(dir, &before).await;
    let (url, c) = (gw.url("web").await, Client::new());
    let status = |path: &'static str| {
        let (c, url) = (&c, &url);
        async move { c.get(&format!("{url}{path}"), &[]).await.unwrap().status }
    };
    assert_eq!(status("/svc7/items?limit=50").await, 200);
    assert_eq!(status("/svc7/items?limit=500").await, 400);

    // Another route changed: route r7's rule is kept, and still validates.
    gw.write(&before.replace("{prefix: /svc3}", "{prefix: /svc3b}"));
    gw.gw.reload("test").await.unwrap();
    assert_eq!(status("/svc3b/items?limit=500").await, 400);
    assert_eq!(status("/svc7/items?limit=500").await, 400);
    assert_eq!(status("/svc7/items?limit=50").await, 200);

    // The document's maximum lowered: a request valid before is refused now, on every route it
    // describes; the routes of the other document still take it.
    std::fs::write(gw.dir.path().join("api.yaml"), items_api(10)).unwrap();
    gw.gw.reload("test").await.unwrap();
    assert_eq!(status("/svc7/items?limit=50").await, 400);
    assert_eq!(status("/svc3b/items?limit=50").await, 400);
    assert_eq!(status("/svc7/items?limit=5").await, 200);
    assert_eq!(status("/other1/items?limit=50").await, 200);
    let r = c
        .get(&format!("{url}/svc7/items?limit=50"), &[])
        .await
        .unwrap();
    assert_eq!(r.json()["error"], "invalid_request", "{}", r.text());
}

/// RFC 3339 with milliseconds, a second ago: a schedule already at its first step.
fn a_second_ago() -> String {
    humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(1)).to_string()
}

/// Backends `stable` and `canary`; Routes `r{i}` forwarding to `stable`, the first `driven` of
/// them driven by Rollouts `ro{i}` at 30 % for an hour.
fn rollout_routes(routes: usize, driven: usize) -> String {
    let mut yaml = String::from(
        "kind: Backend\nmetadata: {name: stable}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n---\nkind: Backend\nmetadata: {name: canary}\nspec: {endpoints: [\"127.0.0.1:2\"]}\n",
    );
    for i in 0..routes {
        yaml.push_str(&format!(
            "---\nkind: Route\nmetadata: {{name: r{i}}}\nspec:\n  rules:\n    - match: {{path: {{prefix: /svc{i}}}}}\n      backends: [{{backend: stable}}]\n"
        ));
    }
    let start = a_second_ago();
    for i in 0..driven {
        yaml.push_str(&format!(
            r#"---
kind: Rollout
metadata: {{name: ro{i}}}
spec:
  route: r{i}
  stable: stable
  canary: canary
  startTime: "{start}"
  steps: [{{weight: 30, pause: 1h}}, {{weight: 100}}]
"#
        ));
    }
    yaml
}

#[test]
fn a_reload_keeps_rules_rollouts_drive_while_their_rollouts_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let before = rollout_routes(300, 100);
    let store = StateStore::default();
    let old = snapshot(dir.path(), &before, None, &store);

    // An unrelated route changed: none of the 100 driven rules is compiled again.
    let after = before.replace("{prefix: /svc250}", "{prefix: /svc250b}");
    assert_ne!(before, after);
    let new = snapshot(dir.path(), &after, Some(&old), &store);
    assert_eq!(
        rebuilt_routes(&old, &new),
        (vec!["default/r250".to_string()], 299)
    );

    // One Rollout's spec changed: the rule it drives, and no other.
    let changed = after.replacen(
        "route: r7\n  stable: stable\n  canary: canary\n",
        "route: r7\n  stable: stable\n  canary: canary\n  analysis: {interval: 30s}\n",
        1,
    );
    assert_ne!(changed, after);
    let newer = snapshot(dir.path(), &changed, Some(&new), &store);
    assert_eq!(
        rebuilt_routes(&new, &newer),
        (vec!["default/r7".to_string()], 299)
    );

    // A Rollout removed: the rule it drove is compiled again (forwarding to `stable` alone).
    let start = changed
        .find("---\nkind: Rollout\nmetadata: {name: ro8}")
        .unwrap();
    let end = start + 4 + changed[start + 4..].find("---\n").unwrap();
    let removed = format!("{}{}", &changed[..start], &changed[end..]);
    let newest = snapshot(dir.path(), &removed, Some(&newer), &store);
    assert_eq!(
        rebuilt_routes(&newer, &newest),
        (vec!["default/r8".to_string()], 299)
    );
    let r8 = (newest.router.entries())
        .find(|e| &*e.route == "default/r8")
        .unwrap();
    assert_eq!(r8.target.choices.len(), 1);
    assert!(Arc::ptr_eq(
        &r8.target.choices[0].backend,
        &newest.backends[1]
    ));
}

/// The one rollout of the admin API.
async fn rollout(c: &Client, admin: std::net::SocketAddr) -> serde_json::Value {
    let r = c
        .get(&format!("http://{admin}/rollouts"), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["rollouts"][0].clone()
}

#[tokio::test]
async fn a_rollout_in_progress_keeps_its_step_and_split_across_a_reload_of_another_route() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let schedule = format!(
        "  startTime: \"{}\"\n  steps: [{{weight: 30, pause: 1h}}, {{weight: 100}}]",
        a_second_ago()
    );
    let other = |prefix: &str| {
        format!(
            "\n---\nkind: Route\nmetadata: {{name: other}}\nspec:\n  rules:\n    - match: {{path: {{prefix: {prefix}}}}}\n      backends: [{{backend: tasks}}]\n"
        )
    };
    let rollout_docs = rollout_documents(stable.addr, canary.addr, &schedule);
    let before = format!("{GATEWAY_AND_WEB}{rollout_docs}{}", other("/other"));
    let gw = TestGateway::start(&before).await;
    let (url, c) = (gw.url("web").await, Client::new());
    let r = rollout(&c, gw.admin).await;
    assert_eq!(
        (
            r["state"].as_str(),
            r["step"].as_u64(),
            r["canaryWeight"].as_f64()
        ),
        (Some("Progressing"), Some(0), Some(30.0)),
        "{r}"
    );

    gw.write(&format!(
        "{GATEWAY_AND_WEB}{rollout_docs}{}",
        other("/other2")
    ));
    gw.gw.reload("test").await.unwrap();
    assert_eq!(
        c.get(&format!("{url}/other2"), &[]).await.unwrap().status,
        200
    );
    let r = rollout(&c, gw.admin).await;
    assert_eq!(
        (
            r["state"].as_str(),
            r["step"].as_u64(),
            r["canaryWeight"].as_f64()
        ),
        (Some("Progressing"), Some(0), Some(30.0)),
        "{r}"
    );
    // Still split about 30/70 (300 requests: 90 expected on the canary; the bounds are more
    // than six standard deviations away).
    let mut on_canary = 0;
    for _ in 0..300 {
        let r = c.get(&url, &[]).await.unwrap();
        assert_eq!(r.status, 200);
        on_canary += usize::from(r.json()["server"] == "canary");
    }
    assert!((40..=140).contains(&on_canary), "{on_canary} of 300");

    // The kept rule follows the live rollout: aborted, every request goes to stable.
    let base = format!("http://{}/rollouts/default/tasks-canary", gw.admin);
    let abort = http::Request::post(format!("{base}/abort"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(c.send(abort).await.unwrap().status, 200);
    wait_for("stable takes all traffic", || async {
        c.get(&url, &[]).await.unwrap().json()["server"] == "stable"
    })
    .await;
    for _ in 0..30 {
        let r = c.get(&url, &[]).await.unwrap();
        assert_eq!(r.json()["server"], "stable");
    }
}
