//! Request flow, last step, for gRPC calls only: the final `grpc-status` of each call (from the
//! upstream's trailers, its trailers-only answer, or the gateway's own error) counted by route and
//! backend. A call's HTTP status says little (a failed gRPC call is a `200`), so this is the
//! family gRPC dashboards read. Plain HTTP requests never reach this code.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    route: String,
    backend: String,
    grpc_status: &'static str,
}

/// gRPC's status codes 0–16 as label values, and `other` for anything else an upstream sends.
const CODES: [&str; 18] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "other",
];

/// The index in `CODES` of a `grpc-status` value.
fn index(code: &[u8]) -> usize {
    let n = match code {
        [d] if d.is_ascii_digit() => usize::from(d - b'0'),
        [b'1', d] if d.is_ascii_digit() => 10 + usize::from(d - b'0'),
        _ => return CODES.len() - 1,
    };
    n.min(CODES.len() - 1)
}

/// The family `gatehouse_grpc_responses_total{route,backend,grpc_status}`.
#[derive(Clone)]
pub(crate) struct GrpcMetrics {
    responses: Family<GrpcLabels, Counter>,
}

impl GrpcMetrics {
    /// Registers the family in `registry` (prefixed `gatehouse_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = GrpcMetrics {
            responses: Family::default(),
        };
        registry.register(
            "grpc_responses",
            "gRPC calls by final grpc-status (upstream trailers, trailers-only answers, or the gateway's own error), by route and backend",
            m.responses.clone(),
        );
        m
    }

    /// The (unresolved) counters of one route/backend pair.
    pub(crate) fn counters(&self) -> GrpcCounters {
        GrpcCounters {
            family: self.responses.clone(),
            by_code: OnceLock::new(),
        }
    }
}

/// One route/backend pair's counters, one per status code, each resolved on its first use; the
/// array itself is allocated on a pair's first gRPC call, so routes that never see one (most)
/// carry a family handle and an empty cell (24 bytes).
#[derive(Clone)]
pub(crate) struct GrpcCounters {
    family: Family<GrpcLabels, Counter>,
    by_code: OnceLock<Box<[OnceLock<Counter>; CODES.len()]>>,
}

impl GrpcCounters {
    /// Counts one call that ended with `code` (a `grpc-status` value) on `route` to `backend`.
    pub(crate) fn inc(&self, route: &str, backend: &str, code: &[u8]) {
        let i = index(code);
        self.by_code.get_or_init(Default::default)[i]
            .get_or_init(|| {
                self.family
                    .get_or_create(&GrpcLabels {
                        route: route.to_string(),
                        backend: backend.to_string(),
                        grpc_status: CODES[i],
                    })
                    .clone()
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_map_to_their_code_or_other() {
        assert_eq!(CODES[index(b"0")], "0");
        assert_eq!(CODES[index(b"9")], "9");
        assert_eq!(CODES[index(b"14")], "14");
        assert_eq!(CODES[index(b"16")], "16");
        for bad in [&b"17"[..], b"19", b"", b"x", b"-1", b"140", b"2 "] {
            assert_eq!(CODES[index(bad)], "other", "{bad:?}");
        }
    }
}
