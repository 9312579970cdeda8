//! Shared by the `upstreams_*` tests and others of the backend side: a named upstream that can be
//! bound to any loopback address (DNS answers name several 127.0.0.x with one port), the admin
//! API's backend view and calls, the Gateway and listener documents, and request helpers. Not
//! every test file uses every helper.
#![allow(dead_code)]

use bytes::Bytes;
use gatehouse_testkit::{Client, Reply, TestGateway};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// An upstream that answers every path with its name, and `/healthz` with `health` (a status).
pub struct Named {
    pub addr: SocketAddr,
    pub health: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Named {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Named {
    /// On a free port of 127.0.0.1.
    pub async fn start(name: &str) -> Named {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// On `addr` (port 0: a free one).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Named {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let health = Arc::new(AtomicU16::new(200));
        let (h, name) = (health.clone(), Bytes::from(name.to_string()));
        let task = tokio::spawn(async move {
            // Connection tasks live in the set: aborting the upstream closes them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, name) = (h.clone(), name.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let status = if req.uri().path() == "/healthz" {
                            h.load(Ordering::Relaxed)
                        } else {
                            200
                        };
                        let mut resp = http::Response::new(Full::new(name.clone()));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Named { addr, health, task }
    }
}

/// `GET` on the admin API, as JSON.
pub async fn admin(gw: &TestGateway, path: &str) -> serde_json::Value {
    Client::new()
        .get(&format!("http://{}{path}", gw.admin), &[])
        .await
        .expect("admin answers")
        .json()
}

/// `GET /backends` entry of backend `name` (`default/...`).
pub async fn backend(gw: &TestGateway, name: &str) -> serde_json::Value {
    let all = admin(gw, "/backends").await;
    all["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {name}: {all}"))
}

/// The endpoint addresses of backend `name`, sorted.
pub async fn addresses(gw: &TestGateway, name: &str) -> Vec<String> {
    let b = backend(gw, name).await;
    let mut v: Vec<String> = b["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// `"a:1", "b:2"` for a YAML flow list.
pub fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Status and body of `n` sequential requests on one client.
pub async fn bodies(client: &Client, url: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client.get(url, headers).await.expect("response");
        out.push(if r.status == 200 {
            r.text()
        } else {
            format!("{} {}", r.status.as_u16(), r.text())
        });
    }
    out
}

/// The value of metric line `name{labels}` in `/metrics` text, if present.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// `GATEWAY_AND_WEB` with the access log written as JSON lines to `log`.
pub fn logged_gateway(log: &std::path::Path) -> String {
    let quiet = "{accessLog: {enabled: false}}";
    let logged = format!(
        "{{accessLog: {{format: json, path: \"{}\"}}}}",
        log.display()
    );
    let yaml = gatehouse_testkit::gateway::GATEWAY_AND_WEB.replace(quiet, &logged);
    assert!(
        yaml.contains(&logged),
        "GATEWAY_AND_WEB no longer has {quiet}"
    );
    yaml
}

/// A call to the admin API (`path` from the root) with `body`.
pub async fn admin_call(gw: &TestGateway, method: http::Method, path: &str, body: &str) -> Reply {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.admin))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid admin request");
    Client::new().send(req).await.expect("admin answers")
}

/// `yaml` after the Gateway and listener documents every test here shares.
pub fn with_gateway(yaml: &str) -> String {
    gatehouse_testkit::gateway::GATEWAY_AND_WEB.to_string() + yaml
}
