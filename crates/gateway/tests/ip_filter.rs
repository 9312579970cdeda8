//! `ipFilter` over real sockets: the client address is the peer's, or — only when the peer is in
//! `trustedProxies` — the nearest untrusted `X-Forwarded-For` entry; deny wins over allow; a
//! refusal is 403 JSON `forbidden` and never reaches the backend.

use gatehouse_testkit::{Client, TestGateway, Upstream};

/// `/filtered` allows loopback and 198.51.100.0/24 except 198.51.100.66, denies 203.0.113.0/24;
/// `/open` has no filter. `GATEWAY_EXTRA` goes into the Gateway's spec.
fn config(backend: std::net::SocketAddr, gateway_extra: &str) -> String {
    r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false} GATEWAY_EXTRA}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: app}
spec: {endpoints: ["BACKEND"]}
---
kind: Policy
metadata: {name: office}
spec:
  ipFilter:
    allow: [127.0.0.0/8, 198.51.100.0/24]
    deny: [198.51.100.66, 203.0.113.0/24]
---
kind: Route
metadata: {name: r}
spec:
  rules:
    - match: {path: {prefix: /filtered}}
      backends: [{backend: app}]
      policies: [office]
    - match: {path: {prefix: /open}}
      backends: [{backend: app}]
"#
    .replace("BACKEND", &backend.to_string())
    .replace("GATEWAY_EXTRA", gateway_extra)
}

async fn status(c: &Client, url: &str, xff: Option<&str>) -> (u16, serde_json::Value) {
    let h: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
    let r = c.get(url, &h).await.expect("the gateway answers");
    let body = serde_json::from_slice(&r.body).unwrap_or_default();
    (r.status.as_u16(), body)
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_judged() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&config(up.addr, ", trustedProxies: [127.0.0.0/8]")).await;
    let url = gw.url("web").await;
    let c = Client::new();
    for (xff, want) in [
        (None, 200),
        (Some("198.51.100.4"), 200),
        (Some("203.0.113.7"), 403),
        (Some("198.51.100.66"), 403),
        (Some("192.0.2.1"), 403),
        // Read from the right: the entry our trusted peer appended is the client; whatever the
        // client wrote before it is not believed.
        (Some("198.51.100.4, 203.0.113.7"), 403),
        (Some("203.0.113.7, 198.51.100.4"), 200),
        // Trusted hops are skipped to reach the client.
        (Some("203.0.113.7, 127.0.0.9"), 403),
    ] {
        let (status, body) = status(&c, &format!("{url}/filtered"), xff).await;
        assert_eq!(status, want, "{xff:?}: {body}");
        if want == 403 {
            assert_eq!(body["error"], "forbidden", "{xff:?}");
            assert!(body["requestId"].is_string());
        }
    }
    assert_eq!(up.requests(), 3, "refused requests never reach the backend");
    // A route without the policy is not filtered.
    let (status, _) = status(&c, &format!("{url}/open"), Some("203.0.113.7")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_forge_its_address() {
    let up = Upstream::start("app").await;
    // No trusted proxies: the peer (127.0.0.1, allowed) is judged whatever it claims.
    let gw = TestGateway::start(&config(up.addr, "")).await;
    let url = gw.url("web").await;
    let c = Client::new();
    let (s, _) = status(&c, &format!("{url}/filtered"), Some("203.0.113.7")).await;
    assert_eq!(
        s, 200,
        "a denied address in the header does not deny the real peer"
    );
    // And claiming an allowed address does not help a peer outside the allow list.
    let only_office = config(up.addr, "").replace(
        "allow: [127.0.0.0/8, 198.51.100.0/24]",
        "allow: [198.51.100.0/24]",
    );
    let gw = TestGateway::start(&only_office).await;
    let url = gw.url("web").await;
    let (s, body) = status(&c, &format!("{url}/filtered"), Some("198.51.100.4")).await;
    assert_eq!(s, 403, "{body}");
}
