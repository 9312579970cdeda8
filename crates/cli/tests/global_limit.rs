//! Global rate limits as operators run them: two `gatehouse` processes sharing one real Redis
//! admit N ± 2 % of a global limit of N under concurrent load on both, and every admitted request
//! reaches the upstream.

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{Client, Redis, Upstream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod common;
use common::{spawn, to_upstream, write_config, Running};

/// The Gateway's spec lines: two workers, the shared Redis at `{redis}`.
const GATEWAY: &str = r#"
  workers: 2
  accessLog: {enabled: false}
  redis: {url: "{redis}", timeout: 1s}
"#;

/// A global limit of `{n}` per hour, keyed by route.
const POLICY: &str = r#"
---
kind: Policy
metadata: {name: shared}
spec:
  rateLimit: {requests: {n}, per: 1h, key: {route: true}, scope: global}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_one_redis_admit_n_of_a_global_limit_of_n() {
    let redis = Redis::start();
    let up = Upstream::start("a").await;
    let n = 500;
    let dir = tempfile::tempdir().unwrap();
    // Route `/limited` to the upstream, under the limit.
    let rule = "      match: {path: {prefix: /limited}}\n      policies: [shared]";
    let documents = to_upstream(up.addr, rule) + &fill(POLICY, &[("n", &n.to_string())]);
    let spec = fill(GATEWAY, &[("redis", &redis.url)]);
    write_config(dir.path(), &spec, "127.0.0.1:0", &documents);
    let gateways: [Running; 2] = [spawn(dir.path()), spawn(dir.path())];
    let urls = gateways
        .each_ref()
        .map(|g| format!("http://{}/limited", g.web));
    let admitted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    // 16 concurrent clients, 8 on each process, about twice the limit in all.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let url = urls[i % 2].clone();
            let (admitted, refused) = (admitted.clone(), refused.clone());
            tokio::spawn(async move {
                let client = Client::new();
                for _ in 0..(2 * n / 16 + 1) {
                    match client.get(&url, &[]).await.unwrap().status.as_u16() {
                        200 => admitted.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        s => panic!("unexpected status {s}"),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    eprintln!("admitted {admitted}, refused {refused}");
    let tolerance = n / 50;
    assert!(
        (n - tolerance..=n + tolerance).contains(&admitted),
        "admitted {admitted} of a limit of {n}"
    );
    assert!(refused > 0, "the second half of the load must be refused");
    assert_eq!(up.requests(), admitted);
}
