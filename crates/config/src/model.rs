//! Config flow, step 4 (output): the validated model the gateway builds its snapshot from.
//!
//! Everything here has been checked: addresses parse, references resolve, regexes compile. The gateway
//! never re-validates; it only compiles this into runtime structures.

use crate::yaml::Mark;
use ipnet::IpNet;
use serde::{Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
mod pattern;
pub use pattern::*;

/// The whole validated configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Content hash of every loaded file, so replicas with the same files report the same version.
    pub version: String,
    /// The files it came from, in load order.
    pub sources: Vec<String>,
    /// Process-wide settings.
    pub gateway: GatewaySettings,
    /// Listeners, in load order.
    pub listeners: Vec<Listener>,
    /// Backends, in load order.
    pub backends: Vec<Backend>,
    /// Routes, in load order.
    pub routes: Vec<Route>,
    /// Policies, in load order.
    pub policies: Vec<Policy>,
    /// Rollouts, in load order.
    pub rollouts: Vec<Rollout>,
}

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// Namespace, `default` when not written.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectId {
    /// Appends `namespace/name`, as `Display` writes it, without the formatting machinery: a
    /// load or reload names each of 10,000 objects this way.
    pub fn push_to(&self, out: &mut String) {
        out.reserve(self.namespace.len() + 1 + self.name.len());
        out.push_str(&self.namespace);
        out.push('/');
        out.push_str(&self.name);
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where an object or rule was defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// File.
    pub file: Arc<str>,
    /// Line.
    pub line: usize,
    /// Column.
    pub col: usize,
}

impl Source {
    pub(crate) fn new(file: &Arc<str>, mark: Mark) -> Self {
        Source {
            file: file.clone(),
            line: mark.line,
            col: mark.col,
        }
    }

    /// The position as a mark.
    pub fn mark(&self) -> Mark {
        Mark {
            line: self.line,
            col: self.col,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::units::DisplayDuration(*d))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_nets<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|n| n.to_string()))
}

/// The `Gateway` kind.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySettings {
    /// The Gateway document's identity; `None` when the config has no Gateway.
    pub id: Option<ObjectId>,
    /// Admin listener address.
    #[serde(serialize_with = "ser_display")]
    pub admin_address: SocketAddr,
    /// Worker threads; `None` means one per CPU.
    pub workers: Option<usize>,
    /// Access log settings.
    pub access_log: AccessLog,
    /// Peers whose `X-Forwarded-For` is believed.
    #[serde(serialize_with = "ser_nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// How long SIGTERM waits for in-flight requests.
    #[serde(serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
    /// The developer portal, when configured.
    pub portal: Option<crate::portal::Portal>,
    /// How long the open connections of a `TCP`/`TLS` listener that a reload removed may go on
    /// before they are closed (`streamDrainTimeout`).
    #[serde(serialize_with = "ser_duration")]
    pub stream_drain_timeout: Duration,
    /// The store of global rate limits.
    pub redis: Option<Redis>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            id: None,
            admin_address: SocketAddr::from(([127, 0, 0, 1], 9901)),
            workers: None,
            access_log: AccessLog {
                enabled: true,
                target: LogTarget::Stdout,
            },
            trusted_proxies: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            portal: None,
            stream_drain_timeout: Duration::from_secs(300),
            redis: None,
        }
    }
}

/// Access log settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLog {
    /// On or off.
    pub enabled: bool,
    /// Where lines go.
    pub target: LogTarget,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// Downstream protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c prior knowledge on one port.
    HTTP,
    /// TLS with ALPN h2 and http/1.1.
    HTTPS,
    /// Raw TCP: every connection is passed, byte for byte, to the listener's `backend`.
    TCP,
    /// TLS passthrough: the ClientHello's SNI picks the Route (by `hosts`) whose backend gets the
    /// connection, still encrypted.
    TLS,
}

impl ListenerProtocol {
    /// Whether connections are passed through as byte streams (no HTTP is parsed).
    pub fn is_stream(self) -> bool {
        matches!(self, ListenerProtocol::TCP | ListenerProtocol::TLS)
    }
}

/// The `Listener` kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Identity.
    pub id: ObjectId,
    /// Bind address.
    #[serde(serialize_with = "ser_display")]
    pub address: SocketAddr,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Certificates, for HTTPS.
    pub tls: Option<Tls>,
    /// A connection is closed when no request has been in flight on it, and none has started, for
    /// this long: it bounds idle keep-alive connections and slow request heads alike, and never
    /// cuts a request in flight.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// What the path normaliser does with `%2F` and `%5C` (`paths.escapedSlashes`).
    pub escaped_slashes: EscapedSlashes,
    /// What one client may make the listener hold.
    pub limits: ListenerLimits,
    /// The backend of a `TCP` listener.
    pub backend: Option<ObjectId>,
}

/// Per-listener bounds on what clients can make the gateway hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerLimits {
    /// Open connections at once; past it new connections are closed at accept.
    pub max_connections: u32,
    /// Bytes of a request head (request line and headers; the HPACK-decoded header list on
    /// HTTP/2); past it the answer is 431.
    pub max_request_headers_size: usize,
    /// Bytes of a request target (path and query); past it the answer is 414.
    pub max_uri_length: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 10_000,
            max_request_headers_size: 64 * 1024,
            max_uri_length: 8 * 1024,
        }
    }
}

/// How a listener treats an escaped slash (`%2F`) or backslash (`%5C`) in a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub enum EscapedSlashes {
    /// Answer 400: a backend that decodes it would see another path than the router did.
    #[default]
    Reject,
    /// Keep them escaped, as data inside one segment (never a separator for routing).
    Keep,
}

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Certificates, chosen by SNI; the first is the default.
    pub certificates: Vec<Certificate>,
    /// Client certificates asked for (mTLS), when configured.
    pub client_auth: Option<ClientAuth>,
}

/// A certificate chain and key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Chain file.
    pub cert_file: PathBuf,
    /// Private key file.
    pub key_file: PathBuf,
}

/// Upstream protocol of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BackendProtocol {
    /// HTTP/1.1 with keep-alive.
    HTTP1,
    /// HTTP/2 over cleartext (prior knowledge).
    HTTP2,
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LbPolicy {
    /// Weighted round robin.
    RoundRobin,
    /// Weighted random.
    Random,
    /// Fewest in-flight requests of two random choices.
    LeastRequest,
    /// Maglev consistent hashing on a request key (`Backend::hash_on`).
    ConsistentHash,
}

/// What a request is hashed on for `LbPolicy::ConsistentHash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HashOn {
    /// A request header's value; the name is lowercase.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
    /// The client's IP address (after trusted-proxy resolution).
    ClientAddress,
}

/// Session affinity: a cookie Gatehouse sets names the endpoint that served the first response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StickyCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie lifetime (`Max-Age`).
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
}

/// The `Backend` kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Identity.
    pub id: ObjectId,
    /// Upstream protocol.
    pub protocol: BackendProtocol,
    /// Static endpoints; empty when `discovery` provides them.
    pub endpoints: Vec<Endpoint>,
    /// Where the endpoints come from at run time, instead of `endpoints`.
    pub discovery: Option<Discovery>,
    /// Balancing policy.
    pub lb_policy: LbPolicy,
    /// The request key of `ConsistentHash`; `Some` exactly when the policy is `ConsistentHash`.
    pub hash_on: Option<HashOn>,
    /// Cookie-based affinity, with any policy.
    pub sticky: Option<StickyCookie>,
    /// TCP connect timeout.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Pooled idle upstream connections older than this are closed.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// The longest a response body may go without a byte from the upstream; zero: no limit.
    #[serde(serialize_with = "ser_duration")]
    pub read_timeout: Duration,
    /// Active health checking, when configured.
    pub health_check: Option<HealthCheck>,
    /// Passive outlier detection, when configured.
    pub outlier_detection: Option<OutlierDetection>,
    /// Below this percentage of available endpoints, balance over all of them (0 disables).
    pub panic_threshold: u32,
    /// A newly healthy endpoint's weight ramps up over this long.
    #[serde(serialize_with = "ser_opt_duration")]
    pub slow_start: Option<Duration>,
    /// Limits past which requests are refused at once, when configured.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// TLS to the endpoints, when configured.
    pub tls: Option<UpstreamTls>,
}

/// A discovery provider: where a backend's endpoint set comes from at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Discovery {
    /// A/AAAA records of `name`, every address with `port`, re-resolved on the records' TTL.
    Dns {
        /// The name to resolve.
        name: String,
        /// The port every address gets.
        port: u16,
        /// The DNS server to ask; `None` uses the system's resolver configuration.
        resolver: Option<SocketAddr>,
        /// Bounds of the re-resolution interval.
        ttl: TtlBounds,
    },
    /// SRV records of `name`: targets resolved to addresses, ports and weights from the records.
    Srv {
        /// The SRV name, such as `_http._tcp.tasks.internal`.
        name: String,
        /// The DNS server to ask; `None` uses the system's resolver configuration.
        resolver: Option<SocketAddr>,
        /// Bounds of the re-resolution interval.
        ttl: TtlBounds,
    },
    /// A YAML or JSON list like `endpoints`, watched.
    File {
        /// The file, relative paths already joined to the manifest's folder.
        path: PathBuf,
    },
    /// One etcd key per instance under `prefix`, each a JSON `{address, weight}`.
    Etcd {
        /// etcd client URLs (`http://127.0.0.1:2379`).
        endpoints: Vec<String>,
        /// The key prefix listed and watched.
        prefix: String,
    },
    /// The ready endpoints of a Kubernetes Service's EndpointSlices.
    Kubernetes {
        /// Service name.
        service: String,
        /// The Service port, by name or number.
        port: KubernetesPort,
        /// Namespace; the backend's own when not written.
        namespace: String,
    },
    /// Endpoints register themselves through the admin API and expire after `ttl` unless renewed.
    Registration {
        /// How long a registration lives without renewal.
        #[serde(serialize_with = "ser_duration")]
        ttl: Duration,
    },
}

/// How often DNS discovery re-resolves: the records' TTL, clamped to `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TtlBounds {
    /// Never re-resolve sooner than this (a TTL of 0 would otherwise mean a busy loop).
    #[serde(serialize_with = "ser_duration")]
    pub min: Duration,
    /// Never wait longer than this (a day-long TTL would hide changes for a day).
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds {
            min: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

/// A Kubernetes Service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KubernetesPort {
    /// By name (`http`).
    Name(String),
    /// By number.
    Number(u16),
}

/// One upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// `host:port`; a host name is resolved at connect time.
    pub address: String,
    /// Relative weight, at least 1.
    pub weight: u32,
}

/// The `Route` kind.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Identity.
    pub id: ObjectId,
    /// Hosts it serves; empty means any host.
    pub hosts: Vec<HostMatch>,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// The OpenAPI document describing the whole Route (`spec.openapi`).
    pub openapi: Option<crate::openapi::OpenApi>,
    /// Where it was defined.
    pub source: Source,
}

/// A host condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HostMatch {
    /// A whole host name, lowercase.
    Exact(String),
    /// `*.example.com`, kept as the suffix `.example.com`.
    Wildcard(String),
}

/// A path condition.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A segment-aware prefix: `/v1/tasks` matches `/v1/tasks` and `/v1/tasks/7`, not `/v1/tasks7`.
    Prefix(String),
    /// A regular expression matched against the whole path.
    Regex(Pattern),
}

/// A header or query parameter condition.
#[derive(Debug, Clone, Serialize)]
pub struct KeyValueMatch {
    /// Header name (lowercase) or query parameter name.
    pub name: String,
    /// How the value must look.
    pub value: ValueMatch,
}

/// How a header or query value must look.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueMatch {
    /// Present, any value.
    Present,
    /// Exactly this value.
    Exact(String),
    /// Whole value matches.
    Regex(Pattern),
}

/// One rule of a route.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Path condition.
    pub path: PathMatch,
    /// Methods; empty means any.
    pub methods: Vec<String>,
    /// Header conditions, all must hold.
    pub headers: Vec<KeyValueMatch>,
    /// Query conditions, all must hold.
    pub query: Vec<KeyValueMatch>,
    /// What to do.
    pub action: Action,
    /// Rewrites applied before forwarding.
    pub rewrite: Rewrite,
    /// The OpenAPI document describing the API behind this rule (`openapi`).
    pub openapi: Option<Box<crate::openapi::OpenApi>>,
    /// Header changes on the request sent upstream.
    pub request_headers: HeaderMods,
    /// Header changes on the response sent downstream.
    pub response_headers: HeaderMods,
    /// Time allowed for the whole request, retries included, until the upstream's response
    /// headers arrive.
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    /// Faults injected into its requests.
    pub fault: Option<Box<Fault>>,
    /// Policies, in the order written.
    pub policies: Vec<ObjectId>,
    /// Retry policy, when configured.
    pub retry: Option<Box<Retry>>,
    /// Whether an HTTP/1.1 `Upgrade` (a WebSocket handshake) is passed on to the backend and the
    /// connection tunnelled after a 101 (`upgrades`, default true); when false the request is
    /// forwarded without its `Upgrade`, as a plain request.
    pub upgrades: bool,
    /// Sticky split, overrides and mirror (`stickySplit`, `overrides`, `mirror`).
    #[serde(flatten)]
    pub release: Release,
    /// Where it was defined.
    pub source: Source,
}

impl Rule {
    /// Number of method, header and query conditions: more conditions win a tie on path.
    pub fn condition_count(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }

    /// Sort key among rules of the same host class; smaller wins. Exact path beats prefix (longer
    /// first) beats regex; then more conditions win. Ties keep load order (a stable sort).
    pub fn precedence(&self) -> (u8, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>) {
        use std::cmp::Reverse;
        let (class, len) = match &self.path {
            PathMatch::Exact(p) => (0, p.len()),
            PathMatch::Prefix(p) => (1, p.len()),
            PathMatch::Regex(_) => (2, 0),
        };
        (class, Reverse(len), Reverse(self.condition_count()))
    }
}

/// What a rule does with a request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Proxy to one of these backends, chosen by weight.
    Forward(Vec<WeightedBackend>),
    /// Answer with a redirect (boxed: an `Action` is as large as its largest variant).
    Redirect(Box<Redirect>),
    /// Answer with a fixed response.
    Direct(DirectResponse),
}

/// A backend and its share of a rule's traffic.
#[derive(Debug, Clone, Serialize)]
pub struct WeightedBackend {
    /// Resolved backend.
    pub backend: ObjectId,
    /// Relative weight; 0 takes no traffic.
    pub weight: u32,
}

/// A redirect; unset parts keep the request's own.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path.
    pub path: Option<String>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A fixed response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectResponse {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Content type of the body.
    pub content_type: String,
}

/// Rewrites of a forwarded request.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    /// Path rewrite (boxed: a regex rewrite is ~100 bytes, and few rules have one).
    pub path: Option<Box<PathRewrite>>,
    /// New `Host`.
    pub host: Option<String>,
}

/// A path rewrite.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathRewrite {
    /// Replace the matched prefix (prefix rules only).
    Prefix(String),
    /// Replace every match of the pattern with the substitution (`$1` refers to groups).
    Regex(Pattern, String),
}

/// Header changes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderMods {
    /// Replace or create these headers.
    pub set: Vec<(String, String)>,
    /// Append these headers.
    pub add: Vec<(String, String)>,
    /// Remove these headers (lowercase names).
    pub remove: Vec<String>,
}

impl HeaderMods {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A backend's active health check (`healthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// What one check does.
    pub probe: Probe,
    /// Time between rounds (each endpoint's first check is spread over it).
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Failures in a row that make an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Successes in a row that make it healthy again.
    pub healthy_threshold: u32,
}

/// One kind of health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    /// `GET path`; healthy when the status is in one of the ranges.
    Http {
        /// Request path.
        path: String,
        /// Inclusive status ranges.
        expected_statuses: Vec<(u16, u16)>,
        /// Host header; the endpoint address when absent.
        host: Option<String>,
    },
    /// A TCP connection that opens.
    Tcp,
    /// The gRPC health protocol (`grpc.health.v1.Health/Check`); healthy when SERVING.
    Grpc {
        /// Service name; empty asks about the server as a whole.
        service: String,
    },
}

/// Passive outlier detection (`outlierDetection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// 5xx answers or connect failures in a row that eject an endpoint.
    pub consecutive_errors: u32,
    /// First ejection time; the n-th ejection lasts n times this (capped at 10 times).
    #[serde(serialize_with = "ser_duration")]
    pub base_ejection_time: Duration,
    /// Never more than this percentage of the backend ejected at once.
    pub max_ejection_percent: u32,
}
