//! Routing at scale: the indexed lookup against a straightforward reference matcher over random
//! rule sets, 10,000-rule tables, diff-based snapshot reuse on a reload, and the paged, filtered
//! route table of `GET /routes`.

use gatehouse_config::{load_sources, Config, HostMatch, Rule, SourceFile};
use gatehouse_gateway::routing::{rule_matches, Router};
use gatehouse_gateway::snapshot::Snapshot;
use gatehouse_gateway::state::StateStore;
use gatehouse_gateway::telemetry::metrics::Metrics;
use gatehouse_testkit::reuse::rebuilt_routes;
use gatehouse_testkit::{Client, TestGateway, Upstream};
use http::{HeaderMap, Method};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

fn load(yaml: &str) -> Config {
    load_sources(&[SourceFile {
        name: "t.yaml".into(),
        text: yaml.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The lookup as it was before the index: every host class's rules sorted by precedence and
/// scanned in order with `rule_matches`.
struct Reference<'a> {
    exact: HashMap<&'a str, Vec<RefRule<'a>>>,
    wildcard: Vec<(&'a str, Vec<RefRule<'a>>)>,
    any: Vec<RefRule<'a>>,
}

/// Route name, rule index, rule.
type RefRule<'a> = (String, usize, &'a Rule);

impl<'a> Reference<'a> {
    fn new(config: &'a Config) -> Self {
        let mut exact: HashMap<&str, Vec<_>> = HashMap::new();
        let mut wildcard: HashMap<&str, Vec<_>> = HashMap::new();
        let mut any = Vec::new();
        for route in &config.routes {
            for (i, rule) in route.rules.iter().enumerate() {
                let e = (route.id.to_string(), i, rule);
                if route.hosts.is_empty() {
                    any.push(e.clone());
                }
                for h in &route.hosts {
                    match h {
                        HostMatch::Exact(x) => exact.entry(x.as_str()).or_default().push(e.clone()),
                        HostMatch::Wildcard(w) => {
                            wildcard.entry(w.as_str()).or_default().push(e.clone())
                        }
                    }
                }
            }
        }
        let sort = |v: &mut Vec<RefRule>| v.sort_by_key(|e| e.2.precedence());
        exact.values_mut().for_each(sort);
        let mut wildcard: Vec<_> = wildcard.into_iter().collect();
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        wildcard.iter_mut().for_each(|(_, v)| sort(v));
        sort(&mut any);
        Reference {
            exact,
            wildcard,
            any,
        }
    }

    fn lookup(&self, host: &str, req: &Req) -> Option<String> {
        let scan = |rules: &[RefRule]| {
            rules
                .iter()
                .find(|e| rule_matches(e.2, &req.method, &req.path, req.query(), &req.headers))
                .map(|e| format!("{}[{}]", e.0, e.1))
        };
        if let Some(found) = self.exact.get(host).and_then(|r| scan(r)) {
            return Some(found);
        }
        for (suffix, rules) in &self.wildcard {
            if host.len() > suffix.len() && host.ends_with(suffix) {
                if let Some(found) = scan(rules) {
                    return Some(found);
                }
            }
        }
        scan(&self.any)
    }
}

/// A request as the router sees it.
#[derive(Debug, Clone)]
struct Req {
    host: String,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
}

impl Req {
    fn query(&self) -> Option<&str> {
        (!self.query.is_empty()).then_some(self.query.as_str())
    }
}

fn found(router: &Router<()>, r: &Req) -> Option<String> {
    router
        .lookup(&r.host, &r.method, &r.path, r.query(), &r.headers)
        .map(|e| format!("{}[{}]", e.route, e.index))
}

const HOSTS: &[&[&str]] = &[
    &[],
    &["a.example.com"],
    &["*.example.com"],
    &["*.b.example.com"],
    &["x.b.example.com"],
    &["a.example.com", "*.b.example.com"],
];
const PATHS: &[&str] = &["/", "/a", "/a/b", "/a/b/c", "/b", "/ab", "/a//b", "/a/b/"];
const REGEXES: &[&str] = &["/a/.*", "/[ab]+", "/a/b/c", "/.*c", "/a(/.*)?"];
const CONDITIONS: &[&str] = &[
    "",
    "methods: [GET], ",
    "methods: [POST, GET], ",
    "headers: [{name: x-env, value: staging}], ",
    "headers: [{name: x-env}], ",
    "query: [{name: v, value: \"2\"}], ",
    "methods: [POST], query: [{name: v, value: \"2\"}], ",
];

/// A generated rule: (kind 0 exact / 1 prefix / 2 regex, path or regex index, conditions index).
type GenRule = (u8, usize, usize);

/// A config from generated routes, leaving out what validation refuses (a rule duplicating an
/// earlier one for a host, a regex behind a catch-all, a route left without rules).
fn config_yaml(routes: &[(usize, Vec<GenRule>)]) -> String {
    let text = |&(kind, p, c): &GenRule| {
        let path = match kind {
            0 => format!("{{exact: \"{}\"}}", PATHS[p % PATHS.len()]),
            1 => format!("{{prefix: \"{}\"}}", PATHS[p % PATHS.len()]),
            _ => format!("{{regex: \"{}\"}}", REGEXES[p % REGEXES.len()]),
        };
        format!("{{{}path: {path}}}", CONDITIONS[c])
    };
    let keys = |h: usize| -> Vec<&str> {
        match HOSTS[h] {
            [] => vec!["*"],
            hs => hs.to_vec(),
        }
    };
    // A prefix `/` (or a trailing-slash prefix trimmed to it) without conditions catches all.
    let catch_all = |r: &GenRule| r.0 == 1 && matches!(PATHS[r.1 % PATHS.len()], "/") && r.2 == 0;
    let mut caught: HashSet<&str> = HashSet::new();
    for (h, rules) in routes {
        if rules.iter().any(catch_all) {
            caught.extend(keys(*h));
        }
    }
    let mut seen: HashSet<(&str, String)> = HashSet::new();
    let mut yaml = String::from(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n",
    );
    for (n, (h, rules)) in routes.iter().enumerate() {
        let mut kept = Vec::new();
        for r in rules {
            let line = text(r);
            let regex_behind_all = r.0 == 2 && keys(*h).iter().any(|k| caught.contains(k));
            // Validation trims a prefix's trailing `/`: `/a/b/` duplicates `/a/b`.
            let key = if r.0 == 1 {
                line.replace("/\"}", "\"}")
            } else {
                line.clone()
            };
            let dup = keys(*h).iter().any(|k| seen.contains(&(*k, key.clone())));
            if regex_behind_all || dup {
                continue;
            }
            keys(*h).iter().for_each(|k| {
                seen.insert((k, key.clone()));
            });
            kept.push(format!(
                "    - match: {line}\n      backends: [{{backend: b}}]\n"
            ));
        }
        if kept.is_empty() {
            continue;
        }
        let hosts: Vec<String> = HOSTS[*h].iter().map(|x| format!("\"{x}\"")).collect();
        yaml.push_str(&format!(
            "---\napiVersion: gatehouse.dev/v1alpha1\nkind: Route\nmetadata: {{name: r{n}}}\nspec:\n  hosts: [{}]\n  rules:\n{}",
            hosts.join(", "),
            kept.concat()
        ));
    }
    yaml
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (0u8..3, 0usize..8, 0usize..CONDITIONS.len())
}

fn gen_request() -> impl Strategy<Value = Req> {
    let hosts = [
        "a.example.com",
        "x.b.example.com",
        "y.x.b.example.com",
        "b.example.com",
        "example.com",
        "other.org",
    ];
    let paths = [
        "/", "/a", "/a/b", "/a/b/c", "/a/b/c/d", "/ab", "/abc", "/a//b", "/a//b/c", "/a/b/", "/b",
        "/b/a", "/c", "/ba", "*",
    ];
    (
        proptest::sample::select(hosts.to_vec()),
        proptest::sample::select(vec!["GET", "POST", "PUT"]),
        proptest::sample::select(paths.to_vec()),
        proptest::sample::select(vec!["", "v=2", "v=3", "a=1&v=2"]),
        proptest::sample::select(vec![None, Some("staging"), Some("prod")]),
    )
        .prop_map(|(host, method, path, query, env)| {
            let mut headers = HeaderMap::new();
            if let Some(v) = env {
                headers.insert("x-env", http::HeaderValue::from_static(v));
            }
            Req {
                host: host.into(),
                method: method.parse().unwrap(),
                path: path.into(),
                query: query.into(),
                headers,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn indexed_lookup_agrees_with_the_linear_reference(
        routes in proptest::collection::vec(
            (0usize..HOSTS.len(), proptest::collection::vec(gen_rule(), 1..6)),
            1..8,
        ),
        requests in proptest::collection::vec(gen_request(), 40),
    ) {
        let config = load(&config_yaml(&routes));
        let reference = Reference::new(&config);
        let router = Router::build(&config, |_, _| ());
        for r in &requests {
            prop_assert_eq!(found(&router, r), reference.lookup(&r.host, r), "{:?}", r);
        }
    }
}

/// `n` routes: route `i` serves `/svc{i}/...` on `host(i)`, every 20th by a regex instead.
fn many_routes(n: usize, host: impl Fn(usize) -> String) -> String {
    many_routes_with(n, host, |_| String::new())
}

/// [`many_routes`], with `rule(i)` appended to the rule of route `i` (indented as its fields).
fn many_routes_with(
    n: usize,
    host: impl Fn(usize) -> String,
    rule: impl Fn(usize) -> String,
) -> String {
    let mut yaml = String::from(
        r#"apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: b}
spec: {endpoints: ["127.0.0.1:1"]}
"#,
    );
    for i in 0..n {
        let path = if i % 20 == 7 {
            format!("{{regex: \"/svc{i}/[0-9]+\"}}")
        } else {
            format!("{{prefix: /svc{i}}}")
        };
        yaml.push_str(&format!(
            r#"---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: r{i}}}
spec:
  hosts: ["{}"]
  rules:
    - match: {{path: {path}}}
      backends: [{{backend: b}}]
{}"#,
            host(i),
            rule(i)
        ));
    }
    yaml
}

fn get(host: &str, path: &str) -> Req {
    Req {
        host: host.into(),
        method: Method::GET,
        path: path.into(),
        query: String::new(),
        headers: HeaderMap::new(),
    }
}

#[test]
fn ten_thousand_paths_on_one_host_each_find_their_rule() {
    let config = load(&many_routes(10_000, |_| "api.example.com".into()));
    let router = Router::build(&config, |_, _| ());
    for i in (0..10_000).step_by(7) {
        let want = Some(format!("default/r{i}[0]"));
        assert_eq!(
            found(&router, &get("api.example.com", &format!("/svc{i}/42"))),
            want
        );
    }
    assert_eq!(found(&router, &get("api.example.com", "/svc7/x")), None);
    assert_eq!(found(&router, &get("api.example.com", "/svc10000")), None);
    assert_eq!(found(&router, &get("other.example.com", "/svc1")), None);
}

#[test]
fn ten_thousand_hosts_each_find_their_rule() {
    let config = load(&many_routes(10_000, |i| {
        if i % 2 == 0 {
            format!("h{i}.example.com")
        } else {
            format!("*.w{i}.example.com")
        }
    }));
    let router = Router::build(&config, |_, _| ());
    for i in (0..10_000).step_by(7) {
        let host = if i % 2 == 0 {
            format!("h{i}.example.com")
        } else {
            format!("x.y.w{i}.example.com")
        };
        let want = Some(format!("default/r{i}[0]"));
        assert_eq!(found(&router, &get(&host, &format!("/svc{i}/42"))), want);
    }
    // A wildcard covers subdomains, not the bare suffix.
    assert_eq!(found(&router, &get("w1.example.com", "/svc1")), None);
}

/// A snapshot of `yaml` built over fresh state, and what the next build needs.
fn snapshot(yaml: &str, prev: Option<&Snapshot>, store: &StateStore) -> Snapshot {
    let metrics = Metrics::new();
    let config = Arc::new(load(yaml));
    let plan = store.plan(&config, &metrics);
    let snap = Snapshot::build_from(config, &metrics, &plan, prev).unwrap();
    store.commit(&plan);
    snap
}

#[test]
fn a_reload_changing_one_route_of_ten_thousand_keeps_the_others_compiled() {
    let before = many_routes(10_000, |_| "api.example.com".into());
    let after = before.replace("{prefix: /svc5000}", "{prefix: /svc5000b}");
    assert_ne!(before, after);
    let store = StateStore::default();
    let old = snapshot(&before, None, &store);
    let new = snapshot(&after, Some(&old), &store);
    let old_entries: HashMap<(String, usize), _> = old
        .router
        .entries()
        .map(|e| ((e.route.to_string(), e.index), e.clone()))
        .collect();
    let (mut kept, mut rebuilt) = (0, Vec::new());
    for e in new.router.entries() {
        let prev = &old_entries[&(e.route.to_string(), e.index)];
        if Arc::ptr_eq(prev, e) {
            kept += 1;
        } else {
            rebuilt.push(e.route.to_string());
        }
    }
    assert_eq!(rebuilt, vec!["default/r5000".to_string()]);
    assert_eq!(kept, 9_999);
    assert!(Arc::ptr_eq(&old.backends[0], &new.backends[0]));
    let svc = get("api.example.com", "/svc5000b/1");
    let hit = new
        .router
        .lookup(&svc.host, &svc.method, &svc.path, None, &svc.headers);
    assert_eq!(
        hit.map(|e| e.route.to_string()).as_deref(),
        Some("default/r5000")
    );
}

/// Regex compilations (rules' regexes and regex sets) on this thread while `f` runs.
fn compilations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = gatehouse_config::regex_compilations();
    let r = f();
    (r, gatehouse_config::regex_compilations() - before)
}

#[test]
fn a_reload_changing_one_route_of_a_mix_compiles_at_most_its_regex() {
    // 10,000 routes on one host, 500 of them regexes (`many_routes`: every 20th).
    let before = many_routes(10_000, |_| "api.example.com".into());
    let store = StateStore::default();
    // Validation checks the syntax of the 500 regexes without compiling them.
    let (_, n) = compilations(|| load(&before));
    assert_eq!(n, 0, "validation compiled regexes");
    // The first build compiles the host's regex set, once; the rules' own regexes are left
    // uncompiled (the set answers for them).
    let (old, n) = compilations(|| snapshot(&before, None, &store));
    assert_eq!(n, 1);
    // A changed prefix route: nothing to compile.
    let prefix = before.replace("{prefix: /svc5000}", "{prefix: /svc5000b}");
    let (new, n) = compilations(|| snapshot(&prefix, Some(&old), &store));
    assert_eq!(n, 0, "a reload changing a prefix route compiled regexes");
    // A changed regex route: the host's set, again, and nothing else.
    let regex = prefix.replace("\"/svc5007/[0-9]+\"", "\"/svc5007/[a-z]+\"");
    assert_ne!(regex, prefix);
    let (newer, n) = compilations(|| snapshot(&regex, Some(&new), &store));
    assert_eq!(n, 1, "a reload changing one regex route");
    let (rebuilt, kept) = rebuilt_routes(&new, &newer);
    assert_eq!((rebuilt, kept), (vec!["default/r5007".to_string()], 9_999));
    // The reused and the rebuilt sets route as their patterns say.
    let hit = |s: &Snapshot, path: &str| {
        let r = get("api.example.com", path);
        (s.router
            .lookup(&r.host, &r.method, &r.path, None, &r.headers))
        .map(|e| e.route.to_string())
    };
    assert_eq!(hit(&new, "/svc5007/12").as_deref(), Some("default/r5007"));
    assert_eq!(hit(&new, "/svc9987/3").as_deref(), Some("default/r9987"));
    assert_eq!(hit(&newer, "/svc5007/12"), None);
    assert_eq!(hit(&newer, "/svc5007/ab").as_deref(), Some("default/r5007"));
    assert_eq!(hit(&newer, "/svc9987/3").as_deref(), Some("default/r9987"));
}

#[test]
fn header_regexes_of_kept_rules_are_not_compiled_again() {
    let with_header = |yaml: String| {
        yaml.replace(
            "- match: {path: ",
            "- match: {headers: [{name: x-v, regex: \"v[0-9]+\"}], path: ",
        )
    };
    let before = with_header(many_routes(2_000, |_| "api.example.com".into()));
    let after = before.replace("{prefix: /svc1000}", "{prefix: /svc1000b}");
    assert_ne!(before, after);
    let store = StateStore::default();
    let (old, n) = compilations(|| snapshot(&before, None, &store));
    // 2,000 header regexes and one regex set.
    assert_eq!(n, 2_001);
    let (new, n) = compilations(|| snapshot(&after, Some(&old), &store));
    assert_eq!(n, 1, "only the changed rule's header regex");
    assert_eq!(
        rebuilt_routes(&old, &new).0,
        vec!["default/r1000".to_string()]
    );
}

/// Two policies: a local rate limit with CORS, and an IP filter with a body limit.
const TWO_POLICIES: &str = r#"---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: limit}
spec:
  rateLimit: {requests: 100, per: 1s}
  cors: {allowOrigins: ["https://app.example.com"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: edge}
spec:
  ipFilter: {allow: ["10.0.0.0/8"]}
  requestLimits: {maxBodySize: 1MiB}
"#;

/// Even routes use `limit`, odd ones `edge`, every tenth both.
fn routes_with_policies(n: usize) -> String {
    let policies = |i: usize| match (i % 10, i % 2) {
        (0, _) => "      policies: [limit, edge]\n",
        (_, 0) => "      policies: [limit]\n",
        _ => "      policies: [edge]\n",
    };
    let mut yaml = many_routes_with(n, |_| "api.example.com".into(), |i| policies(i).into());
    yaml.push_str(TWO_POLICIES);
    yaml
}

#[test]
fn a_reload_changing_one_route_keeps_the_other_rules_with_policies_compiled() {
    let before = routes_with_policies(10_000);
    let after = before.replace("{prefix: /svc5001}", "{prefix: /svc5001b}");
    assert_ne!(before, after);
    let store = StateStore::default();
    let old = snapshot(&before, None, &store);
    let new = snapshot(&after, Some(&old), &store);
    let (rebuilt, kept) = rebuilt_routes(&old, &new);
    assert_eq!(rebuilt, vec!["default/r5001".to_string()]);
    assert_eq!(kept, 9_999);
    // The rebuilt rule and the kept ones still run their policy chains.
    let hit = |s: &Snapshot, path: &str| {
        let r = get("api.example.com", path);
        (s.router
            .lookup(&r.host, &r.method, &r.path, None, &r.headers))
        .cloned()
    };
    assert!(hit(&new, "/svc5001b/1").is_some_and(|e| e.target.has_policies()));
    assert!(hit(&new, "/svc4/1").is_some_and(|e| e.target.has_policies()));
}

/// An edit that adds lines (here to one rule) moves every rule below it in the file; moved rules
/// are still the same rules and are kept.
#[test]
fn a_reload_adding_lines_above_other_rules_rebuilds_only_the_edited_one() {
    let before = routes_with_policies(2_000);
    let after = before.replace(
        "    - match: {path: {prefix: /svc8}}\n",
        "    - match:\n        # two lines more\n        path: {prefix: /svc8b}\n",
    );
    assert_eq!(after.lines().count(), before.lines().count() + 2);
    let store = StateStore::default();
    let old = snapshot(&before, None, &store);
    let new = snapshot(&after, Some(&old), &store);
    let (rebuilt, kept) = rebuilt_routes(&old, &new);
    assert_eq!(rebuilt, vec!["default/r8".to_string()]);
    assert_eq!(kept, 1_999);
}

#[test]
fn a_changed_policy_rebuilds_exactly_the_rules_that_use_it() {
    let before = routes_with_policies(100);
    let after = before.replace("allow: [\"10.0.0.0/8\"]", "allow: [\"10.0.0.0/16\"]");
    assert_ne!(before, after);
    let store = StateStore::default();
    let old = snapshot(&before, None, &store);
    let new = snapshot(&after, Some(&old), &store);
    let (rebuilt, kept) = rebuilt_routes(&old, &new);
    // `edge` is on the odd routes and on every tenth.
    let mut want: Vec<String> = (0..100)
        .filter(|i| i % 2 == 1 || i % 10 == 0)
        .map(|i| format!("default/r{i}"))
        .collect();
    want.sort();
    assert_eq!(rebuilt, want);
    assert_eq!(kept, 100 - want.len());
}

#[test]
fn a_changed_redis_rebuilds_only_the_rules_with_a_global_limit() {
    // The store connects lazily: nothing listens on these ports, and nothing needs to.
    let gateway = |port: u16| {
        format!(
            r#"---
apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {{name: gw}}
spec:
  redis: {{url: "redis://127.0.0.1:{port}"}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {{name: global}}
spec:
  rateLimit: {{requests: 100, per: 1s, scope: global}}
"#
        )
    };
    let policies = |i: usize| match i % 3 {
        0 => "      policies: [global]\n",
        _ => "      policies: [limit]\n",
    };
    let routes = many_routes_with(30, |_| "api.example.com".into(), |i| policies(i).into());
    let before = format!("{routes}{TWO_POLICIES}{}", gateway(1));
    let after = format!("{routes}{TWO_POLICIES}{}", gateway(2));
    let store = StateStore::default();
    let old = snapshot(&before, None, &store);
    let new = snapshot(&after, Some(&old), &store);
    let (rebuilt, kept) = rebuilt_routes(&old, &new);
    let mut want: Vec<String> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("default/r{i}"))
        .collect();
    want.sort();
    assert_eq!(rebuilt, want);
    assert_eq!(kept, 20);
}

#[test]
fn a_changed_backend_rebuilds_the_rules_that_forward_to_it() {
    let before = many_routes(50, |_| "api.example.com".into());
    let after = before.replace("127.0.0.1:1", "127.0.0.1:2");
    let store = StateStore::default();
    let old = snapshot(&before, None, &store);
    let new = snapshot(&after, Some(&old), &store);
    assert!(!Arc::ptr_eq(&old.backends[0], &new.backends[0]));
    for e in new.router.entries() {
        assert!(Arc::ptr_eq(&e.target.choices[0].backend, &new.backends[0]));
    }
}

#[tokio::test]
async fn routes_endpoint_filters_by_host_and_path_and_pages() {
    let up = Upstream::start("up").await;
    let mut yaml = format!(
        r#"kind: Gateway
metadata: {{name: g}}
spec: {{accessLog: {{enabled: false}}}}
---
kind: Listener
metadata: {{name: web}}
spec: {{address: "127.0.0.1:0", protocol: HTTP}}
---
kind: Backend
metadata: {{name: b}}
spec: {{endpoints: ["{}"]}}
"#,
        up.addr
    );
    yaml.push_str(&many_routes(1_000, |i| format!("h{}.example.com", i % 10)).replace(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n---\n",
        "---\n",
    ));
    let gw = TestGateway::start(&yaml).await;
    let admin = format!("http://{}", gw.admin);
    let c = Client::new();
    let page = |q: &'static str| {
        let (c, admin) = (&c, &admin);
        async move { c.get(&format!("{admin}/routes{q}"), &[]).await.unwrap() }
    };
    let all = page("").await.json();
    assert_eq!(all["total"], 1_000);
    assert_eq!(all["routes"].as_array().unwrap().len(), 1_000);
    let some = page("?host=h3.example.com&limit=10&offset=95").await.json();
    assert_eq!(some["total"], 100);
    let rows = some["routes"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["host"] == "h3.example.com"));
    assert_eq!(rows[0]["rule"], all_row_rule(&all, "h3.example.com", 95));
    let by_path = page("?path=/svc99").await.json();
    let rules: Vec<_> = by_path["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].clone())
        .collect();
    assert_eq!(rules.len(), 11, "/svc99 and /svc990../svc999: {rules:?}");
    assert_eq!(page("?limit=ten").await.status, 400);
    assert_eq!(page("?hots=x").await.status, 400);
}

/// The `n`th row of `host` in a full table.
fn all_row_rule(all: &serde_json::Value, host: &str, n: usize) -> serde_json::Value {
    all["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["host"] == host)
        .nth(n)
        .unwrap()["rule"]
        .clone()
}
