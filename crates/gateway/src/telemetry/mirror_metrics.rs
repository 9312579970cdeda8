//! Request flow, mirror telemetry: what became of the copies a rule's `mirror` made. Handles are
//! resolved once per compiled rule, never per request.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    route: String,
    backend: String,
    result: &'static str,
}

/// The mirror metric family.
#[derive(Clone)]
pub(crate) struct MirrorMetrics {
    mirrored: Family<MirrorLabels, Counter>,
}

/// The counters of one rule's mirror, by result.
#[derive(Clone)]
pub(crate) struct MirrorCounters {
    /// The shadow answered (any status; its answer is discarded).
    pub(crate) answered: Counter,
    /// The shadow could not be reached, failed, or did not answer in time.
    pub(crate) failed: Counter,
    /// Not sent: `maxInFlight` copies were already in flight.
    pub(crate) dropped_busy: Counter,
    /// Not sent: the body was larger than `maxBodySize`, broken, or abandoned.
    pub(crate) dropped_body: Counter,
}

impl MirrorMetrics {
    /// Registers the family in `registry` (prefixed `gatehouse_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = MirrorMetrics {
            mirrored: Family::default(),
        };
        registry.register(
            "mirror_requests",
            "Requests copied to a shadow backend by a rule's mirror, by route, backend and result (answered, failed, dropped_busy, dropped_body)",
            m.mirrored.clone(),
        );
        m
    }

    /// The counters of route `route`'s mirror to `backend`.
    pub(crate) fn counters(&self, route: &str, backend: &str) -> MirrorCounters {
        let c = |result| {
            let labels = MirrorLabels {
                route: route.to_string(),
                backend: backend.to_string(),
                result,
            };
            self.mirrored.get_or_create(&labels).clone()
        };
        MirrorCounters {
            answered: c("answered"),
            failed: c("failed"),
            dropped_busy: c("dropped_busy"),
            dropped_body: c("dropped_body"),
        }
    }
}
