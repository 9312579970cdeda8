//! Request flow, bodies (mirror): a tee on the downstream request body. The body streams to the
//! primary backend untouched while the chunks it passes (reference-counted `Bytes`, no copy) are
//! kept, up to the rule's `mirror.maxBodySize`; when the body has ended, the kept copy goes to the
//! shadow request, which waits for it. A body that outgrows the limit, fails, or is abandoned
//! before its end is not mirrored (the shadow request is dropped, never sent with half a body).

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use tokio::sync::oneshot;

/// The kept copy of a request body, on the primary's side.
pub(crate) struct Tee {
    kept: Vec<Bytes>,
    size: usize,
    max: usize,
    /// Taken when the copy is handed over or given up.
    tx: Option<oneshot::Sender<Bytes>>,
}

impl Tee {
    /// A tee keeping up to `max` bytes, and where the whole body arrives once it has ended.
    pub(crate) fn new(max: usize) -> (Tee, oneshot::Receiver<Bytes>) {
        let (tx, rx) = oneshot::channel();
        let tee = Tee {
            kept: Vec::new(),
            size: 0,
            max,
            tx: Some(tx),
        };
        (tee, rx)
    }

    /// Sees one polled frame of the body (`ended`: the body has nothing more after it).
    pub(crate) fn observe<E>(&mut self, polled: &Option<Result<Frame<Bytes>, E>>, ended: bool) {
        if self.tx.is_none() {
            return;
        }
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.size += data.len();
                    if self.size > self.max {
                        self.give_up();
                        return;
                    }
                    self.kept.push(data.clone());
                }
                if ended {
                    self.finish();
                }
            }
            None => self.finish(),
            // A broken body is not mirrored.
            Some(Err(_)) => self.give_up(),
        }
    }

    fn give_up(&mut self) {
        self.tx = None;
        self.kept = Vec::new();
    }

    /// Hands the whole body to the shadow request (one copy only when it came in several chunks).
    fn finish(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let body = match self.kept.len() {
            0 => Bytes::new(),
            1 => self.kept.pop().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.size);
                for c in self.kept.drain(..) {
                    all.extend_from_slice(&c);
                }
                all.freeze()
            }
        };
        // The shadow may have been given up (dropped): nothing to do then.
        let _ = tx.send(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Polled = Option<Result<Frame<Bytes>, ()>>;

    fn data(s: &'static str) -> Polled {
        Some(Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
    }

    #[test]
    fn a_body_within_the_limit_is_handed_over_whole_at_its_end() {
        let (mut tee, mut rx) = Tee::new(10);
        tee.observe(&data("hello "), false);
        assert!(rx.try_recv().is_err(), "not before the end");
        tee.observe(&data("you"), false);
        tee.observe(&None::<Result<Frame<Bytes>, ()>>, true);
        assert_eq!(rx.try_recv().unwrap(), "hello you");
    }

    #[test]
    fn the_last_chunk_can_end_the_body() {
        let (mut tee, mut rx) = Tee::new(10);
        tee.observe(&data("abc"), true);
        assert_eq!(rx.try_recv().unwrap(), "abc");
    }

    #[test]
    fn a_body_over_the_limit_or_broken_or_abandoned_is_not_mirrored() {
        let (mut tee, mut rx) = Tee::new(4);
        tee.observe(&data("abc"), false);
        tee.observe(&data("de"), false);
        tee.observe(&None::<Result<Frame<Bytes>, ()>>, true);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));

        let (mut tee, mut rx) = Tee::new(4);
        tee.observe(&Some(Err::<Frame<Bytes>, ()>(())), false);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));

        let (tee, mut rx) = Tee::new(4);
        drop(tee);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
