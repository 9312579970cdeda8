//! Config flow, the way back: the validated model written out as manifests (`apiVersion`, `kind`,
//! `metadata`, `spec` documents in the manifests' own field names, durations as `5s`), defaults
//! filled in. The admin API's `GET /config` shows this, so what an operator reads there can be
//! pasted back into a config directory.

use crate::model::*;
use crate::units::DisplayDuration;
use crate::API_VERSION;
use serde_json::{json, Map, Value};
use std::time::Duration;

mod policy;
mod rollout;
mod tls;
mod traffic;

impl Config {
    /// The effective configuration as manifest documents: the Gateway, then listeners, backends
    /// routes and policies in load order.
    pub fn to_manifests(&self) -> Vec<Value> {
        let mut docs = vec![gateway(&self.gateway)];
        docs.extend(self.listeners.iter().map(listener));
        docs.extend(self.backends.iter().map(backend));
        docs.extend(self.routes.iter().map(route));
        docs.extend(self.policies.iter().map(policy::policy));
        docs.extend(self.rollouts.iter().map(rollout::rollout));
        docs
    }
}

fn duration(d: Duration) -> Value {
    Value::String(DisplayDuration(d).to_string())
}

fn document(kind: &str, id: &ObjectId, spec: Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": id.name, "namespace": id.namespace},
        "spec": spec,
    })
}

/// `spec` fields with a value; `None` leaves the field out rather than writing `null`.
fn object(fields: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(map)
}

fn gateway(g: &GatewaySettings) -> Value {
    let path = match &g.access_log.target {
        LogTarget::Stdout => "stdout".to_string(),
        LogTarget::Stderr => "stderr".to_string(),
        LogTarget::File(p) => p.display().to_string(),
    };
    let id = g.id.clone().unwrap_or_else(|| ObjectId {
        namespace: "default".into(),
        name: "gateway".into(),
    });
    let spec = object([
        (
            "admin",
            Some(json!({"address": g.admin_address.to_string()})),
        ),
        ("workers", g.workers.map(Value::from)),
        (
            "accessLog",
            Some(json!({"enabled": g.access_log.enabled, "format": "json", "path": path})),
        ),
        (
            "trustedProxies",
            Some(g.trusted_proxies.iter().map(|n| n.to_string()).collect()),
        ),
        ("drainTimeout", Some(duration(g.drain_timeout))),
        ("portal", g.portal.as_ref().map(|p| p.to_manifest())),
        ("streamDrainTimeout", Some(duration(g.stream_drain_timeout))),
        ("redis", g.redis.as_ref().map(policy::redis)),
    ]);
    document("Gateway", &id, spec)
}

fn listener(l: &Listener) -> Value {
    let protocol = match l.protocol {
        ListenerProtocol::HTTP => "HTTP",
        ListenerProtocol::HTTPS => "HTTPS",
        ListenerProtocol::TCP => "TCP",
        ListenerProtocol::TLS => "TLS",
    };
    let tls = l.tls.as_ref().map(|t| {
        let certs: Vec<Value> = t
            .certificates
            .iter()
            .map(|c| {
                json!({
                    "certFile": c.cert_file.display().to_string(),
                    "keyFile": c.key_file.display().to_string(),
                })
            })
            .collect();
        let mut tls = json!({ "certificates": certs });
        if let Some(c) = &t.client_auth {
            tls["clientAuth"] = tls::client_auth(c);
        }
        tls
    });
    let spec = object([
        ("address", Some(Value::from(l.address.to_string()))),
        ("protocol", Some(Value::from(protocol))),
        ("tls", tls),
        (
            "backend",
            l.backend.as_ref().map(|b| Value::from(b.to_string())),
        ),
        ("timeouts", Some(json!({"idle": duration(l.idle_timeout)}))),
        (
            "paths",
            Some(json!({"escapedSlashes": format!("{:?}", l.escaped_slashes)})),
        ),
        (
            "limits",
            Some(json!({
                "maxConnections": l.limits.max_connections,
                "maxRequestHeadersSize": l.limits.max_request_headers_size,
                "maxUriLength": l.limits.max_uri_length,
            })),
        ),
    ]);
    document("Listener", &l.id, spec)
}

fn backend(b: &Backend) -> Value {
    let protocol = match b.protocol {
        BackendProtocol::HTTP1 => "HTTP1",
        BackendProtocol::HTTP2 => "HTTP2",
    };
    let policy = match b.lb_policy {
        LbPolicy::RoundRobin => "RoundRobin",
        LbPolicy::Random => "Random",
        LbPolicy::LeastRequest => "LeastRequest",
        LbPolicy::ConsistentHash => "ConsistentHash",
    };
    let hash_on = b.hash_on.as_ref().map(|h| match h {
        HashOn::Header(name) => json!({ "header": name }),
        HashOn::Cookie(name) => json!({ "cookie": name }),
        HashOn::Query(name) => json!({ "query": name }),
        HashOn::ClientAddress => json!({ "clientAddress": true }),
    });
    let sticky = b
        .sticky
        .as_ref()
        .map(|s| json!({"cookie": {"name": s.name, "ttl": duration(s.ttl)}}));
    let load_balancer = object([
        ("policy", Some(Value::from(policy))),
        ("hashOn", hash_on),
        ("sticky", sticky),
    ]);
    let endpoints: Vec<Value> = b
        .endpoints
        .iter()
        .map(|e| json!({"address": e.address, "weight": e.weight}))
        .collect();
    let mut spec = json!({
        "protocol": protocol,
        "loadBalancer": load_balancer,
        "timeouts": {
            "connect": duration(b.connect_timeout),
            "idle": duration(b.idle_timeout),
            "read": duration(b.read_timeout),
        },
        "panicThreshold": format!("{}%", b.panic_threshold),
    });
    // A backend has one or the other: showing `endpoints: []` beside `discovery` would not load.
    match &b.discovery {
        Some(d) => spec["discovery"] = discovery(d),
        None => spec["endpoints"] = json!(endpoints),
    }
    if let Some(h) = &b.health_check {
        spec["healthCheck"] = health_check(h);
    }
    if let Some(o) = &b.outlier_detection {
        spec["outlierDetection"] = json!({
            "consecutiveErrors": o.consecutive_errors,
            "baseEjectionTime": duration(o.base_ejection_time),
            "maxEjectionPercent": format!("{}%", o.max_ejection_percent),
        });
    }
    if let Some(d) = b.slow_start {
        spec["slowStart"] = duration(d);
    }
    if let Some(c) = &b.circuit_breaker {
        spec["circuitBreaker"] = traffic::circuit_breaker(c);
    }
    if let Some(t) = &b.tls {
        spec["tls"] = tls::upstream_tls(t);
    }
    document("Backend", &b.id, spec)
}

fn health_check(h: &HealthCheck) -> Value {
    let mut v = json!({
        "interval": duration(h.interval),
        "timeout": duration(h.timeout),
        "unhealthyThreshold": h.unhealthy_threshold,
        "healthyThreshold": h.healthy_threshold,
    });
    match &h.probe {
        Probe::Http {
            path,
            expected_statuses,
            host,
        } => {
            let statuses: Vec<String> = expected_statuses
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            v["http"] = json!({"path": path, "expectedStatuses": statuses});
            if let Some(host) = host {
                v["http"]["host"] = json!(host);
            }
        }
        Probe::Tcp => v["tcp"] = json!({}),
        Probe::Grpc { service } => v["grpc"] = json!({"service": service}),
    }
    v
}

fn discovery(d: &Discovery) -> Value {
    let resolver = |r: &Option<std::net::SocketAddr>| r.map(|a| json!(a.to_string()));
    let ttls = |t: &TtlBounds| {
        [
            ("minTtl", Some(duration(t.min))),
            ("maxTtl", Some(duration(t.max))),
        ]
    };
    match d {
        Discovery::Dns {
            name,
            port,
            resolver: r,
            ttl,
        } => {
            let mut fields = vec![
                ("name", Some(json!(name))),
                ("port", Some(json!(port))),
                ("resolver", resolver(r)),
            ];
            fields.extend(ttls(ttl));
            json!({"dns": object(fields)})
        }
        Discovery::Srv {
            name,
            resolver: r,
            ttl,
        } => {
            let mut fields = vec![("srv", Some(json!(name))), ("resolver", resolver(r))];
            fields.extend(ttls(ttl));
            json!({"dns": object(fields)})
        }
        Discovery::File { path } => json!({"file": {"path": path.display().to_string()}}),
        Discovery::Etcd { endpoints, prefix } => {
            json!({"etcd": {"endpoints": endpoints, "prefix": prefix}})
        }
        Discovery::Kubernetes {
            service,
            port,
            namespace,
        } => json!({"kubernetes": {"service": service, "port": port, "namespace": namespace}}),
        Discovery::Registration { ttl } => json!({"registration": {"ttl": duration(*ttl)}}),
    }
}

fn route(r: &Route) -> Value {
    let hosts: Vec<Value> = r
        .hosts
        .iter()
        .map(|h| match h {
            HostMatch::Exact(h) => Value::from(h.as_str()),
            // Kept as the suffix `.example.com` for matching; written as the manifest writes it.
            HostMatch::Wildcard(suffix) => Value::from(format!("*{suffix}")),
        })
        .collect();
    let rules: Vec<Value> = r.rules.iter().map(rule).collect();
    document("Route", &r.id, json!({"hosts": hosts, "rules": rules}))
}

fn key_values(list: &[KeyValueMatch]) -> Option<Value> {
    if list.is_empty() {
        return None;
    }
    let items = list
        .iter()
        .map(|kv| match &kv.value {
            ValueMatch::Present => json!({"name": kv.name}),
            ValueMatch::Exact(v) => json!({"name": kv.name, "value": v}),
            ValueMatch::Regex(p) => json!({"name": kv.name, "regex": p.1}),
        })
        .collect();
    Some(Value::Array(items))
}

fn matches(rule: &Rule) -> Value {
    let path = match &rule.path {
        PathMatch::Exact(p) => json!({"exact": p}),
        PathMatch::Prefix(p) => json!({"prefix": p}),
        PathMatch::Regex(p) => json!({"regex": p.1}),
    };
    let standard = |m: &&String| crate::validate::is_standard_method(m);
    let methods: Vec<&String> = rule.methods.iter().filter(standard).collect();
    let extension: Vec<&String> = rule.methods.iter().filter(|m| !standard(m)).collect();
    let list = |v: Vec<&String>| (!v.is_empty()).then(|| json!(v));
    object([
        ("path", Some(path)),
        ("methods", list(methods)),
        ("extensionMethods", list(extension)),
        ("headers", key_values(&rule.headers)),
        ("query", key_values(&rule.query)),
    ])
}

fn header_mods(h: &HeaderMods) -> Option<Value> {
    if h.is_empty() {
        return None;
    }
    let pairs = |v: &[(String, String)]| -> Value {
        Value::Object(
            v.iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect(),
        )
    };
    Some(json!({"set": pairs(&h.set), "add": pairs(&h.add), "remove": h.remove}))
}

fn rule(rule: &Rule) -> Value {
    let (key, action) = match &rule.action {
        Action::Forward(list) => {
            let backends: Vec<Value> = list
                .iter()
                .map(|b| json!({"backend": b.backend.to_string(), "weight": b.weight}))
                .collect();
            ("backends", Value::Array(backends))
        }
        Action::Redirect(r) => (
            "redirect",
            object([
                ("scheme", r.scheme.clone().map(Value::from)),
                ("host", r.host.clone().map(Value::from)),
                ("port", r.port.map(Value::from)),
                ("path", r.path.clone().map(Value::from)),
                ("statusCode", Some(Value::from(r.status))),
            ]),
        ),
        Action::Direct(d) => (
            "directResponse",
            json!({"status": d.status, "body": d.body, "contentType": d.content_type}),
        ),
    };
    let rewrite = (rule.rewrite.path.is_some() || rule.rewrite.host.is_some()).then(|| {
        let path = rule.rewrite.path.as_deref().map(|p| match p {
            PathRewrite::Prefix(p) => ("pathPrefix", Value::from(p.as_str())),
            PathRewrite::Regex(re, sub) => {
                ("pathRegex", json!({"pattern": re.1, "substitution": sub}))
            }
        });
        let mut fields = vec![];
        if let Some((k, v)) = path {
            fields.push((k, Some(v)));
        }
        fields.push(("host", rule.rewrite.host.clone().map(Value::from)));
        object(fields)
    });
    object([
        ("match", Some(matches(rule))),
        (key, Some(action)),
        ("rewrite", rewrite),
        ("requestHeaders", header_mods(&rule.request_headers)),
        ("responseHeaders", header_mods(&rule.response_headers)),
        ("timeout", rule.timeout.map(duration)),
        ("fault", rule.fault.as_deref().map(policy::fault)),
        ("policies", policy::policies(rule)),
        ("retry", rule.retry.as_deref().map(traffic::retry)),
        ("upgrades", (!rule.upgrades).then_some(Value::Bool(false))),
    ])
}
