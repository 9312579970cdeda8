//! Request flow, forwarding (mirror): after the split has picked the primary backend and before
//! the request head is prepared for it, a sampled share of a rule's requests is copied to a
//! shadow backend, fire and forget. The copy runs in its own task with its own deadline; its
//! answer is read and discarded, and nothing it does reaches the client's exchange: the primary
//! request never waits for it. The copy's body comes from a tee on the client's body
//! (`body::tee`), so the shadow request leaves once the primary has read the whole body; bodies
//! over `maxBodySize` are not mirrored. Copies in flight per rule are bounded by `maxInFlight`;
//! those over it are dropped and counted (`gatehouse_mirror_requests_total{result="dropped_busy"}`).

use super::body::RequestBody;
use super::forward;
use super::handler::{DEFAULT_ROUTE_TIMEOUT, X_REQUEST_ID};
use crate::body::replay::ReplaySource;
use crate::body::tee::Tee;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::mirror_metrics::MirrorCounters;
use crate::upstream::client::{self, UpstreamBody};
use crate::upstream::BackendRt;
use bytes::Bytes;
use gatehouse_config::{BackendProtocol, ObjectId, Rule};
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Marks a mirrored copy, so the shadow (and its logs) can tell it from real traffic.
static X_GATEHOUSE_SHADOW: HeaderName = HeaderName::from_static("x-gatehouse-shadow");

/// A rule's mirror, compiled.
pub(crate) struct Mirror {
    id: ObjectId,
    backend: Arc<BackendRt>,
    /// Share of requests copied, 0-100.
    percent: u32,
    max_body: usize,
    max_in_flight: usize,
    /// Copies started and not finished.
    in_flight: Arc<AtomicUsize>,
    counters: MirrorCounters,
}

/// A unit of `maxInFlight`, given back when the copy ends, whatever became of it.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the copy's task needs, owned.
struct Copy {
    backend: Arc<BackendRt>,
    head: Parts,
    body: Option<tokio::sync::oneshot::Receiver<Bytes>>,
    deadline: Duration,
    counters: MirrorCounters,
    _slot: Slot,
}

impl Mirror {
    /// Compiles `m` of a rule of `route`, sending to `backend`.
    pub(crate) fn new(
        route: &str,
        m: &gatehouse_config::Mirror,
        backend: Arc<BackendRt>,
        metrics: &Metrics,
    ) -> Self {
        Mirror {
            id: m.backend.clone(),
            counters: metrics.mirror.counters(route, &backend.id),
            backend,
            percent: m.percent,
            max_body: m.max_body_size,
            max_in_flight: m.max_in_flight as usize,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The shadow backend's id.
    pub(crate) fn backend_id(&self) -> &ObjectId {
        &self.id
    }

    /// The shadow backend.
    pub(crate) fn backend(&self) -> &Arc<BackendRt> {
        &self.backend
    }

    /// Copies the request (head `parts`, as the client sent it) to the shadow when it is sampled,
    /// and returns the body the primary reads: `body` itself, or `body` with a tee.
    pub(crate) fn start(
        &self,
        rule: &Rule,
        parts: &Parts,
        rid: &HeaderValue,
        timeout: Duration,
        body: RequestBody,
    ) -> RequestBody {
        if self.percent < 100 && fastrand::u32(..100) >= self.percent {
            return body;
        }
        let empty = body.is_end_stream();
        if !empty && body.size_hint().lower() > self.max_body as u64 {
            self.counters.dropped_body.inc();
            return body;
        }
        let taken = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.in_flight.clone());
        if taken >= self.max_in_flight {
            self.counters.dropped_busy.inc();
            return body;
        }
        let (body, rx) = if empty {
            (body, None)
        } else {
            let (tee, rx) = Tee::new(self.max_body);
            (body.teed(tee), Some(rx))
        };
        let Some(head) = shadow_head(rule, parts, rid, self.backend.protocol) else {
            self.counters.failed.inc();
            return body;
        };
        let copy = Copy {
            backend: self.backend.clone(),
            head,
            body: rx,
            deadline: if timeout.is_zero() {
                DEFAULT_ROUTE_TIMEOUT
            } else {
                timeout
            },
            counters: self.counters.clone(),
            _slot: slot,
        };
        tokio::spawn(copy.run());
        body
    }
}

impl Copy {
    /// Waits for the body, sends the copy and reads its answer to the end, within the deadline
    /// (counted from when the body is complete: a slow upload is the client's time, not the
    /// shadow's).
    async fn run(self) {
        let body = match self.body {
            None => Bytes::new(),
            Some(rx) => match rx.await {
                Ok(b) => b,
                Err(_) => {
                    self.counters.dropped_body.inc();
                    return;
                }
            },
        };
        let mut head = self.head;
        if !body.is_empty() {
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let body = if body.is_empty() {
            RequestBody::empty()
        } else {
            RequestBody::replay(ReplaySource::kept(body).reader())
        };
        let backend = self.backend;
        let exchange = async {
            let ep = backend.pick()?;
            let head = client::Head::Owned(head);
            let resp = client::send(
                &backend,
                &ep,
                head,
                body,
                &Default::default(),
                Instant::now(),
            )
            .await
            .ok()?;
            drain(resp.into_body()).await.then_some(())
        };
        match tokio::time::timeout(self.deadline, exchange).await {
            Ok(Some(())) => self.counters.answered.inc(),
            _ => self.counters.failed.inc(),
        };
    }
}

/// Reads a response body to its end (so an HTTP/1.1 connection goes back to the pool).
async fn drain(body: UpstreamBody) -> bool {
    async fn all<B: Body + Unpin>(mut b: B) -> bool {
        loop {
            match b.frame().await {
                None => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    }
    match body {
        UpstreamBody::H1(b) => all(b).await,
        UpstreamBody::H2(b) => all(b).await,
        UpstreamBody::Mapped(b) => all(b).await,
    }
}

/// The shadow's request head: the client's, rewritten as the rule rewrites it, hop-by-hop fields
/// out, Host with `-shadow` (before any port), `x-gatehouse-shadow: true` and the request id.
fn shadow_head(
    rule: &Rule,
    parts: &Parts,
    rid: &HeaderValue,
    protocol: BackendProtocol,
) -> Option<Parts> {
    let mut head = Request::new(()).into_parts().0;
    head.method = parts.method.clone();
    head.headers = parts.headers.clone();
    forward::strip_hop_by_hop(&mut head.headers);
    head.headers.remove(header::CONTENT_LENGTH);
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => (parts.headers.get(header::HOST)).and_then(|h| h.to_str().ok())?,
    };
    let host = shadow_host(rule.rewrite.host.as_deref().unwrap_or(authority));
    let rewritten = forward::rewrite_path(rule, parts.uri.path(), parts.uri.query());
    let pq = (rewritten.as_deref())
        .or(parts.uri.path_and_query().map(|p| p.as_str()))
        .unwrap_or("/");
    head.headers
        .insert(X_GATEHOUSE_SHADOW.clone(), HeaderValue::from_static("true"));
    head.headers.insert(X_REQUEST_ID.clone(), rid.clone());
    if protocol == BackendProtocol::HTTP2 {
        head.version = Version::HTTP_2;
        head.headers.remove(header::HOST);
        head.uri = format!("http://{host}{pq}").parse::<Uri>().ok()?;
    } else {
        head.version = Version::HTTP_11;
        head.headers
            .insert(header::HOST, HeaderValue::from_str(&host).ok()?);
        head.uri = pq.parse::<Uri>().ok()?;
    }
    Some(head)
}

/// `host` with `-shadow` after the name, before any port: `api.example.com:8080` becomes
/// `api.example.com-shadow:8080`.
fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        // An IPv6 literal's colons are inside brackets.
        Some((name, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{name}-shadow:{port}")
        }
        _ => format!("{host}-shadow"),
    }
}

#[cfg(test)]
mod tests {
    use super::shadow_host;

    #[test]
    fn the_shadow_host_keeps_the_port() {
        assert_eq!(shadow_host("api.example.com"), "api.example.com-shadow");
        assert_eq!(
            shadow_host("api.example.com:8080"),
            "api.example.com-shadow:8080"
        );
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow_host("[::1]"), "[::1]-shadow");
    }
}
