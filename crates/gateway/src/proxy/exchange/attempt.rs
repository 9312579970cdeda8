//! Request flow, forwarding (one attempt): the upstream send bounded by the whole-request and
//! per-try timeouts, its failures named, its outcome fed to outlier detection. A hand-written
//! future rather than an `async fn`: the send future inside is the largest part of a request's
//! state, and one generator less around it is one copy of it less per request.

use super::Exchange;
use crate::error::{Cause, ErrorKind, Progress, ProxyError};
use crate::proxy::body::RequestBody;
use crate::proxy::deadline::{Elapsed, Timed};
use crate::proxy::forward::Extra;
use crate::upstream::backend::{BackendRt, EndpointRt};
use crate::upstream::client;
use crate::upstream::client::UpstreamBody;
use gatehouse_config::units::DisplayDuration;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

pin_project_lite::pin_project! {
    /// See `Exchange::attempt`.
    pub(super) struct Attempt<'a, F> {
        #[pin]
        send: Timed<F>,
        backend: &'a BackendRt,
        ep: &'a EndpointRt,
        // The per-try timeout ends first (it names the failure).
        per_try_first: bool,
        // The limit that ends the attempt, for the message.
        limit: Duration,
    }
}

impl Exchange<'_> {
    /// One attempt: sends `req` to `ep` and waits for the response head, within the rule's
    /// `timeout` (measured from the request's arrival, retries included) and `per_try`, if any.
    /// The outcome feeds outlier detection.
    pub(super) fn attempt<'s>(
        &'s self,
        backend: &'s BackendRt,
        ep: &'s EndpointRt,
        req: Request<RequestBody>,
        extra: &'s Extra<'_>,
        per_try: Option<Duration>,
    ) -> Attempt<'s, impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + 's> {
        let whole = self.timeout;
        let overall =
            (!whole.is_zero()).then(|| tokio::time::Instant::from_std(self.start) + whole);
        let per_try_until = per_try.map(|d| tokio::time::Instant::now() + d);
        let per_try_first = per_try_until.is_some_and(|p| overall.is_none_or(|o| p < o));
        let until = match (overall, per_try_until) {
            (Some(o), Some(p)) => Some(o.min(p)),
            (o, p) => o.or(p),
        };
        Attempt {
            // Coarse, and cheap (see `deadline`).
            send: crate::proxy::deadline::maybe_timed(
                until,
                client::send(backend, ep, req, extra, self.start),
            ),
            backend,
            ep,
            per_try_first,
            limit: match per_try_first {
                true => per_try.unwrap_or(whole),
                false => whole,
            },
        }
    }
}

impl<F> Future for Attempt<'_, F>
where
    F: Future<Output = Result<Response<UpstreamBody>, ProxyError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match ready!(this.send.poll(cx)) {
            Ok(result) => result,
            Err(Elapsed) => {
                let err = timed_out(this.backend, *this.limit).at(Progress::HeadSent);
                Err(match *this.per_try_first {
                    true => err.because(Cause::PerTryTimeout),
                    false => err,
                })
            }
        };
        if let Some(od) = &this.backend.outlier {
            let failed = match &result {
                Ok(r) => r.status().is_server_error(),
                Err(e) => e.kind.counts_against_endpoint(),
            };
            crate::health::outlier::record(od, &this.backend.state, this.ep, failed);
        }
        Poll::Ready(result)
    }
}

/// The error of an attempt that ran out of `limit`. The backend's name, never the endpoint's
/// address: clients must not learn where services run (the access log names the endpoint).
fn timed_out(backend: &BackendRt, limit: Duration) -> ProxyError {
    ProxyError::new(
        ErrorKind::Timeout,
        format!(
            "backend {} did not answer within {}",
            backend.id,
            DisplayDuration(limit)
        ),
    )
}
