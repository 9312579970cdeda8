//! Config flow at run time: static `endpoints` written as host names. Each name stands for every
//! address it resolves to (not the first one only), so the task resolves them through the system
//! resolver on the control thread, now and every `REFRESH`, and reports the expanded set. Until the
//! first answer, and while a name fails to resolve, the name itself stays in the set and is
//! resolved at connect time as before.

use super::{Discovered, Reporter, Sink};
use gatehouse_config::Endpoint;
use std::sync::Arc;
use std::time::Duration;

/// How often names are resolved again (the system resolver tells no TTL).
const REFRESH: Duration = Duration::from_secs(30);

/// Whether any endpoint is written as a host name rather than an IP address.
pub(crate) fn has_names(endpoints: &[Endpoint]) -> bool {
    endpoints
        .iter()
        .any(|e| e.address.parse::<std::net::SocketAddr>().is_err())
}

/// Resolves the names of `endpoints` until aborted.
pub(crate) async fn run(endpoints: Vec<Endpoint>, sink: Arc<dyn Sink>) {
    let mut reporter = Reporter::new(sink);
    loop {
        let mut set = Vec::new();
        let mut problem = None;
        for e in &endpoints {
            match tokio::net::lookup_host(e.address.as_str()).await {
                Ok(addrs) => set.extend(addrs.map(|address| Discovered {
                    address,
                    weight: e.weight,
                })),
                Err(err) => problem = Some(format!("cannot resolve {}: {err}", e.address)),
            }
        }
        match problem {
            // A name that fails keeps the last set whole rather than dropping its endpoints.
            Some(p) => reporter.failed(p),
            None => reporter.update(set),
        }
        tokio::time::sleep(REFRESH).await;
    }
}
