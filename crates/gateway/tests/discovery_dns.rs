//! DNS discovery against a real dnsmasq: A records with the configured port, followed when they
//! change (dnsmasq reads its hosts file again on SIGHUP; answers have a TTL of one second); SRV
//! records give ports and weights.

use gatehouse_gateway::discovery;
use gatehouse_testkit::discovery::{discovery_of, fill, Call, Recorder};
use gatehouse_testkit::Dnsmasq;

const BY_NAME: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec:
  discovery:
    dns: {name: tasks.test, port: 8080, resolver: "{resolver}"}
"#;

const BY_SRV: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec:
  discovery:
    dns: {srv: _http._tcp.tasks.test, resolver: "{resolver}"}
"#;

#[tokio::test]
async fn a_records_are_followed_on_their_ttl() {
    let dns = Dnsmasq::start("127.0.0.11 tasks.test\n127.0.0.12 tasks.test\n", &[]);
    let yaml = fill(BY_NAME, &[("resolver", &dns.addr.to_string())]);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&discovery_of("b.yaml", &yaml), sink.clone()).unwrap();
    sink.wait_for_set(&["127.0.0.11:8080*1", "127.0.0.12:8080*1"])
        .await;

    dns.set_hosts("127.0.0.12 tasks.test\n127.0.0.13 tasks.test\n::1 tasks.test\n");
    // TTL 1s (clamped to minTtl 1s): the change shows within a few seconds, not maxTtl.
    let took = sink
        .wait_for_set(&["127.0.0.12:8080*1", "127.0.0.13:8080*1", "[::1]:8080*1"])
        .await;
    assert!(took.as_secs() < 5, "took {took:?}");
    // Unchanged answers between the two changes were not reported again.
    assert_eq!(sink.updates(), 2, "{:#?}", sink.calls());
}

#[tokio::test]
async fn a_vanished_name_keeps_the_last_set_and_is_reported_once() {
    let dns = Dnsmasq::start("127.0.0.11 tasks.test\n", &[]);
    let yaml = fill(BY_NAME, &[("resolver", &dns.addr.to_string())]);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&discovery_of("b.yaml", &yaml), sink.clone()).unwrap();
    sink.wait_for_set(&["127.0.0.11:8080*1"]).await;

    dns.set_hosts("127.0.0.99 other.test\n");
    sink.wait_for_failure("tasks.test").await;
    dns.set_hosts("127.0.0.11 tasks.test\n");
    sink.wait_for_set(&["127.0.0.11:8080*1"]).await;
    let failures = sink
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Failed(_)))
        .count();
    assert_eq!(failures, 1, "{:#?}", sink.calls());
}

#[tokio::test]
async fn srv_records_give_ports_and_weights() {
    let mut dns = Dnsmasq::start(
        "127.0.0.21 a.tasks.test\n127.0.0.22 b.tasks.test\n",
        &[
            "_http._tcp.tasks.test,a.tasks.test,8001,0,5",
            "_http._tcp.tasks.test,b.tasks.test,8002,0,0",
            // A backup (worse priority): not part of the set.
            "_http._tcp.tasks.test,b.tasks.test,9999,10,1",
        ],
    );
    let yaml = fill(BY_SRV, &[("resolver", &dns.addr.to_string())]);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&discovery_of("b.yaml", &yaml), sink.clone()).unwrap();
    // Weight 0 ("no preference") counts as 1.
    sink.wait_for_set(&["127.0.0.21:8001*5", "127.0.0.22:8002*1"])
        .await;

    // A target's address changes: followed (hosts file, SIGHUP).
    dns.set_hosts("127.0.0.23 a.tasks.test\n127.0.0.22 b.tasks.test\n");
    sink.wait_for_set(&["127.0.0.23:8001*5", "127.0.0.22:8002*1"])
        .await;

    // The SRV records change (dnsmasq reads them at start only: restarted on the same port).
    dns.restart_with_srv(&["_http._tcp.tasks.test,b.tasks.test,8003,0,7"]);
    sink.wait_for_set(&["127.0.0.22:8003*7"]).await;
}
