//! Test harness (outside the request flow): real upstreams bound to port 0, an in-process gateway
//! started from YAML, a real nginx, and small HTTP client helpers. Used by the integration tests.

pub mod client;
pub mod discovery;
pub mod dnsmasq;
pub mod etcd;
pub mod gateway;
pub mod nginx;
pub mod python;
pub mod redis;
pub mod reuse;
pub mod rollout;
pub mod scripted;
pub mod upstream;

pub use client::{fnv64, Client, Reply};
pub use dnsmasq::Dnsmasq;
pub use etcd::Etcd;
pub use gateway::TestGateway;
pub use nginx::Nginx;
pub use python::PythonPeer;
pub use redis::Redis;
pub use upstream::Upstream;

/// Waits until `cond` holds, re-checking every few milliseconds; panics naming `what` after 20
/// seconds. For conditions that another task or process makes true (readiness, a counter).
/// A pause between checks rather than a bare yield: a spinning waiter took a whole core (and
/// hammered the admin API it polls) from the gateway under test on a loaded 2-core CI machine.
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let check = async {
        while !cond().await {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(20), check)
        .await
        .is_err()
    {
        panic!("timed out waiting for: {what}");
    }
}

/// Whether nothing accepts connections on `addr` any more.
pub async fn refuses(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

/// The status of a plain GET to `url` on a fresh connection.
pub async fn status(url: &str) -> http::StatusCode {
    Client::new()
        .get(url, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .status
}
