//! Hot reload: under continuous load nothing fails; invalid configs are refused and the old one
//! keeps serving; listeners come and go; file changes trigger reloads.

use gatehouse_testkit::{refuses, status, wait_for, Client, TestGateway, Upstream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn config(
    backend: &str,
    a: &Upstream,
    b: &Upstream,
    extra_listener: bool,
    main_listener: bool,
) -> String {
    let mut s =
        String::from("kind: Gateway\nmetadata: {name: g}\nspec: {accessLog: {enabled: false}}\n");
    if main_listener {
        s.push_str("---\nkind: Listener\nmetadata: {name: web}\nspec: {address: \"127.0.0.1:0\", protocol: HTTP}\n");
    }
    if extra_listener {
        s.push_str("---\nkind: Listener\nmetadata: {name: extra}\nspec: {address: \"127.0.0.1:0\", protocol: HTTP}\n");
    }
    s.push_str(&format!(
        "---\nkind: Backend\nmetadata: {{name: a}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Backend\nmetadata: {{name: b}}\nspec: {{endpoints: [\"{}\"]}}\n---\nkind: Route\nmetadata: {{name: r}}\nspec:\n  rules:\n    - backends: [{{backend: {backend}}}]\n      responseHeaders: {{set: {{x-config: {backend}}}}}\n",
        a.addr, b.addr
    ));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_continuous_load_fails_no_request() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(&config("a", &a, &b, false, true)).await;
    let url = gw.url("web").await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let saw_b = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, saw_b, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            saw_b.clone(),
            url.clone(),
        );
        clients.push(tokio::spawn(async move {
            // One keep-alive client per task: its connections stay open across every reload.
            let c = Client::new();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&format!("{url}/work"), &[]).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if r.header("x-config") == Some("b") {
                            saw_b.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(r) => {
                        eprintln!("failed: {} {}", r.status, r.text());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let reloads = 40;
    for i in 0..reloads {
        // Let traffic flow between reloads: wait for 100 more successful requests.
        let target = ok.load(Ordering::Relaxed) + 100;
        wait_for("traffic between reloads", || async {
            ok.load(Ordering::Relaxed) >= target || failed.load(Ordering::Relaxed) > 0
        })
        .await;
        gw.write(&config(
            if i % 2 == 0 { "b" } else { "a" },
            &a,
            &b,
            false,
            true,
        ));
        gw.gw.reload("test").await.expect("valid reload");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let total = ok.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(total >= 4000, "only {total} requests");
    assert!(saw_b.load(Ordering::Relaxed), "reloads took effect");
    eprintln!("{total} requests across {reloads} reloads, none failed");
}

#[tokio::test]
async fn invalid_reload_is_refused_and_the_old_config_keeps_serving() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(&config("a", &a, &b, false, true)).await;
    let url = gw.url("web").await;
    let admin = format!("http://{}", gw.admin);
    let c = Client::new();
    let before = c.get(&format!("{admin}/config"), &[]).await.unwrap().json()["version"].clone();

    gw.write(
        &config("a", &a, &b, false, true)
            .replace("backend: a}", "backend: nope}")
            .replace("name: g}\n", "name: g}\nspec: {drainTimeout: soon}\n#"),
    );
    let req = http::Request::post(format!("{admin}/reload"))
        .body(Default::default())
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, 400);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let text: Vec<&str> = errors.iter().map(|e| e.as_str().unwrap()).collect();
    assert!(
        text.iter().any(|e| e.contains("config.yaml:")
            && e.contains("spec.rules[0].backends[0].backend: unknown backend `default/nope`")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|e| e.contains("spec.drainTimeout")),
        "{text:?}"
    );

    let r = c.get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-config"), Some("a"));
    let cfg = c.get(&format!("{admin}/config"), &[]).await.unwrap().json();
    assert_eq!(cfg["version"], before);
    assert_eq!(cfg["lastReload"]["ok"], false);
    assert_eq!(cfg["lastReload"]["errors"].as_array().unwrap().len(), 2);
    let metrics = c
        .get(&format!("{admin}/metrics"), &[])
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("gatehouse_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn reload_starts_and_stops_listeners() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(&config("a", &a, &b, false, true)).await;
    let web = gw.addr("web").await;
    gw.write(&config("a", &a, &b, true, true));
    gw.gw.reload("test").await.unwrap();
    let extra = gw.url("extra").await;
    assert_eq!(status(&format!("{extra}/x")).await, 200);
    assert_eq!(
        gw.addr("web").await,
        web,
        "an unchanged listener keeps its socket"
    );

    gw.write(&config("a", &a, &b, true, false));
    gw.gw.reload("test").await.unwrap();
    assert!(!gw.gw.listener_addrs().await.contains_key("default/web"));
    // The removed listener's socket is closed once its accept loop has stopped.
    wait_for("the removed listener to stop accepting", || refuses(web)).await;
    assert_eq!(status(&format!("{extra}/x")).await, 200);
}

#[tokio::test]
async fn a_file_change_triggers_a_reload() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(&config("a", &a, &b, false, true)).await;
    let source = gatehouse_gateway::ConfigSource::Path(gw.dir.path().to_path_buf());
    let _watcher =
        gatehouse_gateway::reload::watch_files(gw.gw.clone(), &source).expect("watching");
    let mut versions = gw.gw.subscribe();
    gw.write(&config("b", &a, &b, false, true));
    tokio::time::timeout(LIMIT, versions.changed())
        .await
        .expect("reloaded after the file changed")
        .unwrap();
    let r = Client::new()
        .get(&format!("{}/x", gw.url("web").await), &[])
        .await
        .unwrap();
    assert_eq!(r.header("x-config"), Some("b"));
    assert_eq!(gw.gw.status().trigger, "file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_a_reload_completes() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start(&config("a", &a, &b, false, true)).await;
    let url = gw.url("web").await;
    let slow = tokio::spawn({
        let url = url.clone();
        async move { Client::new().get(&format!("{url}/slow/800"), &[]).await }
    });
    wait_for("the slow request to reach upstream a", || async {
        a.requests() > 0
    })
    .await;
    // Swap the backend and remove nothing: the in-flight request keeps the snapshot it started
    // with, and finishes on upstream a.
    gw.write(&config("b", &a, &b, false, true));
    gw.gw.reload("test").await.unwrap();
    assert!(
        !slow.is_finished(),
        "the request was still in flight during the reload"
    );
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept 800ms\n");
    assert_eq!(r.header("x-config"), Some("a"));
    let r = Client::new().get(&format!("{url}/x"), &[]).await.unwrap();
    assert_eq!(r.header("x-config"), Some("b"));
}

#[tokio::test]
async fn renaming_a_listener_hands_its_address_over() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    // A concrete port, so two listener names can claim the same address in turn.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = config("a", &a, &b, false, false);
    let with = |name: &str| {
        format!("{base}---\nkind: Listener\nmetadata: {{name: {name}}}\nspec: {{address: \"127.0.0.1:{port}\", protocol: HTTP}}\n")
    };
    let gw = TestGateway::start(&with("old")).await;
    let url = format!("http://127.0.0.1:{port}/x");
    assert_eq!(status(&url).await, 200);
    gw.write(&with("new"));
    gw.gw
        .reload("test")
        .await
        .expect("the new listener takes over the address");
    let addrs = gw.gw.listener_addrs().await;
    assert!(
        addrs.contains_key("default/new") && !addrs.contains_key("default/old"),
        "{addrs:?}"
    );
    assert_eq!(status(&url).await, 200);
}

#[tokio::test]
async fn several_workers_share_each_listener_and_shut_down_together() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    // Two extra single-threaded runtimes, as `gatehouse run` makes for `workers: 3`.
    let mut workers = vec![tokio::runtime::Handle::current()];
    for _ in 0..2 {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tx.send(rt.handle().clone()).unwrap();
            rt.block_on(std::future::pending::<()>());
        });
        workers.push(rx.recv().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = gatehouse_testkit::gateway::with_api_version(&config("a", &a, &b, false, true));
    std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
    let source = gatehouse_gateway::ConfigSource::Path(dir.path().to_path_buf());
    let config = source.load().unwrap();
    let gw = gatehouse_gateway::Gateway::start_on(source, config, workers)
        .await
        .unwrap();
    let web = gw.listener_addrs().await["default/web"];
    for _ in 0..20 {
        // A new client each time: a new connection, which the kernel may hand to any worker.
        let r = Client::new()
            .get(&format!("http://{web}/x"), &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    gw.shutdown().await;
    assert!(
        refuses(web).await,
        "every worker's socket is closed after shutdown"
    );
}
