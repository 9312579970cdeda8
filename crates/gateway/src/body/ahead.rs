//! Request flow, bodies (`externalAuth.body`): the first bytes of a request body, read after
//! route lookup and before the rule's policy chain so that an auth service can be sent them. What
//! was read waits in the request's extensions; the upstream body (`proxy::body::RequestBody`)
//! passes it on ahead of the rest, so the backend, a retry's replay and a mirror's copy all get the
//! body intact. Rules whose policies do not ask for the body never get here (an `Option` check).

use crate::error::ErrorKind;
use crate::policy::Chain;
use bytes::{Bytes, BytesMut};
use http::{Extensions, HeaderMap, Request};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;

/// How long the client gets to send the part of its body the auth service is to be sent. The
/// body is then held by the gateway, not by a backend's read timeout: a client trickling it must
/// not hold a request open for ever.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How the read ahead ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AheadEnd {
    /// The whole body arrived (it may be empty).
    Whole,
    /// The body is longer than was to be read: the rest has not been read (when the declared
    /// `Content-Length` says so, nothing has been read).
    Longer,
    /// The body failed: broken by the client (`BadRequest`) or cut as it went away.
    Failed(ErrorKind),
    /// The body did not arrive within `READ_TIMEOUT`.
    Slow,
}

/// The start of a request body, read ahead of the policy chain.
#[derive(Clone, Debug)]
pub(crate) struct ReadAhead {
    /// Data frames read, in order.
    chunks: Vec<Bytes>,
    /// The trailers, when the body ended with some.
    trailers: Option<HeaderMap>,
    /// Data bytes read.
    size: usize,
    /// How the read ended.
    pub(crate) end: AheadEnd,
}

impl ReadAhead {
    /// Reads `body` until it ends or more than `max` bytes have arrived. `refuse_longer`: a
    /// declared length above `max` is not read at all (the request is going to be refused).
    pub(crate) async fn read(body: &mut Incoming, max: usize, refuse_longer: bool) -> Self {
        let mut ahead = ReadAhead {
            chunks: Vec::new(),
            trailers: None,
            size: 0,
            end: AheadEnd::Whole,
        };
        if body.is_end_stream() {
            return ahead;
        }
        if refuse_longer && body.size_hint().lower() > max as u64 {
            ahead.end = AheadEnd::Longer;
            return ahead;
        }
        let read = async {
            while ahead.size <= max {
                match body.frame().await {
                    None => return AheadEnd::Whole,
                    Some(Err(e)) => {
                        return AheadEnd::Failed(crate::proxy::body::request_body_fault(&e));
                    }
                    Some(Ok(frame)) => ahead.keep(frame),
                }
            }
            AheadEnd::Longer
        };
        ahead.end = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(end) => end,
            Err(_) => AheadEnd::Slow,
        };
        // A body that ended exactly at `max` bytes is whole, whatever the loop saw last.
        if ahead.end == AheadEnd::Longer && body.is_end_stream() {
            ahead.end = AheadEnd::Whole;
        }
        ahead
    }

    fn keep(&mut self, frame: Frame<Bytes>) {
        match frame.into_data() {
            Ok(data) => {
                self.size += data.len();
                if !data.is_empty() {
                    self.chunks.push(data);
                }
            }
            Err(frame) => self.trailers = frame.into_trailers().ok(),
        }
    }

    /// Whether the body is longer than `max` bytes (it may have been read only in part).
    pub(crate) fn longer_than(&self, max: usize) -> bool {
        self.size > max || self.end == AheadEnd::Longer
    }

    /// The body's first `max` bytes (copied only when they arrived in several chunks).
    pub(crate) fn prefix(&self, max: usize) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.slice(..one.len().min(max)),
            many => {
                let mut out = BytesMut::with_capacity(self.size.min(max));
                for c in many {
                    let room = max - out.len();
                    if room == 0 {
                        break;
                    }
                    out.extend_from_slice(&c[..c.len().min(room)]);
                }
                out.freeze()
            }
        }
    }

    /// What the upstream body is to pass on first.
    pub(crate) fn pending(self) -> Pending {
        Pending {
            bytes: self.size,
            chunks: self.chunks.into_iter(),
            trailers: self.trailers,
        }
    }
}

/// Reads ahead for the rule's chain when one of its `externalAuth` sections sends the body; the
/// one call the handler makes. What was read goes into the request's extensions.
pub(crate) async fn read_for(chain: &Chain, req: &mut Request<Incoming>) {
    let Some((max, refuse_longer)) = chain.read_ahead() else {
        return;
    };
    // Boxed: the read's state stays out of the handler's future on every other request.
    let ahead = Box::pin(ReadAhead::read(req.body_mut(), max, refuse_longer)).await;
    req.extensions_mut().insert(ahead);
}

/// What was read ahead for this request, taken out for its upstream body; `None` at the cost of
/// an `Option` check on rules whose chain reads nothing ahead.
#[inline]
pub(crate) fn take(chain: Option<&Chain>, ext: &mut Extensions) -> Option<ReadAhead> {
    chain?.read_ahead()?;
    ext.remove::<ReadAhead>()
}

/// The frames read ahead, as the upstream body passes them on.
pub(crate) struct Pending {
    /// Data bytes not yet passed on.
    bytes: usize,
    chunks: std::vec::IntoIter<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Pending {
    /// The next frame read ahead, if any is left.
    pub(crate) fn next_frame(&mut self) -> Option<Frame<Bytes>> {
        if let Some(c) = self.chunks.next() {
            self.bytes -= c.len();
            return Some(Frame::data(c));
        }
        self.trailers.take().map(Frame::trailers)
    }

    /// Whether every frame read ahead has been passed on.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.len() == 0 && self.trailers.is_none()
    }

    /// Data bytes not yet passed on.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ahead(chunks: &[&'static [u8]], end: AheadEnd) -> ReadAhead {
        ReadAhead {
            size: chunks.iter().map(|c| c.len()).sum(),
            chunks: chunks.iter().map(|c| Bytes::from_static(c)).collect(),
            trailers: None,
            end,
        }
    }

    #[test]
    fn the_prefix_is_the_first_bytes_across_chunks() {
        let a = ahead(&[b"hello ", b"wor", b"ld"], AheadEnd::Whole);
        assert_eq!(a.prefix(100), "hello world");
        assert_eq!(a.prefix(8), "hello wo");
        assert_eq!(a.prefix(6), "hello ");
        assert!(a.longer_than(8) && !a.longer_than(11));
        let one = ahead(&[b"abcdef"], AheadEnd::Longer);
        assert_eq!(one.prefix(4), "abcd");
        assert!(one.longer_than(100), "a body not read to its end is longer");
    }

    #[test]
    fn pending_frames_come_out_in_order_then_trailers() {
        let mut a = ahead(&[b"ab", b"c"], AheadEnd::Whole);
        let mut t = HeaderMap::new();
        t.insert("x-sum", "1".parse().unwrap());
        a.trailers = Some(t);
        let mut p = a.pending();
        assert_eq!(p.bytes(), 3);
        assert_eq!(p.next_frame().unwrap().into_data().unwrap(), "ab");
        assert_eq!(p.bytes(), 1);
        assert_eq!(p.next_frame().unwrap().into_data().unwrap(), "c");
        assert!(!p.is_empty());
        assert!(p.next_frame().unwrap().is_trailers());
        assert!(p.is_empty() && p.next_frame().is_none());
    }
}
