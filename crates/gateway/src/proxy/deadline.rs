//! Request flow, step 8 (route timeout): a coarse per-worker deadline service for the wait on the
//! upstream's response head.
//!
//! `tokio::time::timeout` registers and cancels an entry in tokio's timer wheel for every request
//! (about 3% of a small proxied request's CPU here). Route timeouts are seconds long and almost never
//! fire, so a cheaper scheme does: each worker thread keeps its pending deadlines in one table, and
//! a sweeper task (running only while the table is not empty) wakes the expired ones every
//! `TICK`. A timeout therefore fires up to `TICK` late. The table sits behind an uncontended mutex,
//! so a future that moves between threads (on a multi-threaded runtime) stays correct.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// How often pending deadlines are checked.
pub const TICK: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Table {
    entries: Vec<Option<(Instant, Waker)>>,
    free: Vec<usize>,
    sweeping: bool,
}

impl Table {
    /// Deadlines pending.
    fn live(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

#[derive(Default)]
struct Shard(Mutex<Table>);

thread_local! {
    static SHARD: Arc<Shard> = Arc::default();
}

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Clears the sweeping mark if the sweeper is dropped before it ends by itself (its runtime shut
/// down under it), so that a later runtime on the same thread starts a new one.
struct Sweeping {
    shard: Arc<Shard>,
    ended: bool,
}

impl Drop for Sweeping {
    fn drop(&mut self) {
        if !self.ended {
            self.shard.lock().sweeping = false;
        }
    }
}

/// Wakes expired entries every tick until the table is empty. The mark is made by the caller, so
/// it is cleared even if the task is dropped before it first runs.
async fn sweep(mut mark: Sweeping) {
    let shard = mark.shard.clone();
    loop {
        tokio::time::sleep(TICK).await;
        let mut t = shard.lock();
        if t.live() == 0 {
            // Under the lock, so a registration racing with this sees the mark cleared.
            t.sweeping = false;
            mark.ended = true;
            return;
        }
        let now = Instant::now();
        for (at, waker) in t.entries.iter().flatten() {
            if *at <= now {
                waker.wake_by_ref();
            }
        }
    }
}

/// Why a `Timed` future ended without its value.
#[derive(Debug)]
pub struct Elapsed;

/// `inner`, or `Elapsed` once `deadline` has passed.
pub fn timed<F: Future>(deadline: Instant, inner: F) -> Timed<F> {
    Timed {
        inner,
        deadline,
        slot: None,
    }
}

pin_project_lite::pin_project! {
    /// See `timed`.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        slot: Option<(Arc<Shard>, usize)>,
    }

    impl<F> PinnedDrop for Timed<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some((shard, key)) = this.project().slot.take() {
                let mut t = shard.lock();
                t.entries[key] = None;
                t.free.push(key);
            }
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.inner.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.slot {
            None => {
                let shard = SHARD.with(Arc::clone);
                let mut t = shard.lock();
                let entry = Some((*this.deadline, cx.waker().clone()));
                let key = match t.free.pop() {
                    Some(k) => {
                        t.entries[k] = entry;
                        k
                    }
                    None => {
                        t.entries.push(entry);
                        t.entries.len() - 1
                    }
                };
                let start_sweeper = !t.sweeping;
                t.sweeping = true;
                drop(t);
                if start_sweeper {
                    tokio::spawn(sweep(Sweeping {
                        shard: shard.clone(),
                        ended: false,
                    }));
                }
                *this.slot = Some((shard, key));
                Poll::Pending
            }
            Some((shard, key)) => {
                if Instant::now() >= *this.deadline {
                    return Poll::Ready(Err(Elapsed));
                }
                let mut t = shard.lock();
                if let Some((_, w)) = t.entries[*key].as_mut() {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_within_a_tick_after_the_deadline_and_not_before() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let r = timed(deadline, std::future::pending::<()>()).await;
        assert!(r.is_err());
        let late = Instant::now() - deadline;
        assert!(late <= TICK, "fired {late:?} after the deadline");

        // A value that is ready in time wins, and finished entries leave the table.
        let slow = tokio::time::sleep(Duration::from_millis(20));
        let r = timed(Instant::now() + Duration::from_secs(60), slow).await;
        assert!(r.is_ok());
        SHARD.with(|s| assert_eq!(s.lock().live(), 0));

        // Several at once: each fires at its own deadline.
        let base = Instant::now();
        let (a, b) = tokio::join!(
            timed(
                base + Duration::from_millis(100),
                std::future::pending::<()>()
            ),
            async {
                let r = timed(
                    base + Duration::from_millis(30),
                    std::future::pending::<()>(),
                )
                .await;
                (r.is_err(), Instant::now() - base)
            },
        );
        assert!(a.is_err());
        assert!(b.0, "the 30 ms deadline fired");
        assert!(b.1 >= Duration::from_millis(30) && b.1 <= Duration::from_millis(30) + TICK);
        assert!(Instant::now() - base >= Duration::from_millis(100));
    }

    #[test]
    fn a_runtime_shut_down_mid_sweep_does_not_stop_the_next_one() {
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
        };
        // The first runtime ends while its sweeper and a deadline are pending.
        let first = rt();
        first.block_on(async {
            let pending = timed(
                Instant::now() + Duration::from_secs(60),
                std::future::pending::<()>(),
            );
            let _ = tokio::time::timeout(Duration::from_millis(20), pending).await;
            tokio::spawn(timed(
                Instant::now() + Duration::from_secs(60),
                std::future::pending::<()>(),
            ));
            tokio::task::yield_now().await;
        });
        drop(first);
        // The next runtime on this thread gets a sweeper of its own.
        let took = rt().block_on(async {
            let start = Instant::now();
            let t = timed(
                start + Duration::from_millis(30),
                std::future::pending::<()>(),
            );
            // Without a sweeper only this outer timeout would wake `t`, a second later.
            let fired = tokio::time::timeout(Duration::from_secs(1), async {
                assert!(t.await.is_err());
                Instant::now()
            });
            fired.await.map(|at| at - start)
        });
        let took = took.expect("the deadline fires");
        assert!(
            took <= Duration::from_millis(30) + TICK,
            "fired after {took:?}: no sweeper ran"
        );
    }
}
