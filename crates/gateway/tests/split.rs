//! Weighted splits (release by routing): a rule's traffic divides by weight within ±2 % over
//! 10,000 requests across any number of backends, and `stickySplit` keeps each user on one
//! backend: by a cookie Gatehouse sets, or by a header's hash, across requests and across a
//! reload that moves weight to the canary (users only ever move towards the one that grew).

mod common;

use common::{with_gateway, Named};
use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::{Client, TestGateway};
use std::collections::HashMap;

const SPLIT: &str = r#"
---
kind: Backend
metadata: {name: stable}
spec: {endpoints: ["{stable}"]}
---
kind: Backend
metadata: {name: canary}
spec: {endpoints: ["{canary}"]}
---
kind: Backend
metadata: {name: beta}
spec: {endpoints: ["{beta}"]}
---
kind: Route
metadata: {name: tasks}
spec:
  rules:
    - match: {path: {prefix: /three}}
      backends:
        - {backend: stable, weight: 60}
        - {backend: beta, weight: 30}
        - {backend: canary, weight: 10}
    - match: {path: {prefix: /cookie}}
      backends:
        - {backend: stable, weight: {stable_weight}}
        - {backend: canary, weight: {canary_weight}}
      stickySplit: {cookie: gh-version}
    - match: {path: {prefix: /header}}
      backends:
        - {backend: stable, weight: {stable_weight}}
        - {backend: canary, weight: {canary_weight}}
      stickySplit: {header: x-user-id}
"#;

struct Three {
    _upstreams: [Named; 3],
    values: Vec<(&'static str, String)>,
}

impl Three {
    async fn start() -> Three {
        let (s, c, b) = (
            Named::start("stable").await,
            Named::start("canary").await,
            Named::start("beta").await,
        );
        let values = vec![
            ("stable", s.addr.to_string()),
            ("canary", c.addr.to_string()),
            ("beta", b.addr.to_string()),
        ];
        Three {
            _upstreams: [s, c, b],
            values,
        }
    }

    fn yaml(&self, stable_weight: u32, canary_weight: u32) -> String {
        let (sw, cw) = (stable_weight.to_string(), canary_weight.to_string());
        let mut values: Vec<(&str, &str)> =
            self.values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        values.push(("stable_weight", &sw));
        values.push(("canary_weight", &cw));
        with_gateway(&fill(SPLIT, &values))
    }
}

/// `n` requests from `tasks` concurrent keep-alive clients; `headers(i)` gives request `i`'s
/// headers. Returns how many each backend served.
async fn spread(
    url: &str,
    n: usize,
    headers: impl Fn(usize) -> Vec<(String, String)> + Send + Sync + 'static,
) -> HashMap<String, usize> {
    let tasks = 8;
    let headers = std::sync::Arc::new(headers);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (url, headers) = (url.to_string(), headers.clone());
        set.spawn(async move {
            let client = Client::new();
            let mut counts: HashMap<String, usize> = HashMap::new();
            for i in (t..n).step_by(tasks) {
                let h = headers(i);
                let h: Vec<(&str, &str)> =
                    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let r = client.get(&url, &h).await.expect("response");
                assert_eq!(r.status, 200, "{}", r.text());
                *counts.entry(r.text()).or_default() += 1;
            }
            counts
        });
    }
    let mut all = HashMap::new();
    while let Some(c) = set.join_next().await {
        for (k, v) in c.expect("task") {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

fn assert_shares(counts: &HashMap<String, usize>, want: &[(&str, f64)], what: &str) {
    let total: usize = counts.values().sum();
    for (name, share) in want {
        let got = *counts.get(*name).unwrap_or(&0) as f64 / total as f64 * 100.0;
        println!("{what}: {name} {got:.2} % (configured {share} %)");
        assert!(
            (got - share).abs() <= 2.0,
            "{what}: {name} got {got:.2} % of {total}, configured {share} % ({counts:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_hold_within_two_percent_over_ten_thousand_requests() {
    let up = Three::start().await;
    let gw = TestGateway::start(&up.yaml(80, 20)).await;
    let web = gw.url("web").await;

    let counts = spread(&format!("{web}/three"), 10_000, |_| Vec::new()).await;
    assert_shares(
        &counts,
        &[("stable", 60.0), ("beta", 30.0), ("canary", 10.0)],
        "random split",
    );
    // A new user per request (no cookie, distinct ids): the sticky splits keep the weights too.
    let counts = spread(&format!("{web}/cookie"), 10_000, |_| Vec::new()).await;
    assert_shares(
        &counts,
        &[("stable", 80.0), ("canary", 20.0)],
        "cookie split",
    );
    let counts = spread(&format!("{web}/header"), 10_000, |i| {
        vec![("x-user-id".into(), format!("user-{i}"))]
    })
    .await;
    assert_shares(
        &counts,
        &[("stable", 80.0), ("canary", 20.0)],
        "header split",
    );
}

/// The `gh-version=...` pair of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_never_flip_and_only_move_to_the_canary_as_it_grows() {
    let up = Three::start().await;
    let gw = TestGateway::start(&up.yaml(90, 10)).await;
    let web = gw.url("web").await;
    let client = Client::new();

    // 200 cookie users: the first answer sets the cookie; the next 20 keep the backend and set
    // nothing more.
    let mut cookie_users = Vec::new();
    for _ in 0..200 {
        let r = client.get(&format!("{web}/cookie"), &[]).await.unwrap();
        let set = r.header("set-cookie").expect("a new user gets the cookie");
        assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
        let pair = cookie_pair(set);
        let first = r.text();
        for _ in 0..20 {
            let r = client
                .get(&format!("{web}/cookie"), &[("cookie", &pair)])
                .await
                .unwrap();
            assert_eq!(r.text(), first, "user {pair} flipped");
            assert!(
                r.header("set-cookie").is_none(),
                "a known user is not re-cookied"
            );
        }
        cookie_users.push((pair, first));
    }
    // 200 header users.
    let mut header_users = Vec::new();
    for u in 0..200 {
        let id = format!("user-{u}");
        let first = client
            .get(&format!("{web}/header"), &[("x-user-id", &id)])
            .await
            .unwrap()
            .text();
        for _ in 0..20 {
            let r = client
                .get(&format!("{web}/header"), &[("x-user-id", &id)])
                .await
                .unwrap();
            assert_eq!(r.text(), first, "user {id} flipped");
        }
        header_users.push((id, first));
    }
    let on_canary =
        |users: &[(String, String)]| users.iter().filter(|(_, b)| b == "canary").count();
    assert!(on_canary(&cookie_users) > 0 && on_canary(&header_users) > 0);

    // The canary grows from 10 % to 50 %: nobody leaves it, some join it.
    gw.write(&up.yaml(50, 50));
    gw.gw.reload("test").await.expect("valid reload");
    let mut moved = 0;
    for (path, users, header) in [
        ("cookie", &cookie_users, "cookie"),
        ("header", &header_users, "x-user-id"),
    ] {
        for (key, before) in users.iter() {
            let r = client
                .get(&format!("{web}/{path}"), &[(header, key)])
                .await
                .unwrap();
            let now = r.text();
            if before == "canary" {
                assert_eq!(
                    now, "canary",
                    "{path} user {key} left the canary as it grew"
                );
            } else if now != *before {
                moved += 1;
            }
            // And stays there.
            let again = client
                .get(&format!("{web}/{path}"), &[(header, key)])
                .await
                .unwrap();
            assert_eq!(
                again.text(),
                now,
                "{path} user {key} flipped after the reload"
            );
        }
    }
    let before = on_canary(&cookie_users) + on_canary(&header_users);
    println!("{before} of 400 users on the canary at 10 %, {moved} more moved to it at 50 %");
    assert!(
        moved > 50,
        "growing the canary to 50 % moved only {moved} users"
    );
}
