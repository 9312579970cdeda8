//! Run-time state, per backend (retries): the retry budget — how many retries recent traffic
//! allows — kept in `BackendState` so that it outlives reloads.
//!
//! Retries may be at most `percent` of the requests of the last `WINDOW` seconds plus a floor of
//! `minPerSecond` per second of the window (Linkerd's budget). During a full outage every first
//! attempt fails, and without a budget each would become `attempts` requests: the budget keeps
//! the extra load on the failing service to a share of its normal traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Seconds of history the budget looks at.
pub(crate) const WINDOW: u64 = 10;

/// The requests and retries of one second.
#[derive(Default)]
struct Bucket {
    /// The second (since `epoch`, plus one so that 0 means never) the counts belong to.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A sliding window of request and retry counts, one bucket per second. Lock-free: counts made in
/// the instant a bucket is recycled may be lost, which moves the budget by a request or two.
pub(crate) struct RetryBudget {
    epoch: Instant,
    buckets: [Bucket; WINDOW as usize],
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            epoch: Instant::now(),
            buckets: Default::default(),
        }
    }
}

impl RetryBudget {
    /// The current second, from 1.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs() + 1
    }

    /// This second's bucket, emptied first when it last held an older second.
    fn bucket(&self, now: u64) -> &Bucket {
        let b = &self.buckets[(now % WINDOW) as usize];
        let seen = b.second.load(Ordering::Acquire);
        if seen != now
            && b.second
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts a request (its first attempt).
    #[cfg(test)]
    pub(crate) fn request(&self) {
        let now = self.now();
        self.bucket(now).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request (its first attempt) that arrived `at`: the exchange's own arrival time,
    /// so that counting reads no clock (a clock read was a quarter of this deposit's cost).
    pub(crate) fn request_at(&self, at: std::time::Instant) {
        let second = Instant::from_std(at)
            .saturating_duration_since(self.epoch)
            .as_secs()
            + 1;
        self.bucket(second).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests and retries of the window.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let now = self.now();
        let mut out = (0, 0);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Acquire);
            if s != 0 && s + WINDOW > now {
                out.0 += b.requests.load(Ordering::Relaxed);
                out.1 += b.retries.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// Takes one retry from the budget, if it has one: retries so far stay below `percent` of the
    /// window's requests plus `min_per_second` for each second of the window.
    pub(crate) fn try_retry(&self, percent: u32, min_per_second: u32) -> bool {
        let (requests, retries) = self.counts();
        let allowed = requests * u64::from(percent) / 100 + u64::from(min_per_second) * WINDOW;
        if retries >= allowed {
            return false;
        }
        let now = self.now();
        self.bucket(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_a_share_of_recent_requests_plus_the_floor() {
        let budget = RetryBudget::default();
        for _ in 0..50 {
            budget.request();
            // As the exchange counts: by its arrival time, on the same clock.
            budget.request_at(Instant::now().into_std());
        }
        // 20% of 100 requests, plus 1 per second over the 10-second window.
        let granted = (0..100).filter(|_| budget.try_retry(20, 1)).count();
        assert_eq!(granted, 30);
        // No traffic at all still allows the floor, and no more.
        let idle = RetryBudget::default();
        assert_eq!((0..50).filter(|_| idle.try_retry(20, 2)).count(), 20);
        assert!(!idle.try_retry(20, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn old_seconds_leave_the_window() {
        let budget = RetryBudget::default();
        for _ in 0..50 {
            budget.request();
        }
        assert_eq!((0..100).filter(|_| budget.try_retry(100, 0)).count(), 50);
        assert!(!budget.try_retry(100, 0), "spent");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.counts(), (50, 50), "still inside the window");
        tokio::time::advance(Duration::from_secs(WINDOW)).await;
        assert_eq!(budget.counts(), (0, 0), "the window moved past them");
        budget.request();
        assert!(budget.try_retry(100, 0));
        assert!(!budget.try_retry(100, 0));
    }
}
