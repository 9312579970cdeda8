//! Real nginx as the upstream: what it sees of forwarded requests, static files through the
//! gateway, and connection reuse.

use gatehouse_testkit::{Client, Nginx, TestGateway};

// One runtime thread, as with `workers: 1`: idle connections are pooled per thread, and under a
// work-stealing runtime a connection may be returned to another thread's pool than the next request
// looks in, which would make the reuse count below depend on scheduling.
#[tokio::test]
async fn proxies_to_a_real_nginx() {
    let nginx = Nginx::start(
        r#"
    location /echo {
        default_type application/json;
        return 200 '{"host":"$host","uri":"$request_uri","xff":"$http_x_forwarded_for","proto":"$http_x_forwarded_proto","rid":"$http_x_request_id","conn":"$connection","reqs":"$connection_requests"}';
    }
    location /files/ { root {www}; }
"#,
    );
    let file: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(nginx.www().join("files")).unwrap();
    std::fs::write(nginx.www().join("files/big.bin"), &file).unwrap();
    let yaml = format!(
        "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{enabled: false}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {{address: \"127.0.0.1:0\", protocol: HTTP}}\n---\nkind: Backend\nmetadata: {{name: nginx}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - match: {{path: {{prefix: /api}}}}\n      rewrite: {{pathPrefix: /echo}}\n      backends: [{{backend: nginx}}]\n    - match: {{path: {{prefix: /files}}}}\n      backends: [{{backend: nginx}}]\n",
        nginx.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("web").await;
    let c = Client::new();
    let mut conns = std::collections::HashSet::new();
    for i in 0..5 {
        let r = c
            .get(
                &format!("{url}/api/items?page={i}"),
                &[("host", "shop.test"), ("x-request-id", "rid-1")],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["host"], "shop.test");
        assert_eq!(v["uri"], format!("/echo/items?page={i}"));
        assert_eq!(v["xff"], "127.0.0.1");
        assert_eq!(v["proto"], "http");
        assert_eq!(v["rid"], "rid-1");
        conns.insert(v["conn"].as_str().unwrap().to_string());
    }
    assert_eq!(
        conns.len(),
        1,
        "sequential requests reuse one keep-alive connection: {conns:?}"
    );

    let r = c.get(&format!("{url}/files/big.bin"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), file.len());
    assert!(r.body == file, "file arrives intact");
    let r = c.get(&format!("{url}/files/missing"), &[]).await.unwrap();
    assert_eq!(r.status, 404, "upstream statuses pass through");
}
