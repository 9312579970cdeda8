//! Fault injection over real sockets: a rule's `fault` aborts its share of requests with the
//! configured status and a JSON `fault_injected` error, only for requests carrying `whenHeader`
//! when one is named, and delays requests before forwarding them. The shares' accuracy over
//! 10,000 draws is checked with a seeded generator in `policy::fault`'s unit tests.

use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::{Client, TestGateway, Upstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn config(upstream: SocketAddr) -> String {
    let yaml = r#"
---
kind: Backend
metadata: {name: up}
spec: {endpoints: ["UPSTREAM"]}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /abort}}
      backends: [{backend: up}]
      fault: {abort: {status: 418, percent: 20%}, whenHeader: x-fault}
    - match: {path: {prefix: /delay}}
      backends: [{backend: up}]
      fault: {delay: {duration: 300ms, percent: 100%}}
"#;
    format!(
        "{GATEWAY_AND_WEB}{}",
        yaml.replace("UPSTREAM", &upstream.to_string())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborts_a_share_of_requests_that_carry_the_header_and_no_others() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let url = format!("{}/abort", gw.url("web").await);
    let client = Client::new();
    let total = 2000;
    let mut aborted = 0;
    for _ in 0..total {
        let r = client.get(&url, &[("x-fault", "1")]).await.unwrap();
        match r.status.as_u16() {
            418 => {
                assert_eq!(r.json()["error"], "fault_injected");
                aborted += 1;
            }
            200 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    // 20% of 2000 is 400, with a standard deviation of 18: ±80 is over four of them.
    assert!(
        (320..=480).contains(&aborted),
        "{aborted} of {total} aborted"
    );
    assert_eq!(
        up.requests(),
        total - aborted,
        "aborted requests are not forwarded"
    );
    for _ in 0..200 {
        let r = client.get(&url, &[]).await.unwrap();
        assert_eq!(r.status, 200, "no header, no fault");
    }
}

#[tokio::test]
async fn delays_requests_before_forwarding_them() {
    let up = Upstream::start("a").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let url = format!("{}/delay", gw.url("web").await);
    let client = Client::new();
    for _ in 0..3 {
        let started = Instant::now();
        let r = client.get(&url, &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(up.requests(), 3);
}
