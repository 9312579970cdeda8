//! etcd discovery against a real etcd: a registered instance is reported within a second, a
//! deleted one disappears, bad values are skipped and reported, and the provider survives an
//! etcd restart (it lists and watches again).

use etcd_client::Client;
use gatehouse_gateway::discovery;
use gatehouse_testkit::discovery::{discovery_of, fill, Recorder};
use gatehouse_testkit::Etcd;
use std::time::Duration;

const BACKEND: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec:
  discovery:
    etcd: {endpoints: ["{url}"], prefix: /services/tasks/}
"#;

async fn client(etcd: &Etcd) -> Client {
    Client::connect([etcd.url.as_str()], None)
        .await
        .expect("connect to etcd")
}

#[tokio::test]
async fn instances_come_and_go_with_their_keys() {
    let etcd = Etcd::start();
    let mut kv = client(&etcd).await;
    kv.put(
        "/services/tasks/a",
        r#"{"address": "127.0.0.1:9001"}"#,
        None,
    )
    .await
    .unwrap();
    // Outside the prefix: ignored.
    kv.put(
        "/services/other/x",
        r#"{"address": "127.0.0.1:9999"}"#,
        None,
    )
    .await
    .unwrap();
    let yaml = fill(BACKEND, &[("url", &etcd.url)]);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&discovery_of("b.yaml", &yaml), sink.clone()).unwrap();
    sink.wait_for_set(&["127.0.0.1:9001*1"]).await;

    kv.put(
        "/services/tasks/b",
        r#"{"address": "127.0.0.1:9002", "weight": 3}"#,
        None,
    )
    .await
    .unwrap();
    let took = sink
        .wait_for_set(&["127.0.0.1:9001*1", "127.0.0.1:9002*3"])
        .await;
    // A watch, not a poll: seconds of margin for a loaded machine (typically milliseconds).
    assert!(took < Duration::from_secs(3), "registered after {took:?}");

    kv.delete("/services/tasks/a", None).await.unwrap();
    sink.wait_for_set(&["127.0.0.1:9002*3"]).await;

    kv.put("/services/tasks/c", "not json", None).await.unwrap();
    let error = sink.wait_for_failure("/services/tasks/c").await;
    assert!(error.contains("skipped"), "{error}");
    kv.delete("/services/tasks/c", None).await.unwrap();
    sink.wait_for_set(&["127.0.0.1:9002*3"]).await;
}

#[tokio::test]
async fn an_etcd_restart_is_survived() {
    let mut etcd = Etcd::start();
    let mut kv = client(&etcd).await;
    kv.put(
        "/services/tasks/a",
        r#"{"address": "127.0.0.1:9001"}"#,
        None,
    )
    .await
    .unwrap();
    let yaml = fill(BACKEND, &[("url", &etcd.url)]);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&discovery_of("b.yaml", &yaml), sink.clone()).unwrap();
    sink.wait_for_set(&["127.0.0.1:9001*1"]).await;

    etcd.stop();
    sink.wait_for_failure("etcd").await;
    etcd.restart();
    let mut kv = client(&etcd).await;
    kv.put(
        "/services/tasks/b",
        r#"{"address": "127.0.0.1:9002"}"#,
        None,
    )
    .await
    .unwrap();
    kv.delete("/services/tasks/a", None).await.unwrap();
    sink.wait_for_set(&["127.0.0.1:9002*1"]).await;
}
