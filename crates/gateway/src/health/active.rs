//! Control plane: active health checking of one backend. A task on the control runtime probes every
//! endpoint of the current set each interval (with jitter, so replicas and backends do not probe in
//! step) and turns streaks of results into verdicts: `unhealthyThreshold` failures in a row make an
//! endpoint unhealthy, `healthyThreshold` successes make it healthy. An endpoint starts unknown and
//! is used until proven unhealthy.

use super::probe;
use crate::state::endpoint::Health;
use crate::state::BackendState;
use crate::upstream::transport::TlsConnect;
use gatehouse_config::{BackendProtocol, HealthCheck};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Successes and failures in a row of one address.
#[derive(Default, Clone, Copy)]
struct Streak {
    ok: u32,
    failed: u32,
}

/// The interval with up to ±10% jitter.
fn jittered(interval: Duration) -> Duration {
    let f = 0.9 + fastrand::f64() * 0.2;
    interval.mul_f64(f)
}

/// Checks `state`'s endpoints until the state is dropped (or the task aborted by a new spec).
pub(crate) async fn run(
    state: Weak<BackendState>,
    spec: HealthCheck,
    protocol: BackendProtocol,
    tls: Option<Arc<TlsConnect>>,
) {
    let mut streaks: HashMap<Arc<str>, Streak> = HashMap::new();
    // The first round comes at a random point of the first interval: a reload that starts many
    // checkers does not probe every endpoint at the same instant.
    tokio::time::sleep(spec.interval.mul_f64(fastrand::f64())).await;
    loop {
        let Some(backend) = state.upgrade() else {
            return;
        };
        round(&backend, &spec, protocol, tls.as_ref(), &mut streaks).await;
        drop(backend);
        tokio::time::sleep(jittered(spec.interval)).await;
    }
}

/// One round: every endpoint probed concurrently, verdicts applied.
async fn round(
    backend: &BackendState,
    spec: &HealthCheck,
    protocol: BackendProtocol,
    tls: Option<&Arc<TlsConnect>>,
    streaks: &mut HashMap<Arc<str>, Streak>,
) {
    let set = backend.current();
    let mut probes = tokio::task::JoinSet::new();
    for (i, ep) in set.endpoints.iter().enumerate() {
        let (probe, address, timeout) = (spec.probe.clone(), ep.address.clone(), spec.timeout);
        let tls = tls.cloned();
        probes.spawn(async move {
            let tls = tls.as_deref();
            (
                i,
                probe::check(&probe, protocol, tls, &address, timeout).await,
            )
        });
    }
    let mut changed = false;
    let mut alive = HashMap::with_capacity(set.endpoints.len());
    while let Some(joined) = probes.join_next().await {
        let Ok((i, result)) = joined else { continue };
        let ep = &set.endpoints[i];
        let mut s = streaks.get(&ep.address).copied().unwrap_or_default();
        match &result {
            Ok(()) => {
                s.ok = s.ok.saturating_add(1);
                s.failed = 0;
            }
            Err(_) => {
                s.failed = s.failed.saturating_add(1);
                s.ok = 0;
            }
        }
        backend.count_check(result.is_ok());
        let current = ep.shared.health();
        let verdict = if s.failed >= spec.unhealthy_threshold {
            Health::Unhealthy
        } else if s.ok >= spec.healthy_threshold {
            Health::Healthy
        } else {
            current
        };
        if verdict != current {
            changed = true;
            ep.shared.set_health(verdict);
            if current == Health::Unhealthy {
                ep.shared.start_slow_start();
            }
            match &result {
                Err(why) => tracing::warn!(
                    backend = &*backend.id,
                    endpoint = &*ep.address,
                    "endpoint is unhealthy: {why}"
                ),
                Ok(()) => tracing::info!(
                    backend = &*backend.id,
                    endpoint = &*ep.address,
                    "endpoint is healthy"
                ),
            }
        }
        alive.insert(ep.address.clone(), s);
    }
    // Addresses that left the set are forgotten with their streaks.
    *streaks = alive;
    if changed {
        backend.refresh_availability();
    }
}
