//! Request flow, bodies (retries): a request body kept for replay. The first attempt streams the
//! downstream body as it arrives, and the chunks it passes on are kept (reference-counted `Bytes`,
//! no copy) up to the rule's `retry.maxBodySize`; a later attempt reads the kept chunks first,
//! then whatever of the body has not arrived yet. A body that outgrows the limit drops what it
//! kept and keeps streaming: that request is no longer retried.

use crate::proxy::body::RequestBody;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// The downstream body and what has been kept of it.
struct Shared {
    body: RequestBody,
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    size: usize,
    max: usize,
    /// More than `max` arrived: nothing is kept any more.
    overflow: bool,
    /// The downstream body ended.
    ended: bool,
    /// The downstream body failed (the client went away, or sent a broken body).
    failed: bool,
}

/// A body shared by the attempts of one exchange.
pub(crate) struct ReplaySource(Arc<Mutex<Shared>>);

impl ReplaySource {
    /// Keeps up to `max` bytes of `body` for replay.
    pub(crate) fn new(body: RequestBody, max: usize) -> Self {
        ReplaySource(Arc::new(Mutex::new(Shared {
            body,
            chunks: Vec::new(),
            trailers: None,
            size: 0,
            max,
            overflow: false,
            ended: false,
            failed: false,
        })))
    }

    /// A body that has already arrived whole (a mirror's copy, `proxy::mirror`).
    pub(crate) fn kept(body: Bytes) -> Self {
        let size = body.len();
        ReplaySource(Arc::new(Mutex::new(Shared {
            body: RequestBody::empty(),
            chunks: vec![body],
            trailers: None,
            size,
            max: size,
            overflow: false,
            ended: true,
            failed: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A body for the next attempt: from the start.
    pub(crate) fn reader(&self) -> Replay {
        Replay {
            shared: self.0.clone(),
            pos: 0,
            trailers_sent: false,
        }
    }

    /// Whether another attempt can still be given the whole body.
    pub(crate) fn replayable(&self) -> bool {
        let s = self.lock();
        !s.overflow && !s.failed
    }
}

/// One attempt's view of a `ReplaySource`.
pub(crate) struct Replay {
    shared: Arc<Mutex<Shared>>,
    /// Kept chunks already passed on by this attempt.
    pos: usize,
    trailers_sent: bool,
}

impl Replay {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = crate::proxy::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::proxy::body::BodyError>>> {
        let this = &mut *self;
        let mut guard = this.shared.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        if !s.overflow && this.pos < s.chunks.len() {
            this.pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(s.chunks[this.pos - 1].clone()))));
        }
        if s.ended || s.failed {
            if !this.trailers_sent {
                this.trailers_sent = true;
                if let Some(t) = &s.trailers {
                    return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
                }
            }
            return Poll::Ready(None);
        }
        match Pin::new(&mut s.body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.ended = true;
                this.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !s.overflow {
                        s.size += data.len();
                        if s.size > s.max {
                            s.overflow = true;
                            s.chunks = Vec::new();
                        } else {
                            s.chunks.push(data.clone());
                            this.pos = s.chunks.len();
                        }
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    s.trailers = Some(t.clone());
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.lock();
        let kept_done = s.overflow || self.pos >= s.chunks.len();
        let trailers_done = self.trailers_sent || s.trailers.is_none();
        kept_done && trailers_done && (s.ended || s.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let s = self.lock();
        if s.ended && !s.overflow {
            let rest: usize = s.chunks[self.pos.min(s.chunks.len())..]
                .iter()
                .map(Bytes::len)
                .sum();
            return SizeHint::with_exact(rest as u64);
        }
        SizeHint::default()
    }
}
