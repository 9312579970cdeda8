//! Rate limiting arithmetic (GCRA, the generic cell rate algorithm), shared by the local store and
//! mirrored by the Redis script: one number per key, the theoretical arrival time (TAT).
//!
//! With emission interval `T = per / requests` and bucket size `burst`, a request at `now` is
//! admitted when `max(tat, now) + T - now <= T * burst`; admitting sets `tat` to that sum. A full
//! bucket (`tat <= now`) therefore admits exactly `burst` requests at once, then one per `T`.
//! A key whose `tat` is in the past is indistinguishable from a key never seen, which is what
//! makes forgetting idle keys exact.

use std::time::Duration;

/// The parameters of one limit, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval: time per request at the sustained rate.
    pub(crate) interval: u64,
    /// `interval * burst`: how far ahead of `now` the TAT may run.
    pub(crate) capacity: u64,
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Admitted or not.
    pub(crate) allowed: bool,
    /// Requests that could still be admitted at once after this one.
    pub(crate) remaining: u64,
    /// Refused: when the next request would be admitted. Admitted: when the bucket is full again.
    pub(crate) wait: Duration,
}

impl Gcra {
    /// The limit of `requests` per `per` with a bucket of `burst`.
    pub(crate) fn new(requests: u64, per: Duration, burst: u64) -> Self {
        let interval = (per.as_nanos() / u128::from(requests.max(1))).max(1);
        let interval = u64::try_from(interval).unwrap_or(u64::MAX / 2);
        Gcra {
            interval,
            capacity: interval.saturating_mul(burst.max(1)),
        }
    }

    /// Decides for a request at `now` against the key's `tat` (0 for a key never seen); returns
    /// the decision and the new TAT (unchanged when refused).
    pub(crate) fn decide(&self, tat: u64, now: u64) -> (Decision, u64) {
        let new_tat = tat.max(now).saturating_add(self.interval);
        let ahead = new_tat - now;
        if ahead > self.capacity {
            let decision = Decision {
                allowed: false,
                remaining: 0,
                wait: Duration::from_nanos(ahead - self.capacity),
            };
            return (decision, tat);
        }
        let decision = Decision {
            allowed: true,
            remaining: (self.capacity - ahead) / self.interval,
            wait: Duration::from_nanos(ahead),
        };
        (decision, new_tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_admits_burst_then_the_rate() {
        // 10 per second (one per 100 ms), bucket of 3.
        let g = Gcra::new(10, Duration::from_secs(1), 3);
        let ms = 1_000_000;
        let mut tat = 0;
        let now = 5_000 * ms;
        let mut admitted = 0;
        for _ in 0..10 {
            let (d, t) = g.decide(tat, now);
            tat = t;
            admitted += u64::from(d.allowed);
        }
        assert_eq!(admitted, 3);
        let (d, _) = g.decide(tat, now);
        assert_eq!(d.wait, Duration::from_millis(100), "the next one in T");
        assert!(!g.decide(tat, now + 99 * ms).0.allowed);
        let (d, t) = g.decide(tat, now + 100 * ms);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!g.decide(t, now + 150 * ms).0.allowed);
        assert!(g.decide(t, now + 200 * ms).0.allowed);
    }
}
