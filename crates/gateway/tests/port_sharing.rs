//! A listener address held by another process is an error, at start and at reload, even though
//! each worker binds its own SO_REUSEPORT socket: a second Gatehouse must not silently join the
//! socket group and take half the connections.

use gatehouse_testkit::gateway::one_route;
use gatehouse_testkit::{status, TestGateway, Upstream};

/// `one_route` with listener `web` on `addr`.
fn on(up: &Upstream, addr: &str) -> String {
    one_route(up.addr, "").replace("127.0.0.1:0", addr)
}

#[tokio::test]
async fn a_second_gateway_on_the_same_address_fails_to_start_naming_it() {
    let up = Upstream::start("a").await;
    let first = TestGateway::try_start_workers(&one_route(up.addr, ""), 2)
        .await
        .unwrap();
    let addr = first.addr("web").await;
    let err = TestGateway::try_start_workers(&on(&up, &addr.to_string()), 2)
        .await
        .err()
        .expect("the second gateway must not start");
    assert!(
        err.contains(&addr.to_string()) && err.contains("in use"),
        "{err}"
    );
    assert_eq!(status(&format!("http://{addr}/x")).await, 200);
}

#[tokio::test]
async fn a_reload_adding_a_listener_on_a_held_port_fails_and_the_old_config_serves() {
    let up = Upstream::start("a").await;
    let other = TestGateway::try_start_workers(&one_route(up.addr, ""), 2)
        .await
        .unwrap();
    let held = other.addr("web").await;
    let gw = TestGateway::try_start_workers(&one_route(up.addr, ""), 2)
        .await
        .unwrap();
    let web = gw.addr("web").await;
    let extra = format!(
        "\n---\nkind: Listener\nmetadata: {{name: extra}}\nspec: {{address: \"{held}\", protocol: HTTP}}\n"
    );
    gw.write(&format!("{}{extra}", one_route(up.addr, "")));
    let errors = gw
        .gw
        .reload("test")
        .await
        .expect_err("the reload must fail");
    assert!(
        errors.iter().any(|e| e.contains(&held.to_string())),
        "{errors:?}"
    );
    assert!(!gw.gw.status().ok);
    assert_eq!(gw.addr("web").await, web);
    assert_eq!(status(&format!("http://{web}/x")).await, 200);
    assert!(!gw.gw.listener_addrs().await.contains_key("default/extra"));
}
