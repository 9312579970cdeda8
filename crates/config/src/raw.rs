//! Config flow, step 3: the manifests exactly as written (the `spec` of each kind).
//!
//! Values that need checking beyond their YAML type (durations, addresses, regexes, references) stay
//! strings here; `validate` turns them into the model and collects every error.

use serde::Deserialize;
use std::collections::BTreeMap;

mod edge;
pub use edge::*;
mod policy;
pub use policy::*;
mod traffic;
pub use traffic::*;
mod tls;
pub use tls::*;
mod rollout;
pub use rollout::*;
mod release;
pub use release::*;

/// `metadata` of any document.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    // Accepted so manifests shared with kubectl tooling validate; nothing reads them yet.
    #[allow(dead_code)]
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[allow(dead_code)]
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub admin: Option<AdminSpec>,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub access_log: Option<AccessLogSpec>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub drain_timeout: Option<String>,
    #[serde(default)]
    pub portal: Option<PortalSpec>,
    #[serde(default)]
    pub stream_drain_timeout: Option<String>,
    #[serde(default)]
    pub redis: Option<RedisSpec>,
}

/// `Gateway.spec.portal`: exactly one of `address` and `pathPrefix` (checked in validation).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct PortalSpec {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdminSpec {
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogSpec {
    #[serde(default)]
    pub enabled: Option<bool>,
    // JSON is the only format; the field exists so configs can say so explicitly.
    #[allow(dead_code)]
    #[serde(default)]
    pub format: Option<LogFormat>,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    pub address: String,
    pub protocol: ListenerProtocol,
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    #[serde(default)]
    pub timeouts: Option<ListenerTimeouts>,
    #[serde(default)]
    pub paths: Option<ListenerPaths>,
    #[serde(default)]
    pub limits: Option<ListenerLimits>,
    #[serde(default)]
    pub backend: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerPaths {
    #[serde(default)]
    pub escaped_slashes: Option<crate::model::EscapedSlashes>,
}

/// A listener's protocol: HTTP ones serve requests, `TCP` and `TLS` pass connections through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    HTTP,
    HTTPS,
    TCP,
    TLS,
}

impl<'de> Deserialize<'de> for ListenerProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "HTTP" => Ok(ListenerProtocol::HTTP),
            "HTTPS" => Ok(ListenerProtocol::HTTPS),
            "TCP" => Ok(ListenerProtocol::TCP),
            "TLS" => Ok(ListenerProtocol::TLS),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value `{s}`, expected `HTTP`, `HTTPS`, `TCP` or `TLS`{}",
                crate::error::hint(&s, ["HTTP", "HTTPS", "TCP", "TLS"])
            ))),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    pub certificates: Vec<CertificateSpec>,
    #[serde(default)]
    pub client_auth: Option<ClientAuthSpec>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTimeouts {
    #[serde(default)]
    pub idle: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenerLimits {
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub max_request_headers_size: Option<String>,
    #[serde(default)]
    pub max_uri_length: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct BackendSpec {
    #[serde(default)]
    pub protocol: Option<BackendProtocol>,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    #[serde(default)]
    // Boxed: five providers inline would make every `Spec` as large as a backend with all of them.
    pub discovery: Option<Box<DiscoverySpec>>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSpec>,
    #[serde(default)]
    pub timeouts: Option<BackendTimeouts>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetectionSpec>,
    #[serde(default)]
    pub panic_threshold: Option<String>,
    #[serde(default)]
    pub slow_start: Option<String>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    #[serde(default)]
    pub tls: Option<UpstreamTlsSpec>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendProtocol {
    HTTP1,
    HTTP2,
    GRPC,
}

/// An endpoint is either `"host:port"` or `{address: "host:port", weight: 2}`.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub address: String,
    pub weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointFull {
    address: String,
    #[serde(default)]
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"host:port\" or {address, weight}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec {
                    address: v.to_string(),
                    weight: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EndpointSpec, A::Error> {
                let e =
                    EndpointFull::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(EndpointSpec {
                    address: e.address,
                    weight: e.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `spec.discovery`: exactly one provider is set; `validate` says so when not.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverySpec {
    #[serde(default)]
    pub dns: Option<DnsSpec>,
    #[serde(default)]
    pub file: Option<FileDiscoverySpec>,
    #[serde(default)]
    pub etcd: Option<EtcdSpec>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
    #[serde(default)]
    pub registration: Option<RegistrationSpec>,
}

/// `dns`: either `name` + `port` (A/AAAA) or `srv`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub srv: Option<String>,
    #[serde(default)]
    pub resolver: Option<String>,
    #[serde(default)]
    pub min_ttl: Option<String>,
    #[serde(default)]
    pub max_ttl: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileDiscoverySpec {
    pub path: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    pub endpoints: Vec<String>,
    pub prefix: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSpec {
    pub service: String,
    /// A port name (`http`) or number; kept as text so both read the same.
    pub port: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationSpec {
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    #[serde(default)]
    pub policy: Option<LbPolicy>,
    #[serde(default)]
    pub hash_on: Option<HashOnSpec>,
    #[serde(default)]
    pub sticky: Option<StickySpec>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    LeastRequest,
    ConsistentHash,
}

/// Exactly one key kind; `validate` checks that, so every mistake is reported with the others.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct HashOnSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub client_address: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct StickySpec {
    pub cookie: StickyCookieSpec,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct StickyCookieSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendTimeouts {
    #[serde(default)]
    pub connect: Option<String>,
    #[serde(default)]
    pub idle: Option<String>,
    #[serde(default)]
    pub read: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub openapi: Option<crate::openapi::OpenApiSpec>,
}

/// A rule as written. What few rules use is boxed: a rule is read for each of 10,000 routes, and
/// inline it was ~1.1 KB, most of it empty options.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    #[serde(default, rename = "match")]
    pub matches: Option<MatchSpec>,
    #[serde(default)]
    pub openapi: Option<Box<crate::openapi::OpenApiSpec>>,
    #[serde(default)]
    pub backends: Vec<WeightedBackendSpec>,
    #[serde(default)]
    pub redirect: Option<Box<RedirectSpec>>,
    #[serde(default)]
    pub direct_response: Option<Box<DirectResponseSpec>>,
    #[serde(default)]
    pub rewrite: Option<Box<RewriteSpec>>,
    #[serde(default)]
    pub request_headers: Option<Box<HeaderModsSpec>>,
    #[serde(default)]
    pub response_headers: Option<Box<HeaderModsSpec>>,
    #[serde(default)]
    pub timeout: Option<String>,
    pub fault: Option<Box<FaultSpec>>,
    #[serde(default)]
    pub policies: Vec<String>,
    pub retry: Option<Box<RetrySpec>>,
    /// Whether requests asking to switch protocols (WebSocket) are passed on as upgrades.
    #[serde(default)]
    pub upgrades: Option<bool>,
    #[serde(default)]
    pub sticky_split: Option<Box<StickySplitSpec>>,
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
    #[serde(default)]
    pub mirror: Option<Box<MirrorSpec>>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct MatchSpec {
    #[serde(default)]
    pub path: Option<PathMatchSpec>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// Non-standard methods (`PURGE`), listed apart so that a typo in `methods` is an error.
    #[serde(default)]
    pub extension_methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<KeyValueMatchSpec>,
    #[serde(default)]
    pub query: Vec<KeyValueMatchSpec>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct PathMatchSpec {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyValueMatchSpec {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct WeightedBackendSpec {
    pub backend: String,
    #[serde(default)]
    pub weight: Option<u32>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedirectSpec {
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub status_code: Option<u16>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct DirectResponseSpec {
    pub status: u16,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RewriteSpec {
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub path_regex: Option<RegexRewriteSpec>,
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegexRewriteSpec {
    pub pattern: String,
    pub substitution: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModsSpec {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    #[serde(default)]
    pub http: Option<HttpProbeSpec>,
    #[serde(default)]
    pub tcp: Option<TcpProbeSpec>,
    #[serde(default)]
    pub grpc: Option<GrpcProbeSpec>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbeSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub expected_statuses: Option<Vec<String>>,
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbeSpec {}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrpcProbeSpec {
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetectionSpec {
    #[serde(default)]
    pub consecutive_errors: Option<u32>,
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    #[serde(default)]
    pub max_ejection_percent: Option<String>,
}
