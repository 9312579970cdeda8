//! The admin API over a real socket: health, metrics, effective config, routes, backends.

use gatehouse_testkit::{Client, TestGateway, Upstream};

async fn setup() -> (TestGateway, Upstream, String, String) {
    let up = Upstream::start("up").await;
    let yaml = format!(
        "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{enabled: false}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {{address: \"127.0.0.1:0\", protocol: HTTP}}\n---\nkind: Backend\nmetadata: {{name: up, namespace: shop}}\nspec: {{endpoints: [\"{}\", {{address: \"{}\", weight: 3}}]}}\n---\nkind: Route\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  hosts: [shop.example.com]\n  rules:\n    - match: {{path: {{prefix: /cart}}, methods: [GET]}}\n      backends: [{{backend: up}}]\n",
        up.addr, up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("web").await;
    let admin = format!("http://{}", gw.admin);
    (gw, up, url, admin)
}

#[tokio::test]
async fn health_endpoints_answer() {
    let (_gw, _up, _url, admin) = setup().await;
    let c = Client::new();
    assert_eq!(
        c.get(&format!("{admin}/live"), &[]).await.unwrap().status,
        200
    );
    assert_eq!(
        c.get(&format!("{admin}/ready"), &[]).await.unwrap().status,
        200
    );
    assert_eq!(
        c.get(&format!("{admin}/nope"), &[]).await.unwrap().status,
        404
    );
    let r = c
        .send(
            http::Request::post(format!("{admin}/ready"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    let r = c.get(&format!("{admin}/reload"), &[]).await.unwrap();
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn metrics_count_requests_by_route_backend_and_status_class() {
    let (_gw, _up, url, admin) = setup().await;
    let c = Client::new();
    for _ in 0..3 {
        assert_eq!(
            c.get(&format!("{url}/cart/1"), &[("host", "shop.example.com")])
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        c.get(&format!("{url}/nothing"), &[]).await.unwrap().status,
        404
    );
    let m = c
        .get(&format!("{admin}/metrics"), &[])
        .await
        .unwrap()
        .text();
    for want in [
        "gatehouse_requests_total{route=\"shop/cart\",backend=\"shop/up\",status_class=\"2xx\"} 3",
        "gatehouse_requests_total{route=\"none\",backend=\"\",status_class=\"4xx\"} 1",
        "gatehouse_request_duration_seconds_count{route=\"shop/cart\"} 3",
        "gatehouse_proxy_errors_total{route=\"none\",kind=\"no_route\"} 1",
        "gatehouse_active_connections{listener=\"default/web\"} 1",
        "gatehouse_config_reloads_total{result=\"success\"} 1",
        "gatehouse_config_info{version=",
    ] {
        assert!(m.contains(want), "missing `{want}` in\n{m}");
    }
    assert!(!m.contains("/cart/1"), "raw paths never become labels");
    // Series that never had a value are not shown: no 5xx, no local (direct-response) series.
    for absent in ["status_class=\"5xx\"", "route=\"shop/cart\",backend=\"\""] {
        assert!(
            !m.contains(absent),
            "`{absent}` shown though never used:\n{m}"
        );
    }
}

#[tokio::test]
async fn config_routes_and_backends_are_exposed() {
    let (_gw, _up, _url, admin) = setup().await;
    let c = Client::new();
    let cfg = c.get(&format!("{admin}/config"), &[]).await.unwrap().json();
    assert_eq!(cfg["version"].as_str().unwrap().len(), 16);
    assert_eq!(cfg["lastReload"]["ok"], true);
    let backend = &cfg["config"][2];
    assert_eq!(backend["kind"], "Backend");
    assert_eq!(backend["metadata"]["name"], "up");
    assert_eq!(backend["metadata"]["namespace"], "shop");
    assert_eq!(backend["spec"]["timeouts"]["connect"], "5s");
    assert_eq!(cfg["admin"]["restartRequired"], false);
    let routes = c.get(&format!("{admin}/routes"), &[]).await.unwrap().json();
    let row = &routes["routes"][0];
    assert_eq!(row["host"], "shop.example.com");
    assert_eq!(row["path"], "prefix /cart");
    assert_eq!(row["conditions"], "GET");
    assert_eq!(row["rule"], "shop/cart[0]");
    assert_eq!(row["action"], "forward shop/up (1)");
    let backends = c
        .get(&format!("{admin}/backends"), &[])
        .await
        .unwrap()
        .json();
    let b = &backends["backends"][0];
    assert_eq!(b["name"], "shop/up");
    assert_eq!(b["endpoints"][1]["weight"], 3);
    assert_eq!(b["endpoints"][0]["inFlight"], 0);
}

#[tokio::test]
async fn access_log_writes_one_json_line_per_request() {
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{format: json, path: \"{}\"}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {{address: \"127.0.0.1:0\", protocol: HTTP}}\n---\nkind: Backend\nmetadata: {{name: up}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - match: {{path: {{prefix: /api}}}}\n      backends: [{{backend: up}}]\n",
        log.display(),
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("web").await;
    let c = Client::new();
    let req = http::Request::post(format!("{url}/api/items?secret=1"))
        .header("host", "shop.test")
        .header("x-request-id", "log-1")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"0123456789",
        )))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, 200);
    let missing = c
        .get(&format!("{url}/nothing"), &[("x-request-id", "log-2")])
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    // The line is written when the gateway sees the end of the response body, so before the
    // client can have read all of it: no waiting needed.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let l = &lines[0];
    assert_eq!(l["requestId"], "log-1");
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["method"], "POST");
    assert_eq!(l["host"], "shop.test");
    assert_eq!(l["path"], "/api/items", "no query strings in logs");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytesIn"], 10);
    assert_eq!(l["bytesOut"].as_u64().unwrap(), r.body.len() as u64);
    assert_eq!(l["route"], "default/r");
    assert_eq!(l["backend"], "default/up");
    assert_eq!(l["upstream"], up.addr.to_string());
    assert!(l["durationMs"].as_f64().unwrap() >= l["upstreamDurationMs"].as_f64().unwrap());
    assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[1]["error"], "no_route");
    assert_eq!(
        lines[1]["route"], "none",
        "one spelling with the metrics label"
    );
}

#[tokio::test]
async fn an_abandoned_request_is_logged_as_499_and_leaves_no_in_flight_count() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start("up").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = format!(
        "kind: Gateway\nmetadata: {{name: g}}\nspec: {{accessLog: {{path: \"{}\"}}}}\n---\nkind: Listener\nmetadata: {{name: web}}\nspec: {{address: \"127.0.0.1:0\", protocol: HTTP}}\n---\nkind: Backend\nmetadata: {{name: up}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - backends: [{{backend: up}}]\n",
        log.display(),
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let admin = format!("http://{}/backends", gw.admin);
    let mut s = tokio::net::TcpStream::connect(gw.addr("web").await)
        .await
        .unwrap();
    s.write_all(b"GET /slow/5000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    gatehouse_testkit::wait_for("the request to reach the upstream", || async {
        up.requests() > 0
    })
    .await;
    let c = Client::new();
    let in_flight = || async {
        c.get(&admin, &[]).await.unwrap().json()["backends"][0]["endpoints"][0]["inFlight"].as_u64()
    };
    assert_eq!(in_flight().await, Some(1));
    drop(s);
    // The upstream would answer after 5 s; the gateway gives up on the exchange as soon as the
    // client is gone.
    gatehouse_testkit::wait_for("the in-flight count to drop", || async {
        in_flight().await == Some(0)
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a log line")).unwrap();
    assert_eq!(line["status"], 499);
    assert_eq!(line["path"], "/slow/5000");
}

#[tokio::test]
async fn a_reloaded_admin_address_is_shown_beside_the_serving_one() {
    let (gw, up, _url, admin) = setup().await;
    let c = Client::new();
    let before = c.get(&format!("{admin}/config"), &[]).await.unwrap().json();
    let configured = before["admin"]["address"].as_str().unwrap().to_string();
    assert_eq!(before["admin"]["serving"], gw.admin.to_string());
    let moved = std::fs::read_to_string(gw.config_path()).unwrap().replace(
        "spec: {accessLog",
        "spec: {admin: {address: \"127.0.0.1:1\"}, accessLog",
    );
    assert!(moved.contains("127.0.0.1:1"));
    gw.write(&moved);
    let req = http::Request::post(format!("{admin}/reload"))
        .body(Default::default())
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status, 200);
    let after = c.get(&format!("{admin}/config"), &[]).await.unwrap().json();
    assert_ne!(configured, "127.0.0.1:1");
    assert_eq!(after["admin"]["address"], "127.0.0.1:1");
    assert_eq!(after["admin"]["serving"], gw.admin.to_string());
    assert_eq!(after["admin"]["restartRequired"], true);
    assert_eq!(
        after["config"][0]["spec"]["admin"]["address"],
        "127.0.0.1:1"
    );
    drop(up);
}
