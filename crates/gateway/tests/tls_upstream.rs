//! TLS to backends (`Backend.tls`) with nginx as the upstream, its certificate from a private CA
//! and `ssl_verify_client on`: the CA bundle, the server name, the gateway's client certificate
//! (mTLS), ALPN h2 for HTTP/2 backends, pooled TLS connections, TLS health checks, and the 502
//! `upstream_tls` a wrong CA or a wrong name gets.

mod tls_common;

use bytes::Bytes;
use gatehouse_testkit::gateway::GATEWAY_AND_WEB;
use gatehouse_testkit::nginx::Nginx;
use gatehouse_testkit::{Client, TestGateway};
use tls_common::{eventually, Ca};

// After `GATEWAY_AND_WEB` (testkit): listener `web` on a free port, access log off.
const CONFIG: &str = r#"
---
kind: Backend
metadata: {name: h1}
spec:
  endpoints: ["NGINX"]
  tls: {caFile: ca.pem, serverName: upstream.test, certFile: gw.pem, keyFile: gw-key.pem}
  healthCheck: {http: {path: /health}, interval: 500ms, timeout: 500ms, healthyThreshold: 1}
---
kind: Backend
metadata: {name: h2}
spec:
  protocol: HTTP2
  endpoints: ["NGINX"]
  tls: {caFile: ca.pem, serverName: upstream.test, certFile: gw.pem, keyFile: gw-key.pem}
---
kind: Backend
metadata: {name: anonymous}
spec:
  endpoints: ["NGINX"]
  tls: {caFile: ca.pem, serverName: upstream.test}
---
kind: Backend
metadata: {name: wrong-ca}
spec:
  endpoints: ["NGINX"]
  tls: {caFile: other-ca.pem, serverName: upstream.test, certFile: gw.pem, keyFile: gw-key.pem}
---
kind: Backend
metadata: {name: wrong-name}
spec:
  endpoints: ["NGINX"]
  tls: {caFile: ca.pem, serverName: other.test, certFile: gw.pem, keyFile: gw-key.pem}
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - {match: {path: {prefix: /h1}}, backends: [{backend: h1}]}
    - {match: {path: {prefix: /h2}}, backends: [{backend: h2}]}
    - {match: {path: {prefix: /anonymous}}, backends: [{backend: anonymous}]}
    - {match: {path: {prefix: /wrong-ca}}, backends: [{backend: wrong-ca}]}
    - {match: {path: {prefix: /wrong-name}}, backends: [{backend: wrong-name}]}
"#;

struct Setup {
    gw: TestGateway,
    _nginx: Nginx,
    url: String,
}

/// nginx on TLS (h2 and http/1.1 by ALPN) with a certificate for `upstream.test` from `ca.pem`,
/// requiring client certificates from the gateway's CA; the gateway holds `gw.pem` from it.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let upstream_ca = Ca::new("Upstream CA");
    std::fs::write(d.join("ca.pem"), &upstream_ca.pem).unwrap();
    std::fs::write(d.join("other-ca.pem"), Ca::new("Other CA").pem).unwrap();
    upstream_ca.server(&["upstream.test"]).write(d, "nginx");
    let gateway_ca = Ca::new("Gateway CA");
    std::fs::write(d.join("gateway-ca.pem"), &gateway_ca.pem).unwrap();
    gateway_ca.client("gatehouse").write(d, "gw");
    let p = d.display();
    let nginx = Nginx::start_listening(
        "ssl http2",
        &format!(
            r#"
    # nginx 1.22's default leaves TLS 1.3 out.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {p}/nginx.pem;
    ssl_certificate_key {p}/nginx-key.pem;
    ssl_client_certificate {p}/gateway-ca.pem;
    ssl_verify_client on;
    client_max_body_size 16m;
    location / {{
        return 200 "$server_protocol $ssl_protocol reqs=$connection_requests client=$ssl_client_s_dn\n";
    }}
"#
        ),
    );
    let yaml = GATEWAY_AND_WEB.to_string() + &CONFIG.replace("NGINX", &nginx.addr.to_string());
    let gw = TestGateway::start_in(dir, &yaml).await;
    let url = gw.url("web").await;
    Setup {
        gw,
        _nginx: nginx,
        url,
    }
}

// One thread: upstream pools are per thread, and the reuse below is asserted.
#[tokio::test]
async fn requests_reach_nginx_over_mtls_with_a_private_ca_and_reuse_the_connection() {
    let s = setup().await;
    let c = Client::new();
    let first = c.get(&format!("{}/h1/a", s.url), &[]).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let text = first.text();
    assert!(text.starts_with("HTTP/1.1 TLSv1.3 reqs=1 "), "{text}");
    assert!(
        text.contains("client=CN=gatehouse,O=Gatehouse Tests"),
        "nginx verified the gateway's certificate: {text}"
    );
    let second = c.get(&format!("{}/h1/b", s.url), &[]).await.unwrap();
    assert!(
        second.text().starts_with("HTTP/1.1 TLSv1.3 reqs=2 "),
        "the pooled TLS connection is reused: {}",
        second.text()
    );

    // A request body larger than any socket buffer goes through whole (TLS records are flushed).
    let body = Bytes::from(vec![b'x'; 4 << 20]);
    let req = http::Request::post(format!("{}/h1/upload", s.url))
        .body(http_body_util::Full::new(body))
        .unwrap();
    let upload = c.send(req).await.unwrap();
    assert_eq!(upload.status, 200, "{}", upload.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_backend_negotiates_h2_by_alpn() {
    let s = setup().await;
    let c = Client::new();
    for path in ["/h2/a", "/h2/b"] {
        let r = c.get(&format!("{}{path}", s.url), &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with("HTTP/2.0 TLSv1.3 "), "{}", r.text());
        assert!(r.text().contains("client=CN=gatehouse"), "{}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_nginx_refuses_the_gateway() {
    let s = setup().await;
    let r = Client::new()
        .get(&format!("{}/anonymous", s.url), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 400, "ssl_verify_client on: {}", r.text());
    assert!(
        r.text().contains("No required SSL certificate"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_server_name_is_a_502_upstream_tls() {
    let s = setup().await;
    let c = Client::new();
    for path in ["/wrong-ca", "/wrong-name"] {
        let r = c.get(&format!("{}{path}", s.url), &[]).await.unwrap();
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"], "upstream_tls", "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("TLS handshake"), "{message}");
        assert!(
            !message.contains("127.0.0.1"),
            "no upstream address: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_speak_tls_to_the_endpoint() {
    let s = setup().await;
    let gw = &s.gw;
    eventually(
        "the TLS health check marks the endpoint healthy",
        || async {
            let v: serde_json::Value = Client::new()
                .get(&format!("http://{}/backends", gw.admin), &[])
                .await
                .unwrap()
                .json();
            v["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == "default/h1")
                .is_some_and(|b| b["endpoints"][0]["health"] == "healthy")
        },
    )
    .await;
}
