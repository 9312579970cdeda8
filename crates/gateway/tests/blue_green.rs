//! Blue/green (release by routing): one reload flips a route from the blue backend to the green
//! one; requests already in flight to blue (waiting for its answer, or streaming its body) finish
//! normally, and every request after the reload goes to green.

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::{wait_for, Client, TestGateway, Upstream};

const ROUTE: &str = r#"
---
kind: Backend
metadata: {name: blue}
spec: {endpoints: ["{blue}"]}
---
kind: Backend
metadata: {name: green}
spec: {endpoints: ["{green}"]}
---
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - backends: [{backend: {live}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reload_flips_blue_to_green_and_in_flight_requests_to_blue_finish() {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let (b, g) = (blue.addr.to_string(), green.addr.to_string());
    let config = |live| {
        GATEWAY_AND_WEB.to_string() + &fill(ROUTE, &[("blue", &b), ("green", &g), ("live", live)])
    };
    let gw = TestGateway::start(&config("blue")).await;
    let web = gw.url("web").await;
    let client = Client::new();
    let server =
        |r: &gatehouse_testkit::Reply| r.json()["server"].as_str().unwrap_or("").to_string();
    assert_eq!(
        server(&client.get(&format!("{web}/x"), &[]).await.unwrap()),
        "blue"
    );

    // Two requests in flight to blue: one whose answer is 1.5 s away, one streaming its body
    // (head sent, the rest held until the test releases it).
    let served_before = blue.requests();
    let slow = tokio::spawn({
        let url = format!("{web}/slow/1500");
        async move { Client::new().get(&url, &[]).await }
    });
    let gate = tokio::spawn({
        let url = format!("{web}/gate");
        async move { Client::new().get(&url, &[]).await }
    });
    wait_for("both requests reached blue", || async {
        blue.requests() >= served_before + 2
    })
    .await;

    gw.write(&config("green"));
    gw.gw.reload("flip").await.expect("valid reload");
    for _ in 0..20 {
        let r = client.get(&format!("{web}/x"), &[]).await.unwrap();
        assert_eq!(server(&r), "green", "a request after the flip");
    }
    assert!(!gate.is_finished(), "the held response is still in flight");
    blue.release();

    let slow = slow.await.unwrap().expect("the slow request finished");
    assert_eq!(slow.status, 200);
    assert_eq!(slow.text(), "slept 1500ms\n");
    let gate = gate.await.unwrap().expect("the streaming request finished");
    assert_eq!(gate.status, 200);
    assert_eq!(gate.text(), "first\nrest\n", "the held body arrived whole");
    // Green served the 20 requests after the flip and nothing else: the in-flight two were blue's.
    assert_eq!(green.requests(), 20);
}
