//! Config flow, step 4: typed objects -> the validated model. Every check that fails adds an error
//! and validation goes on, so one run reports everything.

use crate::error::{hint, ConfigError};
use crate::loader::{Ctx, Object, Spec};
use crate::model::*;
use crate::raw;
use crate::units::{parse_duration, parse_size};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

mod auth;
pub use auth::parse_sha256;
mod discovery;
mod edge;
mod health;
mod listener;
use listener::listener;
mod conditions;
mod lb;
mod policy;
mod portal;
mod release;
mod rollout;
mod tls;
mod traffic;
mod values;
use conditions::{header_mods, kv_matches, redirect};

pub use discovery::parse_endpoints_file;

/// Whether `method` is one of the standard methods (which go in `methods`, not `extensionMethods`).
pub(crate) fn is_standard_method(method: &str) -> bool {
    values::STANDARD_METHODS.contains(&method)
}

struct V<'e> {
    errors: &'e mut Vec<ConfigError>,
    /// The OpenAPI documents routes name, each read once per load (10,000 routes may share one).
    openapi: &'e mut crate::openapi::Documents,
}

impl V<'_> {
    fn duration(
        &mut self,
        ctx: &Ctx,
        path: &str,
        v: Option<&String>,
        default: Duration,
    ) -> Duration {
        match v.map(|s| parse_duration(s)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.errors.push(ctx.error(path, e));
                default
            }
        }
    }

    fn size(&mut self, ctx: &Ctx, path: &str, v: Option<&String>, default: usize) -> usize {
        match v.map(|s| parse_size(s)) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.errors.push(ctx.error(path, e));
                default
            }
        }
    }

    fn socket_addr(&mut self, ctx: &Ctx, path: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.errors.push(ctx.error(
                    path,
                    format!("invalid address `{s}`: expected IP:port such as `127.0.0.1:8080` or `[::1]:8080`"),
                ));
                None
            }
        }
    }

    fn regex(&mut self, ctx: &Ctx, path: &str, pattern: &str, anchored: bool) -> Option<Pattern> {
        let full = if anchored {
            format!("^(?:{pattern})$")
        } else {
            pattern.to_string()
        };
        // A syntax check is all `check` needs and costs a fraction of a compilation; the
        // compiled form is built once, when a route table first uses it.
        let checked = if crate::model::needs_compiling(pattern) {
            regex::Regex::new(&full)
                .map(crate::model::LazyRegex::compiled)
                .map_err(|e| e.to_string())
        } else {
            crate::model::check_syntax(&full).map(|()| crate::model::LazyRegex::new(full))
        };
        match checked {
            Ok(r) => Some(Pattern(r, pattern.to_string())),
            Err(detail) => {
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                self.errors
                    .push(ctx.error(path, format!("invalid regex `{pattern}`: {last}")));
                None
            }
        }
    }
}

/// Validates every object into the model; the model is only usable when no error was added.
pub(crate) fn validate(
    objects: Vec<Object>,
    declared: &[(&'static str, ObjectId)],
    errors: &mut Vec<ConfigError>,
    openapi: &mut crate::openapi::Documents,
) -> Config {
    let mut v = V { errors, openapi };
    // Names are unique per kind and namespace.
    let mut seen: HashMap<(&str, &ObjectId), &Ctx> = HashMap::with_capacity(objects.len());
    for o in &objects {
        if let Some(first) = seen.get(&(o.spec.kind(), &o.id)) {
            let m = first.mark("metadata.name");
            v.errors.push(o.ctx.error(
                "metadata.name",
                format!(
                    "duplicate {} name `{}`, first defined at {}:{}",
                    o.spec.kind(),
                    o.id,
                    first.file,
                    m.line
                ),
            ));
        } else {
            seen.insert((o.spec.kind(), &o.id), &o.ctx);
        }
    }
    // Sorted for `binary_search`: every rule's backend reference is looked up here, and a linear
    // `contains` made 10,000 routes over 10,000 backends cost 10^8 comparisons.
    let ids_of = |kind: &str| -> Vec<&ObjectId> {
        let of_kind = declared.iter().filter(|(k, _)| *k == kind);
        let mut ids: Vec<&ObjectId> = of_kind.map(|(_, id)| id).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let refs = Refs {
        backends: ids_of("Backend"),
        policies: ids_of("Policy"),
        jwt_policies: {
            let of = |o: &'_ Object| matches!(&o.spec, Spec::Policy(p) if p.jwt.is_some());
            objects
                .iter()
                .filter(|o| of(o))
                .map(|o| o.id.clone())
                .collect()
        },
    };

    let mut config = Config {
        version: String::new(),
        sources: Vec::new(),
        gateway: GatewaySettings::default(),
        listeners: Vec::new(),
        backends: Vec::new(),
        routes: Vec::new(),
        policies: Vec::new(),
        rollouts: Vec::new(),
    };
    let routes = objects.iter().filter(|o| matches!(o.spec, Spec::Route(_)));
    config.routes.reserve_exact(routes.count());
    let mut gateway_seen: Option<&Ctx> = None;
    let mut addresses: HashMap<SocketAddr, &Ctx> = HashMap::new();
    for o in &objects {
        match &o.spec {
            Spec::Gateway(spec) => {
                if let Some(first) = gateway_seen {
                    v.errors.push(o.ctx.error(
                        "kind",
                        format!(
                            "at most one Gateway is allowed, first defined at {}:{}",
                            first.file, first.at.line
                        ),
                    ));
                    continue;
                }
                gateway_seen = Some(&o.ctx);
                config.gateway = gateway(&mut v, &o.ctx, spec);
                config.gateway.id = Some(o.id.clone());
            }
            Spec::Listener(spec) => {
                if let Some(l) = listener(&mut v, o, spec, &refs.backends) {
                    if let Some(first) = addresses.get(&l.address).filter(|_| l.address.port() != 0)
                    {
                        v.errors.push(o.ctx.error(
                            "spec.address",
                            format!("address {} is already used by {}", l.address, first.object),
                        ));
                    }
                    addresses.insert(l.address, &o.ctx);
                    config.listeners.push(l);
                }
            }
            Spec::Backend(spec) => config.backends.push(backend(&mut v, o, spec)),
            Spec::Route(spec) => config.routes.push(route(&mut v, o, spec, &refs)),
            Spec::Policy(spec) => config.policies.push(policy::policy(&mut v, o, spec)),
            Spec::Rollout(_) => {}
        }
    }
    if let Some(ctx) = gateway_seen {
        portal::address_conflicts(&mut v, ctx, &config, &addresses);
    }
    policy::check_global(&mut v, &objects, &config);
    config.rollouts = rollout::rollouts(&mut v, &objects, &refs.backends);
    config
}

fn gateway(v: &mut V, ctx: &Ctx, spec: &raw::GatewaySpec) -> GatewaySettings {
    let mut g = GatewaySettings::default();
    if let Some(addr) = spec.admin.as_ref().and_then(|a| a.address.as_ref()) {
        if let Some(a) = v.socket_addr(ctx, "spec.admin.address", addr) {
            g.admin_address = a;
        }
    }
    if let Some(w) = spec.workers {
        if w == 0 || w > 1024 {
            v.errors
                .push(ctx.error("spec.workers", "workers must be between 1 and 1024"));
        } else {
            g.workers = Some(w);
        }
    }
    if let Some(log) = &spec.access_log {
        g.access_log.enabled = log.enabled.unwrap_or(true);
        g.access_log.target = match log.path.as_deref() {
            None | Some("stdout") => LogTarget::Stdout,
            Some("stderr") => LogTarget::Stderr,
            Some("") => {
                v.errors.push(ctx.error(
                    "spec.accessLog.path",
                    "path must be `stdout`, `stderr` or a file",
                ));
                LogTarget::Stdout
            }
            Some(p) => LogTarget::File(relative_to_manifest(ctx, p)),
        };
    }
    for (i, net) in spec.trusted_proxies.iter().enumerate() {
        let parsed = net
            .parse::<ipnet::IpNet>()
            .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => g.trusted_proxies.push(n),
            Err(_) => v.errors.push(ctx.error(
                &format!("spec.trustedProxies[{i}]"),
                format!("invalid network `{net}`: expected a CIDR such as `10.0.0.0/8` or an IP address"),
            )),
        }
    }
    g.redis = spec.redis.as_ref().map(|r| policy::redis(v, ctx, r));
    g.drain_timeout = v.duration(
        ctx,
        "spec.drainTimeout",
        spec.drain_timeout.as_ref(),
        g.drain_timeout,
    );
    g.portal = spec.portal.as_ref().and_then(|p| portal::portal(v, ctx, p));
    g.stream_drain_timeout = v.duration(
        ctx,
        "spec.streamDrainTimeout",
        spec.stream_drain_timeout.as_ref(),
        g.stream_drain_timeout,
    );
    g
}

/// `p` as a path the process can open. Relative file paths (certificates, access log) are
/// relative to the manifest that names them, so a config directory can be moved or checked out
/// anywhere and started from any working directory.
pub(crate) fn relative_to_manifest(ctx: &Ctx, p: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(p);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::path::Path::new(&*ctx.file)
        .parent()
        .map(|base| base.join(path))
        .unwrap_or_else(|| path.to_path_buf())
}

fn backend(v: &mut V, o: &Object, spec: &raw::BackendSpec) -> Backend {
    let ctx = &o.ctx;
    let protocol = match spec.protocol.unwrap_or(raw::BackendProtocol::HTTP1) {
        raw::BackendProtocol::HTTP1 => BackendProtocol::HTTP1,
        raw::BackendProtocol::HTTP2 | raw::BackendProtocol::GRPC => BackendProtocol::HTTP2,
    };
    let discovery = match (&spec.discovery, spec.endpoints.is_empty()) {
        (None, true) => {
            v.errors.push(ctx.error(
                "spec",
                "a backend needs at least one entry in `endpoints`, or `discovery`",
            ));
            None
        }
        (Some(_), false) => {
            v.errors.push(ctx.error(
                "spec.discovery",
                "a backend takes `endpoints` or `discovery`, not both",
            ));
            None
        }
        (Some(d), true) => discovery::discovery(v, ctx, &o.id.namespace, d),
        (None, false) => None,
    };
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let path = format!("spec.endpoints[{i}]");
        let ok = match e.address.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
                    && (host.parse::<std::net::Ipv4Addr>().is_ok()
                        || (host.starts_with('[') && host.ends_with(']'))
                        || host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
            }
            None => false,
        };
        if !ok {
            v.errors.push(ctx.error(
                &path,
                format!("invalid endpoint `{}`: expected host:port such as `127.0.0.1:9001` or `tasks.internal:80`", e.address),
            ));
        }
        if e.weight == Some(0) {
            v.errors.push(ctx.error(
                &format!("{path}.weight"),
                "endpoint weight must be at least 1",
            ));
        }
        endpoints.push(Endpoint {
            address: e.address.clone(),
            weight: e.weight.unwrap_or(1).max(1),
        });
    }
    let timeouts = spec.timeouts.clone().unwrap_or_default();
    let health_check = v.health_check(
        ctx,
        spec.health_check.as_ref(),
        protocol == BackendProtocol::HTTP2,
    );
    let outlier_detection = v.outlier_detection(ctx, spec.outlier_detection.as_ref());
    let (panic_threshold, slow_start) = v.panic_and_slow_start(ctx, spec);
    let (lb_policy, hash_on, sticky) = lb::load_balancer(v, ctx, spec.load_balancer.as_ref());
    Backend {
        id: o.id.clone(),
        protocol,
        endpoints,
        lb_policy,
        hash_on,
        sticky,
        discovery,
        connect_timeout: v.duration(
            ctx,
            "spec.timeouts.connect",
            timeouts.connect.as_ref(),
            // Not below the kernel's first SYN retransmission (1 s): one dropped SYN must not fail
            // a request. Envoy's default.
            Duration::from_secs(5),
        ),
        idle_timeout: v.duration(
            ctx,
            "spec.timeouts.idle",
            timeouts.idle.as_ref(),
            Duration::from_secs(60),
        ),
        // Envoy's stream idle timeout rather than nginx's 60 s `proxy_read_timeout`: long polls,
        // server-sent events and gRPC server streams go quiet for minutes (gRPC keeps its
        // connection alive with HTTP/2 PINGs, which carry no data), and a minute is a common
        // reason operators raise nginx's. A stalled upstream is still let go within the bound.
        read_timeout: v.duration(
            ctx,
            "spec.timeouts.read",
            timeouts.read.as_ref(),
            Duration::from_secs(300),
        ),
        health_check,
        outlier_detection,
        panic_threshold,
        slow_start,
        circuit_breaker: traffic::circuit_breaker(v, ctx, spec.circuit_breaker.as_ref()),
        tls: spec.tls.as_ref().map(|t| tls::upstream_tls(v, ctx, t)),
    }
}

/// The objects rules may refer to.
struct Refs<'a> {
    backends: Vec<&'a ObjectId>,
    policies: Vec<&'a ObjectId>,
    /// Policies with a `jwt` section (rule overrides on `claims` need one).
    jwt_policies: Vec<ObjectId>,
}

fn route(v: &mut V, o: &Object, spec: &raw::RouteSpec, refs: &Refs) -> Route {
    let ctx = &o.ctx;
    let mut hosts = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        let lower = h.to_ascii_lowercase();
        let (wild, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !rest.is_empty()
            && rest.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            v.errors.push(ctx.error(
                &format!("spec.hosts[{i}]"),
                format!("invalid host `{h}`: expected a DNS name such as `api.example.com` or `*.example.com`"),
            ));
            continue;
        }
        hosts.push(if wild {
            HostMatch::Wildcard(format!(".{rest}"))
        } else {
            HostMatch::Exact(rest.to_string())
        });
    }
    if spec.rules.is_empty() {
        v.errors
            .push(ctx.error("spec.rules", "a route needs at least one rule"));
    }
    // Sized up front: a `filter_map` collect starts at four ~1 KB rules, and shrinking that to
    // one for each of 10,000 routes was ~5 % of a reload.
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, r) in spec.rules.iter().enumerate() {
        // Most routes have one rule: its path needs no `format!` (10,000 of them in a check).
        let at = match i {
            0 => std::borrow::Cow::Borrowed("spec.rules[0]"),
            _ => format!("spec.rules[{i}]").into(),
        };
        rules.extend(rule(v, ctx, (&at, i), r, &o.id, refs));
    }
    let (mut rules, openapi) = crate::openapi::attach(ctx, spec, rules, v.openapi, v.errors);
    // A rule with errors left a slot empty (the config is then refused, but not before rules
    // across routes are checked).
    rules.shrink_to_fit();
    Route {
        id: o.id.clone(),
        hosts,
        rules,
        openapi,
        source: Source::new(&ctx.file, ctx.at),
    }
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Validates the rule at `site`: its field path and its index in the route (which gives its mark,
/// without a path to locate).
fn rule(
    v: &mut V,
    ctx: &Ctx,
    site: (&str, usize),
    r: &raw::RuleSpec,
    route: &ObjectId,
    refs: &Refs,
) -> Option<Rule> {
    let (at, index) = site;
    let mark = ctx.rule_mark(index);
    let backends = &refs.backends;
    // Borrowed, not cloned: a clone copied every rule's match strings only to drop them.
    let no_match = raw::MatchSpec::default();
    let m = r.matches.as_ref().unwrap_or(&no_match);
    let path = match &m.path {
        None => Some(PathMatch::Prefix("/".into())),
        Some(p) => {
            // Field paths are written out only for an error (10,000 rules format none).
            let pp = || format!("{at}.match.path");
            match (&p.exact, &p.prefix, &p.regex) {
                (Some(e), None, None) if e.starts_with('/') => Some(PathMatch::Exact(e.clone())),
                (None, Some(pre), None) if pre.starts_with('/') => {
                    let trimmed = pre.trim_end_matches('/');
                    Some(PathMatch::Prefix(if trimmed.is_empty() {
                        "/".into()
                    } else {
                        trimmed.into()
                    }))
                }
                (None, None, Some(re)) => v
                    .regex(ctx, &format!("{at}.match.path.regex"), re, true)
                    .map(PathMatch::Regex),
                (Some(_), None, None) | (None, Some(_), None) => {
                    v.errors
                        .push(ctx.error(&pp(), "a path must start with `/`"));
                    None
                }
                _ => {
                    v.errors.push(ctx.error(
                        &pp(),
                        "a path match needs exactly one of `exact`, `prefix` or `regex`",
                    ));
                    None
                }
            }
        }
    };
    let mut methods = Vec::new();
    for (i, method) in m.methods.iter().enumerate() {
        match values::standard_method(method) {
            Ok(m) => methods.push(m),
            Err(e) => v
                .errors
                .push(ctx.error(&format!("{at}.match.methods[{i}]"), e)),
        }
    }
    for (i, method) in m.extension_methods.iter().enumerate() {
        match values::extension_method(method) {
            Ok(m) => methods.push(m),
            Err(e) => v
                .errors
                .push(ctx.error(&format!("{at}.match.extensionMethods[{i}]"), e)),
        }
    }
    let headers = match m.headers.is_empty() {
        true => Vec::new(),
        false => kv_matches(v, ctx, &format!("{at}.match.headers"), &m.headers, true),
    };
    let query = match m.query.is_empty() {
        true => Vec::new(),
        false => kv_matches(v, ctx, &format!("{at}.match.query"), &m.query, false),
    };

    let actions = usize::from(!r.backends.is_empty())
        + usize::from(r.redirect.is_some())
        + usize::from(r.direct_response.is_some());
    let action = if actions != 1 {
        v.errors.push(ctx.error(
            at,
            "a rule needs exactly one of `backends`, `redirect` or `directResponse`",
        ));
        None
    } else if let Some(red) = &r.redirect {
        redirect(v, ctx, &format!("{at}.redirect"), red).map(|r| Action::Redirect(Box::new(r)))
    } else if let Some(d) = &r.direct_response {
        if !(200..=599).contains(&d.status) {
            v.errors.push(ctx.error(
                &format!("{at}.directResponse.status"),
                "status must be between 200 and 599",
            ));
        } else if let Some(e) = values::body_not_allowed(d.status, d.body.as_deref().unwrap_or(""))
        {
            v.errors
                .push(ctx.error(&format!("{at}.directResponse.body"), e));
        }
        Some(Action::Direct(DirectResponse {
            status: d.status,
            body: d.body.clone().unwrap_or_default(),
            content_type: d
                .content_type
                .clone()
                .unwrap_or_else(|| "text/plain; charset=utf-8".into()),
        }))
    } else {
        let mut out = Vec::with_capacity(r.backends.len());
        for (i, b) in r.backends.iter().enumerate() {
            let id = match b.backend.split_once('/') {
                Some((ns, name)) => ObjectId {
                    namespace: ns.into(),
                    name: name.into(),
                },
                None => ObjectId {
                    namespace: route.namespace.clone(),
                    name: b.backend.clone(),
                },
            };
            if backends.binary_search(&&id).is_err() {
                let names: Vec<String> = backends
                    .iter()
                    .map(|b| {
                        if b.namespace == route.namespace {
                            b.name.clone()
                        } else {
                            b.to_string()
                        }
                    })
                    .collect();
                v.errors.push(ctx.error(
                    &format!("{at}.backends[{i}].backend"),
                    format!(
                        "unknown backend `{id}`{}",
                        hint(&b.backend, names.iter().map(String::as_str))
                    ),
                ));
            }
            out.push(WeightedBackend {
                backend: id,
                weight: b.weight.unwrap_or(1),
            });
        }
        if !out.is_empty() && out.iter().all(|b| b.weight == 0) {
            v.errors.push(ctx.error(
                &format!("{at}.backends"),
                "at least one backend needs a weight above 0",
            ));
        }
        Some(Action::Forward(out))
    };

    let mut rewrite = Rewrite::default();
    if let Some(rw) = &r.rewrite {
        if !matches!(action, Some(Action::Forward(_))) {
            v.errors.push(ctx.error(
                &format!("{at}.rewrite"),
                "`rewrite` only applies to rules with `backends`",
            ));
        }
        match (&rw.path_prefix, &rw.path_regex) {
            (Some(_), Some(_)) => v.errors.push(ctx.error(
                &format!("{at}.rewrite"),
                "use one of `pathPrefix` or `pathRegex`, not both",
            )),
            (Some(p), None) => {
                if !matches!(path, Some(PathMatch::Prefix(_)) | Some(PathMatch::Exact(_))) {
                    v.errors.push(ctx.error(
                        &format!("{at}.rewrite.pathPrefix"),
                        "`pathPrefix` needs a `prefix` or `exact` path match; use `pathRegex` with a regex match",
                    ));
                }
                if !p.starts_with('/') {
                    v.errors.push(ctx.error(
                        &format!("{at}.rewrite.pathPrefix"),
                        "a path must start with `/`",
                    ));
                }
                rewrite.path = Some(Box::new(PathRewrite::Prefix(p.clone())));
            }
            (None, Some(re)) => {
                if let Some(pat) = v.regex(
                    ctx,
                    &format!("{at}.rewrite.pathRegex.pattern"),
                    &re.pattern,
                    false,
                ) {
                    for e in values::substitution_problems(&pat.0, &re.substitution) {
                        v.errors
                            .push(ctx.error(&format!("{at}.rewrite.pathRegex.substitution"), e));
                    }
                    rewrite.path = Some(Box::new(PathRewrite::Regex(pat, re.substitution.clone())));
                }
            }
            (None, None) => {}
        }
        if let Some(h) = &rw.host {
            let (name, port) = match h.rsplit_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (h.as_str(), None),
            };
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && port.is_none_or(|p| p.parse::<u16>().is_ok());
            if !ok {
                v.errors.push(ctx.error(
                    &format!("{at}.rewrite.host"),
                    format!("invalid host `{h}`: expected a host name, optionally with a port"),
                ));
            }
        }
        rewrite.host = rw.host.clone();
    }
    let mods = |v: &mut V, field: &str, spec: Option<&raw::HeaderModsSpec>| match spec {
        None => HeaderMods::default(),
        Some(_) => header_mods(v, ctx, &format!("{at}.{field}"), spec),
    };
    let request_headers = mods(v, "requestHeaders", r.request_headers.as_deref());
    let response_headers = mods(v, "responseHeaders", r.response_headers.as_deref());
    let timeout = r
        .timeout
        .as_ref()
        .map(|t| v.duration(ctx, &format!("{at}.timeout"), Some(t), Duration::ZERO));
    let fault = (r.fault.as_ref()).map(|f| policy::fault(v, ctx, &format!("{at}.fault"), f));
    let policies = policy::rule_policies(v, ctx, at, &r.policies, route, &refs.policies);
    Some(Rule {
        path: path?,
        methods,
        headers,
        query,
        action: action?,
        rewrite,
        openapi: None,
        request_headers,
        response_headers,
        timeout,
        fault: fault.map(Box::new),
        policies,
        retry: (r.retry.as_ref()).map(|spec| Box::new(traffic::retry(v, ctx, at, spec))),
        upgrades: r.upgrades.unwrap_or(true),
        release: release::release(v, ctx, at, r, route, refs),
        source: Source::new(&ctx.file, mark),
    })
}
