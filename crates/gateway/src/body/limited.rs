//! Request flow, forwarding: a request body counted as it streams upstream and cut at a policy's
//! `requestLimits.maxBodySize`. A declared `Content-Length` over the limit is refused before any of
//! it is read (see `policy::chain`); this catches chunked and HTTP/2 bodies, which declare none.
//! Cutting makes the body fail, so the upstream request is aborted (never sent complete but short),
//! and the exchange answers 413 when no response has started.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The error a body reports once it has gone past its limit.
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// The limit, in bytes.
    pub(crate) max: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body larger than {} bytes", self.max)
    }
}

impl std::error::Error for TooLarge {}

/// A byte budget for one request body. `tripped` is shared with whoever sends the body, because an
/// HTTP/2 client library reports a failed body only as a reset stream.
#[derive(Debug, Clone)]
pub(crate) struct BodyLimit {
    max: u64,
    seen: u64,
    tripped: Arc<AtomicBool>,
}

impl BodyLimit {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: u64) -> Self {
        BodyLimit {
            max,
            seen: 0,
            tripped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts `len` more bytes; an error once the total exceeds the limit (and from then on).
    pub(crate) fn count(&mut self, len: usize) -> Result<(), TooLarge> {
        self.seen = self.seen.saturating_add(len as u64);
        if self.seen > self.max {
            self.tripped.store(true, Ordering::Relaxed);
            return Err(TooLarge { max: self.max });
        }
        Ok(())
    }

    /// A handle that tells, after the body is gone, whether it was cut.
    pub(crate) fn tripped(&self) -> Arc<AtomicBool> {
        self.tripped.clone()
    }
}

/// Whether `e` (a request body's error, possibly wrapped by a client library) is a cut body.
pub(crate) fn is_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<TooLarge>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_cuts_past_it() {
        let mut l = BodyLimit::new(10);
        let tripped = l.tripped();
        assert!(l.count(4).is_ok());
        assert!(l.count(6).is_ok(), "exactly the limit is allowed");
        assert!(!tripped.load(Ordering::Relaxed));
        let e = l.count(1).unwrap_err();
        assert!(tripped.load(Ordering::Relaxed));
        assert!(is_too_large(&e));
        assert!(l.count(0).is_err(), "stays cut");
    }
}
