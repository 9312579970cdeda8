//! Discovery from DNS (`discovery: {dns: ...}`): A/AAAA records of a name with a fixed port, or
//! SRV records whose targets are resolved to addresses and whose ports and weights are used.
//!
//! The records are resolved again when their TTL runs out, clamped to the backend's
//! `[minTtl, maxTtl]`. The resolver's own cache is off: the TTL decides when to ask, and a cached
//! answer would outlive a `maxTtl` shorter than the record's TTL.

use super::{Backoff, Discovered, Reporter, Sink};
use gatehouse_config::TtlBounds;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to resolve.
#[derive(Debug, Clone)]
pub(crate) enum Query {
    /// A and AAAA records of `name`, each address with `port`.
    Address { name: String, port: u16 },
    /// SRV records of `name`.
    Srv { name: String },
}

impl Query {
    fn name(&self) -> &str {
        match self {
            Query::Address { name, .. } | Query::Srv { name } => name,
        }
    }
}

/// Runs until aborted: resolves, reports, sleeps for the clamped TTL; on failure keeps the last
/// set and retries with backoff.
pub(crate) async fn run(
    query: Query,
    server: Option<SocketAddr>,
    ttl: TtlBounds,
    sink: Arc<dyn Sink>,
) {
    let mut reporter = Reporter::new(sink);
    let mut backoff = Backoff::new();
    let resolver = loop {
        match resolver(server) {
            Ok(r) => break r,
            Err(e) => {
                reporter.failed(format!("DNS resolver configuration: {e}"));
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    };
    loop {
        let delay = match resolve(&resolver, &query).await {
            Ok((set, valid_until)) => {
                reporter.update(set);
                backoff.reset();
                let left = valid_until.saturating_duration_since(Instant::now());
                left.clamp(ttl.min, ttl.max)
            }
            Err(e) => {
                reporter.failed(format!("DNS {}: {e}", query.name()));
                backoff.next_delay()
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// A resolver asking `server` (UDP, then TCP for truncated answers), or the system's
/// configuration (`/etc/resolv.conf`) when no server is given.
fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, ResolveError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let mut config = ResolverConfig::new();
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            TokioResolver::builder_with_config(config, provider)
        }
        None => TokioResolver::builder(provider)?,
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    // Every address, not only the A records when there are some (the default).
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Discovery runs in the background: a slow answer costs nothing, a spurious failure a report.
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    Ok(builder.build())
}

/// The endpoint set and when it expires.
async fn resolve(
    resolver: &TokioResolver,
    query: &Query,
) -> Result<(Vec<Discovered>, Instant), ResolveError> {
    match query {
        Query::Address { name, port } => {
            let found = resolver.lookup_ip(name.as_str()).await?;
            let set = found
                .iter()
                .map(|ip| Discovered {
                    address: SocketAddr::new(ip, *port),
                    weight: 1,
                })
                .collect();
            Ok((set, found.valid_until()))
        }
        Query::Srv { name } => srv(resolver, name).await,
    }
}

/// SRV records of the best (lowest) priority, each target resolved to its addresses; a record's
/// weight goes to each of its addresses (weight 0, "no preference" in RFC 2782, counts as 1).
/// Records of other priorities are backups in RFC 2782; falling back to them when the best are
/// unhealthy is health checking's job, not discovery's.
async fn srv(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Vec<Discovered>, Instant), ResolveError> {
    let found = resolver.srv_lookup(name).await?;
    let mut valid_until = found.as_lookup().valid_until();
    let best = found.iter().map(|r| r.priority()).min();
    let mut set = Vec::new();
    for record in found.iter().filter(|r| Some(r.priority()) == best) {
        let target = record.target().to_ascii();
        let ips = resolver.lookup_ip(target.as_str()).await?;
        valid_until = valid_until.min(ips.valid_until());
        set.extend(ips.iter().map(|ip| Discovered {
            address: SocketAddr::new(ip, record.port()),
            weight: u32::from(record.weight()).max(1),
        }));
    }
    Ok((set, valid_until))
}
