//! The effective config written back as manifests (what `GET /config` shows): manifest field
//! names, durations as `5s` strings, wildcard hosts as written, and text that loads again into the
//! same config.

use gatehouse_config::{load_path, load_sources, Config, SourceFile};
use serde_json::Value;
use std::path::Path;

const RICH: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web, namespace: shop}
spec: {address: "127.0.0.1:8080", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: up, namespace: shop}
spec: {endpoints: ["127.0.0.1:9001"], loadBalancer: {policy: Random}, timeouts: {connect: 5s}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: checked, namespace: shop}
spec:
  endpoints: ["127.0.0.1:9002"]
  healthCheck: {http: {path: /healthz, expectedStatuses: ["200-299", "418"]}, interval: 2s, timeout: 500ms}
  outlierDetection: {consecutiveErrors: 3, baseEjectionTime: 10s, maxEjectionPercent: 30%}
  panicThreshold: 25%
  slowStart: 20s
  circuitBreaker: {maxRequests: 100, maxRetries: 5}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: users, namespace: shop}
spec:
  endpoints: ["127.0.0.1:9002", "127.0.0.1:9003"]
  loadBalancer:
    policy: ConsistentHash
    hashOn: {header: X-User-Id}
    sticky: {cookie: {ttl: 90m}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: shop, namespace: shop}
spec:
  hosts: ["*.shop.local", "shop.example.com"]
  rules:
    - match: {path: {exact: /cache}, methods: [GET], extensionMethods: [PURGE]}
      backends: [{backend: up}]
      rewrite: {pathPrefix: /c, host: "cache.internal:8080"}
      requestHeaders: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
    - match: {path: {regex: "/v1/(.*)"}, headers: [{name: x-env, regex: "st.*"}]}
      rewrite: {pathRegex: {pattern: "^/v1/(.*)$", substitution: "/v2/$1"}}
      backends: [{backend: up, weight: 3}]
      timeout: 1m30s
      retry: {attempts: 3, on: [reset, "503"], perTryTimeout: 1s, maxBodySize: 1MiB}
    - match: {path: {prefix: /old}}
      redirect: {scheme: https, host: new.example.com, port: 8443, path: /new, statusCode: 301}
    - match: {path: {prefix: /gone}}
      directResponse: {status: 410, body: gone}
"#;

fn load(name: &str, text: &str) -> Config {
    load_sources(&[SourceFile {
        name: name.into(),
        text: text.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The manifests as one YAML stream of JSON documents (JSON being YAML).
fn as_text(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn manifests_use_the_manifest_field_names() {
    let docs = load("rich.yaml", RICH).to_manifests();
    let text = as_text(&docs);
    for internal in [
        "connectTimeout",
        "lbPolicy",
        "adminAddress",
        "\".shop.local\"",
    ] {
        assert!(!text.contains(internal), "`{internal}` in\n{text}");
    }
    assert_eq!(docs[0]["kind"], "Gateway");
    assert_eq!(docs[0]["spec"]["admin"]["address"], "127.0.0.1:9901");
    assert_eq!(docs[0]["spec"]["drainTimeout"], "30s");
    let backend = &docs[2];
    assert_eq!(backend["apiVersion"], "gatehouse.dev/v1alpha1");
    assert_eq!(backend["metadata"]["namespace"], "shop");
    assert_eq!(backend["spec"]["timeouts"]["connect"], "5s");
    assert_eq!(backend["spec"]["loadBalancer"]["policy"], "Random");
    let checked = &docs[3]["spec"];
    assert_eq!(checked["healthCheck"]["http"]["expectedStatuses"][1], "418");
    assert_eq!(checked["outlierDetection"]["maxEjectionPercent"], "30%");
    assert_eq!(checked["slowStart"], "20s");
    // Not below the kernel's first SYN retransmission (1 s), as Envoy's.
    assert_eq!(checked["timeouts"]["connect"], "5s", "the default");
    assert_eq!(backend["spec"]["loadBalancer"].get("hashOn"), None);
    let hashed = &docs[4]["spec"]["loadBalancer"];
    assert_eq!(hashed["policy"], "ConsistentHash");
    assert_eq!(hashed["hashOn"]["header"], "x-user-id");
    assert_eq!(hashed["sticky"]["cookie"]["name"], "gh-affinity");
    assert_eq!(hashed["sticky"]["cookie"]["ttl"], "90m");
    let route = &docs[5]["spec"];
    assert_eq!(route["hosts"][0], "*.shop.local");
    assert_eq!(route["rules"][0]["match"]["extensionMethods"][0], "PURGE");
    assert_eq!(route["rules"][0]["rewrite"]["host"], "cache.internal:8080");
    assert_eq!(route["rules"][1]["timeout"], "90s");
    let retry = &route["rules"][1]["retry"];
    assert_eq!(retry["on"], serde_json::json!(["reset", "503"]));
    assert_eq!(retry["perTryTimeout"], "1s");
    assert_eq!(retry["maxBodySize"], "1MiB");
    assert_eq!(retry["budget"]["percent"], "20%");
    assert_eq!(retry["methods"][0], "GET");
    assert_eq!(checked["circuitBreaker"]["maxRequests"], 100);
    assert_eq!(checked["circuitBreaker"]["maxConnections"], 1024);
    assert_eq!(route["rules"][2]["redirect"]["port"], 8443);
}

#[test]
fn manifests_load_back_into_the_same_config() {
    let valid = load_path(Path::new("tests/golden/valid/input")).unwrap();
    for config in [load("rich.yaml", RICH), valid] {
        let first = config.to_manifests();
        let again = load("pasted.yaml", &as_text(&first)).to_manifests();
        assert_eq!(first, again, "{}", as_text(&first));
    }
}

const DISCOVERY: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: by-dns, namespace: shop}
spec:
  discovery: {dns: {name: tasks.internal, port: 8080, resolver: "127.0.0.1", maxTtl: 1m}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: by-srv, namespace: shop}
spec:
  discovery: {dns: {srv: _http._tcp.tasks.internal}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: by-file, namespace: shop}
spec:
  discovery: {file: {path: endpoints/tasks.yaml}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: by-etcd, namespace: shop}
spec:
  discovery: {etcd: {endpoints: ["http://127.0.0.1:2379"], prefix: /services/tasks/}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: by-kube, namespace: shop}
spec:
  discovery: {kubernetes: {service: tasks, port: http}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: by-registration, namespace: shop}
spec:
  discovery: {registration: {}}
"#;

#[test]
fn discovery_shows_its_provider_with_defaults_and_loads_back() {
    let config = load("discovery.yaml", DISCOVERY);
    let docs = config.to_manifests();
    let spec = |i: usize| &docs[i + 1]["spec"];
    assert!(spec(0).get("endpoints").is_none(), "{}", spec(0));
    let dns = &spec(0)["discovery"]["dns"];
    assert_eq!(dns["resolver"], "127.0.0.1:53");
    assert_eq!(dns["minTtl"], "1s");
    assert_eq!(dns["maxTtl"], "1m");
    assert_eq!(
        spec(1)["discovery"]["dns"]["srv"],
        "_http._tcp.tasks.internal"
    );
    assert_eq!(spec(2)["discovery"]["file"]["path"], "endpoints/tasks.yaml");
    assert_eq!(spec(3)["discovery"]["etcd"]["prefix"], "/services/tasks/");
    assert_eq!(spec(4)["discovery"]["kubernetes"]["namespace"], "shop");
    assert_eq!(spec(4)["discovery"]["kubernetes"]["port"], "http");
    assert_eq!(spec(5)["discovery"]["registration"]["ttl"], "30s");
    let again = load("discovery.yaml", &as_text(&docs)).to_manifests();
    assert_eq!(docs, again, "{}", as_text(&docs));
}

#[test]
fn policies_faults_and_redis_show_with_defaults_and_load_back() {
    let config = load_path(Path::new("tests/golden/policies-valid/input")).unwrap();
    let docs = config.to_manifests();
    assert_eq!(docs[0]["spec"]["redis"]["timeout"], "50ms");
    let rule = &docs[2]["spec"]["rules"][0];
    assert_eq!(rule["policies"][0], "shop/per-user-limit");
    assert_eq!(rule["policies"][1], "default/small-bodies");
    assert_eq!(rule["fault"]["delay"]["duration"], "2s");
    assert_eq!(rule["fault"]["abort"]["percent"], "0.5%");
    assert_eq!(rule["fault"]["whenHeader"], "x-fault");
    let limit = &docs[3]["spec"]["rateLimit"];
    assert_eq!(docs[3]["kind"], "Policy");
    assert_eq!(limit["scope"], "global");
    assert_eq!(limit["onStoreError"], "Deny");
    assert_eq!(limit["key"]["header"], "x-user-id");
    let defaults = &docs[4]["spec"];
    assert_eq!(defaults["rateLimit"]["burst"], 5);
    assert_eq!(defaults["rateLimit"]["key"]["clientAddress"], true);
    assert_eq!(defaults["rateLimit"]["scope"], "local");
    assert_eq!(defaults["rateLimit"]["onStoreError"], "Allow");
    assert_eq!(defaults["requestLimits"]["maxBodySize"], "10485760");
    let auth = &(docs.iter())
        .find(|d| d["metadata"]["name"] == "auth")
        .expect("the auth policy")["spec"];
    assert_eq!(auth["jwt"]["jwks"]["minRefreshInterval"], "30s");
    assert_eq!(auth["jwt"]["leeway"], "30s");
    assert_eq!(auth["jwt"]["forwardClaims"]["sub"], "x-user-id");
    assert_eq!(auth["jwt"]["from"][0]["prefix"], "Bearer ");
    assert_eq!(auth["apiKey"]["keys"][0]["consumer"], "acme");
    assert_eq!(auth["anyOf"][1], "apiKey");
    assert_eq!(auth["rateLimit"]["key"]["consumer"], true);
    assert!(auth["basicAuth"]["htpasswdFile"]
        .as_str()
        .is_some_and(|f| f.ends_with("users.htpasswd")));
    let again = load("policies.yaml", &as_text(&docs)).to_manifests();
    assert_eq!(docs, again, "{}", as_text(&docs));
}

const TLS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: secure}
spec:
  address: "127.0.0.1:8443"
  protocol: HTTPS
  tls:
    certificates: [{certFile: /certs/api.pem, keyFile: /certs/api-key.pem}]
    clientAuth: {caFile: /certs/clients-ca.pem, mode: Optional}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec:
  protocol: GRPC
  endpoints: ["127.0.0.1:9001"]
  tls: {caFile: /certs/ca.pem, serverName: tasks.internal, certFile: /certs/c.pem, keyFile: /certs/k.pem}
"#;

#[test]
fn client_auth_and_upstream_tls_show_and_load_back() {
    let config = load("tls.yaml", TLS);
    let docs = config.to_manifests();
    let text = as_text(&docs);
    let listener = docs.iter().find(|d| d["kind"] == "Listener").unwrap();
    let auth = &listener["spec"]["tls"]["clientAuth"];
    assert_eq!(auth["mode"], "Optional", "{text}");
    assert_eq!(auth["caFile"], "/certs/clients-ca.pem");
    let backend = docs.iter().find(|d| d["kind"] == "Backend").unwrap();
    assert_eq!(
        backend["spec"]["tls"]["serverName"], "tasks.internal",
        "{text}"
    );
    assert_eq!(backend["spec"]["tls"]["keyFile"], "/certs/k.pem");
    let again = load("pasted.yaml", &text).to_manifests();
    assert_eq!(docs, again, "{text}");
}

#[test]
fn edge_sections_show_with_defaults_and_load_back() {
    let config = load(
        "edge.yaml",
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: edge}
spec:
  ipFilter: {allow: [10.0.0.0/8], deny: [10.6.6.6]}
  cors: {allowOrigins: ["https://app.example.com"], allowCredentials: true, maxAge: 10m}
  externalAuth: {url: "http://127.0.0.1:7000/check", cache: {ttl: 30s}, body: {maxSize: 8KiB}}
"#,
    );
    let docs = config.to_manifests();
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "Policy")
        .expect("the policy");
    let spec = &policy["spec"];
    assert_eq!(spec["ipFilter"]["deny"][0], "10.6.6.6/32");
    assert_eq!(spec["cors"]["allowMethods"][1], "HEAD");
    assert_eq!(spec["cors"]["maxAge"], "10m");
    assert_eq!(spec["externalAuth"]["timeout"], "200ms");
    assert_eq!(spec["externalAuth"]["headers"][0], "authorization");
    assert_eq!(spec["externalAuth"]["cache"]["maxEntries"], 10000);
    assert_eq!(spec["externalAuth"]["failureMode"], "Deny");
    assert_eq!(spec["externalAuth"]["body"]["maxSize"], "8192");
    assert_eq!(spec["externalAuth"]["body"]["allowPartial"], false);
    let again = load("edge.yaml", &as_text(&docs)).to_manifests();
    assert_eq!(docs, again, "{}", as_text(&docs));
}

const ROLLOUTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks, namespace: team-tasks}
spec: {endpoints: ["127.0.0.1:9001"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks-canary, namespace: team-tasks}
spec: {endpoints: ["127.0.0.1:9002"]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: tasks-v1, namespace: team-tasks}
spec:
  rules:
    - match: {path: {prefix: /v1/tasks}}
      backends: [{backend: tasks}]
    - match: {path: {prefix: /v1/lists}}
      backends: [{backend: tasks}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Rollout
metadata: {name: by-steps, namespace: team-tasks}
spec:
  route: tasks-v1
  stable: tasks
  canary: tasks-canary
  startTime: "2026-12-01T09:00:00Z"
  steps: [{weight: 5, pause: 10m}, {weight: 25, pause: 30m}, {weight: 100}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: Rollout
metadata: {name: by-ramp, namespace: team-tasks}
spec:
  route: tasks-v1
  rule: 1
  stable: tasks
  canary: tasks-canary
  startTime: "2026-12-01T09:00:00.250Z"
  ramp: {from: 5%, to: 100%, over: 24h, every: 10m}
  analysis: {interval: 30s, maxErrorRate: 0.5%, maxP99Ratio: 2, minRequests: 50}
"#;

#[test]
fn rollouts_show_with_defaults_and_load_back_into_equal_rollouts() {
    let config = load("rollouts.yaml", ROLLOUTS);
    let docs = config.to_manifests();
    let steps = &docs[4]["spec"];
    assert_eq!(docs[4]["kind"], "Rollout");
    assert_eq!(steps["route"], "team-tasks/tasks-v1");
    assert_eq!(steps["steps"][2]["pause"], "0s");
    assert_eq!(steps["analysis"]["interval"], "1m");
    assert_eq!(steps["analysis"]["maxErrorRate"], "1%");
    assert_eq!(steps["analysis"]["minRequests"], 100);
    let ramp = &docs[5]["spec"];
    assert_eq!(ramp["startTime"], "2026-12-01T09:00:00.250Z");
    assert_eq!(ramp["ramp"]["every"], "10m");
    assert_eq!(ramp["analysis"]["maxErrorRate"], "0.5%");
    let again = load("pasted.yaml", &as_text(&docs));
    // Equal Rollouts: a replica loading what another shows keeps the same schedule.
    assert_eq!(config.rollouts, again.rollouts);
}
