//! Config flow, at run time: discovery providers keep one backend's endpoint set current without a
//! reload. Each provider runs as a task on the control runtime (never on a worker that serves
//! traffic) and reports whole endpoint sets to a `Sink`; the backend's state turns them into a new
//! endpoint set, swapped in without touching requests in flight or the route table.
//!
//! A provider that fails keeps nothing itself: it reports the failure to the sink (which keeps the
//! last known endpoints and shows the error in `GET /backends`) and retries with backoff.

// Wired into the backend state by the upstreams issue; the providers land first.
#![allow(dead_code)]

use std::net::SocketAddr;

/// One endpoint as a provider found it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Discovered {
    /// Where to connect.
    pub(crate) address: SocketAddr,
    /// Relative weight (at least 1).
    pub(crate) weight: u32,
}

/// Where a provider sends what it finds. Implemented by the backend state; tests record calls.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Replaces the provider's whole endpoint set. Called on every change (not on every poll when
    /// nothing changed).
    fn update(&self, endpoints: Vec<Discovered>);
    /// Reports that the provider failed; the last set stays in use. Called once per state change
    /// (not on every retry of the same failure).
    fn failed(&self, error: String);
}
