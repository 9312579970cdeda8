//! The gRPC health protocol against a real peer: Python `grpcio` with the standard health servicer
//! (`grpcio-health-checking`), independent of Gatehouse's own code. The server part of the
//! process reports SERVING for the whole server and NOT_SERVING for the service `tasks`.

use gatehouse_testkit::{wait_for, Client, PythonPeer, TestGateway};

const SERVER: &str = r#"
import sys, grpc
from concurrent import futures
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
servicer = health.HealthServicer()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
servicer.set("tasks", health_pb2.HealthCheckResponse.NOT_SERVING)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"#;

#[tokio::test]
async fn grpc_health_checks_follow_the_serving_status() {
    let peer = PythonPeer::start(SERVER);
    let yaml = gatehouse_testkit::gateway::GATEWAY_AND_WEB.to_string()
        + &r#"
---
kind: Backend
metadata: {name: server}
spec:
  protocol: GRPC
  endpoints: ["127.0.0.1:PORT"]
  healthCheck: {grpc: {service: ""}, interval: 500ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 1}
---
kind: Backend
metadata: {name: tasks}
spec:
  protocol: GRPC
  endpoints: ["127.0.0.1:PORT"]
  healthCheck: {grpc: {service: tasks}, interval: 500ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 1}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - backends: [{backend: server}]
"#
    .replace("PORT", &peer.port.to_string());
    let gw = TestGateway::start(&yaml).await;
    let health = || async {
        let v = Client::new()
            .get(&format!("http://{}/backends", gw.admin), &[])
            .await
            .expect("admin answers")
            .json();
        let of = |name: &str| {
            v["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == name)
                .map(|b| {
                    b["endpoints"][0]["health"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .unwrap_or_default()
        };
        (of("default/server"), of("default/tasks"))
    };
    wait_for("SERVING healthy, NOT_SERVING unhealthy", || async {
        health().await == ("healthy".into(), "unhealthy".into())
    })
    .await;
}
