//! Request flow, last step, for rules under a `Rollout` only: the per-(rule, backend) samples a
//! rollout's analysis judges (requests, errors, a latency histogram for p99), and the
//! `gatehouse_rollout_*` families that show its weight, state and analysis results. A rule
//! without a Rollout never records here: its request metrics carry no sample.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets: the first ends at [`FIRST_US`] microseconds, each next one is 2^(1/4) wider
/// (about 19 %), 96 of them reaching ~14 minutes. A p99 read from them is within one bucket.
const BUCKETS: usize = 96;
const FIRST_US: f64 = 50.0;
const PER_DOUBLING: f64 = 4.0;

/// What one side (stable or canary) of a rollout served since the last analysis took it.
pub(crate) struct Sample {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Sample {
    /// Counts one finished exchange: a 5xx (the upstream's or the proxy's own: connect failures,
    /// timeouts and refusals answer 502, 503 and 504) is an error; a client that left (499) is not.
    #[inline]
    pub(crate) fn record(&self, status: u16, seconds: f64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.buckets[bucket_of(seconds)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests recorded since the last `take`.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Everything recorded since the last `take`, and a fresh start.
    pub(crate) fn take(&self) -> Window {
        Window {
            requests: self.requests.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].swap(0, Ordering::Relaxed)),
        }
    }
}

fn bucket_of(seconds: f64) -> usize {
    let us = seconds * 1e6;
    if us <= FIRST_US || us.is_nan() {
        return 0;
    }
    ((us / FIRST_US).log2() * PER_DOUBLING)
        .ceil()
        .min((BUCKETS - 1) as f64) as usize
}

/// The upper bound of bucket `i`, in seconds.
fn bucket_end(i: usize) -> f64 {
    FIRST_US * (i as f64 / PER_DOUBLING).exp2() / 1e6
}

/// One analysis window of one side.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Requests finished.
    pub(crate) requests: u64,
    /// Of them, errors.
    pub(crate) errors: u64,
    buckets: [u64; BUCKETS],
}

impl Window {
    /// Errors as a percentage of requests.
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        self.errors as f64 * 100.0 / self.requests as f64
    }

    /// The 99th percentile latency in seconds (the end of its bucket); `None` without requests.
    pub(crate) fn p99(&self) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total * 99).div_ceil(100);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_end(i));
            }
        }
        Some(bucket_end(BUCKETS - 1))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    rollout: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabels {
    rollout: String,
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    rollout: String,
    result: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The rollout families.
#[derive(Clone, Default)]
pub(crate) struct RolloutMetrics {
    weight: Family<RolloutLabels, FloatGauge>,
    state: Family<StateLabels, Gauge>,
    error_rate: Family<SideLabels, FloatGauge>,
    p99: Family<SideLabels, FloatGauge>,
    analyses: Family<ResultLabels, Counter>,
}

/// The states a rollout can be in, as metric labels.
pub(crate) const STATES: [&str; 5] = ["Progressing", "Paused", "RolledBack", "Promoted", "Aborted"];

impl RolloutMetrics {
    /// Registers the families in `registry` (prefixed `gatehouse_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = RolloutMetrics::default();
        registry.register(
            "rollout_canary_weight_percent",
            "The canary's share of its rule's traffic now, by rollout",
            m.weight.clone(),
        );
        registry.register(
            "rollout_state",
            "1 for the state a rollout is in, 0 for the others",
            m.state.clone(),
        );
        registry.register(
            "rollout_error_rate_percent",
            "Error rate (5xx and proxy errors) in the last judged analysis window, by rollout and side",
            m.error_rate.clone(),
        );
        registry.register(
            "rollout_p99_seconds",
            "p99 latency in the last judged analysis window, by rollout and side",
            m.p99.clone(),
        );
        registry.register(
            "rollout_analyses",
            "Analysis rounds, by rollout and result (pass, fail, insufficient)",
            m.analyses.clone(),
        );
        m
    }

    /// Sets the canary weight of `rollout`, in percent.
    pub(crate) fn set_weight(&self, rollout: &str, percent: f64) {
        let labels = RolloutLabels {
            rollout: rollout.to_string(),
        };
        self.weight.get_or_create(&labels).set(percent);
    }

    /// Marks `state` as the one `rollout` is in.
    pub(crate) fn set_state(&self, rollout: &str, state: &'static str) {
        for s in STATES {
            let labels = StateLabels {
                rollout: rollout.to_string(),
                state: s,
            };
            self.state.get_or_create(&labels).set(i64::from(s == state));
        }
    }

    /// Records one analysis round and, when it judged, its figures.
    pub(crate) fn analysed(
        &self,
        rollout: &str,
        result: &'static str,
        figures: Option<[(f64, Option<f64>); 2]>,
    ) {
        let labels = ResultLabels {
            rollout: rollout.to_string(),
            result,
        };
        self.analyses.get_or_create(&labels).inc();
        let Some(figures) = figures else { return };
        for (side, (rate, p99)) in ["stable", "canary"].into_iter().zip(figures) {
            let labels = SideLabels {
                rollout: rollout.to_string(),
                side,
            };
            self.error_rate.get_or_create(&labels).set(rate);
            if let Some(p) = p99 {
                self.p99.get_or_create(&labels).set(p);
            }
        }
    }

    /// Drops every series of a removed rollout.
    pub(crate) fn forget(&self, rollout: &str) {
        let r = || rollout.to_string();
        self.weight.remove(&RolloutLabels { rollout: r() });
        for state in STATES {
            self.state.remove(&StateLabels {
                rollout: r(),
                state,
            });
        }
        for side in ["stable", "canary"] {
            self.error_rate.remove(&SideLabels { rollout: r(), side });
            self.p99.remove(&SideLabels { rollout: r(), side });
        }
        for result in ["pass", "fail", "insufficient"] {
            self.analyses.remove(&ResultLabels {
                rollout: r(),
                result,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_read_within_one_bucket_and_errors_are_5xx() {
        let s = Sample::default();
        for i in 0..1000 {
            let (status, secs) = if i < 990 { (200, 0.002) } else { (503, 0.100) };
            s.record(status, secs);
        }
        s.record(499, 0.001);
        let w = s.take();
        assert_eq!((w.requests, w.errors), (1001, 10));
        let p99 = w.p99().unwrap();
        assert!((0.002..0.002 * 1.2).contains(&p99), "{p99}");
        assert_eq!(s.take().requests, 0, "take starts a new window");
        assert!(Window {
            requests: 0,
            errors: 0,
            buckets: [0; BUCKETS]
        }
        .p99()
        .is_none());
    }
}
