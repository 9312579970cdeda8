//! Run-time state outlives reloads: a reload that touches only routes keeps every backend's state
//! (endpoint set, per-endpoint state, balancer position); a reload that changes a backend's
//! endpoints keeps the per-endpoint state of the addresses that stay; endpoints are per backend.

use gatehouse_testkit::TestGateway;
use std::sync::Arc;

fn config(endpoints_a: &str, header: &str) -> String {
    gatehouse_testkit::gateway::GATEWAY_AND_WEB.to_string()
        + &r#"
---
kind: Backend
metadata: {name: a}
spec: {endpoints: [ENDPOINTS_A]}
---
kind: Backend
metadata: {name: b}
spec: {endpoints: ["127.0.0.1:9"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /a}}
      backends: [{backend: a}]
      responseHeaders: {set: {x-version: "HEADER"}}
    - backends: [{backend: b}]
"#
        .replace("ENDPOINTS_A", endpoints_a)
        .replace("HEADER", header)
}

fn backend(gw: &TestGateway, name: &str) -> Arc<gatehouse_gateway::upstream::BackendRt> {
    let snap = gw.gw.snapshot.load();
    snap.backends
        .iter()
        .find(|b| &*b.id == name)
        .cloned()
        .unwrap_or_else(|| panic!("backend {name}"))
}

#[tokio::test]
async fn a_reload_that_touches_only_routes_keeps_backend_state() {
    let gw = TestGateway::start(&config(r#""127.0.0.1:9""#, "1")).await;
    let before = backend(&gw, "default/a");
    let ep_before = before.state.current().endpoints[0].shared.clone();
    ep_before
        .in_flight
        .fetch_add(7, std::sync::atomic::Ordering::Relaxed);

    gw.write(&config(r#""127.0.0.1:9""#, "2"));
    gw.gw.reload("test").await.expect("reload");

    let after = backend(&gw, "default/a");
    // Diff-based reload: a backend whose definition is unchanged keeps its compiled view too.
    assert!(
        Arc::ptr_eq(&before, &after),
        "the unchanged backend's view is kept"
    );
    assert!(
        Arc::ptr_eq(&before.state, &after.state),
        "the backend's run-time state is the same object"
    );
    let ep_after = after.state.current().endpoints[0].shared.clone();
    assert!(Arc::ptr_eq(&ep_before, &ep_after));
    assert_eq!(
        ep_after
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed),
        7
    );
}

#[tokio::test]
async fn changed_endpoints_keep_the_state_of_addresses_that_stay() {
    let gw = TestGateway::start(&config(r#""127.0.0.1:9""#, "1")).await;
    let before = backend(&gw, "default/a");
    let kept = before.state.current().endpoints[0].shared.clone();

    gw.write(&config(r#""127.0.0.1:9", "127.0.0.1:10""#, "1"));
    gw.gw.reload("test").await.expect("reload");

    let after = backend(&gw, "default/a");
    assert!(
        !Arc::ptr_eq(&before.state, &after.state),
        "the source changed"
    );
    let set = after.state.current();
    assert_eq!(set.endpoints.len(), 2);
    let same = set
        .endpoints
        .iter()
        .find(|e| &*e.address == "127.0.0.1:9")
        .expect("kept address");
    assert!(Arc::ptr_eq(&kept, &same.shared));
}

#[tokio::test]
async fn the_same_address_in_two_backends_is_two_endpoints() {
    let gw = TestGateway::start(&config(r#""127.0.0.1:9""#, "1")).await;
    let a = backend(&gw, "default/a").state.current().endpoints[0].clone();
    let b = backend(&gw, "default/b").state.current().endpoints[0].clone();
    assert_eq!(a.address, b.address);
    assert!(!Arc::ptr_eq(&a.shared, &b.shared));
    assert_ne!(a.shared.pool_key, b.shared.pool_key);
}

#[tokio::test]
async fn a_static_host_name_stands_for_the_addresses_it_resolves_to() {
    let up = gatehouse_testkit::Upstream::start("up").await;
    let name = format!("\"localhost:{}\"", up.addr.port());
    let gw = TestGateway::start(&config(&name, "1")).await;
    let want = format!("127.0.0.1:{}", up.addr.port());
    gatehouse_testkit::wait_for("the name resolved into the set", || async {
        backend(&gw, "default/a")
            .state
            .current()
            .endpoints
            .iter()
            .any(|e| *e.address == want)
    })
    .await;
    let set = backend(&gw, "default/a").state.current();
    assert!(set
        .endpoints
        .iter()
        .all(|e| !e.address.starts_with("localhost")));
    let r = gatehouse_testkit::Client::new()
        .get(&format!("{}/a", gw.url("web").await), &[])
        .await
        .expect("response");
    assert_eq!(r.status, 200);
}
