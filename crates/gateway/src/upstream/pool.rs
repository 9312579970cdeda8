//! Request flow, step 9: the per-thread pool of idle upstream HTTP/1.1 connections.
//!
//! A lock-free alternative to a shared pool: each worker thread keeps its own idle connections per
//! endpoint. A connection returns to the pool of the thread that finishes reading its response.

use crate::proxy::body::RequestBody;
use hyper::client::conn::http1::SendRequest;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Idle connections kept per endpoint per thread; more are closed.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

struct Idle {
    tx: SendRequest<RequestBody>,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<HashMap<u64, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// Takes an idle connection to endpoint `key` that is open and younger than `max_idle`.
pub fn checkout(key: u64, max_idle: Duration) -> Option<SendRequest<RequestBody>> {
    IDLE.with(|p| {
        let mut pools = p.borrow_mut();
        let list = pools.get_mut(&key)?;
        while let Some(idle) = list.pop() {
            if !idle.tx.is_closed() && idle.since.elapsed() < max_idle {
                return Some(idle.tx);
            }
        }
        None
    })
}

/// Returns a connection whose response has been fully read.
pub fn checkin(key: u64, tx: SendRequest<RequestBody>) {
    if tx.is_closed() {
        return;
    }
    IDLE.with(|p| {
        let mut pools = p.borrow_mut();
        let list = pools.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    });
}
