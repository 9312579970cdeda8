//! Request flow, step 9: the per-thread pool of idle upstream HTTP/1.1 connections.
//!
//! A lock-free alternative to a shared pool: each worker thread keeps its own idle connections per
//! endpoint. A connection returns to the pool of the thread that finishes reading its response.

use super::h1::Conn;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// Pool keys are already unique numbers chosen by the gateway, not attacker input: a multiply
/// spreads them over the table, where SipHash would cost more than the rest of the lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Idle connections kept per endpoint per thread; more are closed.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// How often a thread's pool is swept of expired connections (lazily, on check-in).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

struct Idle {
    conn: Conn,
    since: Instant,
    max_idle: Duration,
}

impl Idle {
    fn usable(&mut self, now: Instant) -> bool {
        self.conn.is_usable() && now.duration_since(self.since) < self.max_idle
    }
}

struct Pools {
    idle: HashMap<u64, Vec<Idle>, BuildHasherDefault<KeyHasher>>,
    last_sweep: Instant,
}

thread_local! {
    static POOLS: RefCell<Pools> = RefCell::new(Pools { idle: HashMap::default(), last_sweep: Instant::now() });
}

/// Takes an idle connection to endpoint `key` that is open and younger than its idle timeout at
/// `now` (the caller's recent clock reading: the request's start is close enough).
pub fn checkout(key: u64, now: Instant) -> Option<Conn> {
    POOLS.with(|p| {
        let mut pools = p.borrow_mut();
        let list = pools.idle.get_mut(&key)?;
        while let Some(mut idle) = list.pop() {
            if idle.usable(now) {
                return Some(idle.conn);
            }
        }
        None
    })
}

/// Returns a connection whose response has been fully read; it may be reused for `max_idle`.
pub fn checkin(key: u64, conn: Conn, max_idle: Duration) {
    POOLS.with(|p| {
        let mut pools = p.borrow_mut();
        let now = Instant::now();
        // Endpoints that are no longer used (removed by a reload, say) are never checked out
        // again, so their connections are dropped here once they expire.
        if now.duration_since(pools.last_sweep) >= SWEEP_EVERY {
            pools.last_sweep = now;
            pools.idle.retain(|_, list| {
                list.retain_mut(|i| i.usable(now));
                !list.is_empty()
            });
        }
        let list = pools.idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                conn,
                since: now,
                max_idle,
            });
        }
    });
}
