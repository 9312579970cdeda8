//! Request flow, forwarding: one request's journey to a backend and back, the `Exchange`. After
//! the handler has found the rule (and its policy chain let the request through): the split picks
//! a backend, its circuit breaker admits the request, the balancer picks an endpoint; `prepare`
//! builds the upstream request head once; `attempt` sends it with the per-try and whole-request
//! timeouts (the `retry` module loops over attempts when the rule retries); `finish` turns the
//! upstream's response head into the client's. Every failure becomes one `ProxyError` response.

mod dialect;
mod retry;

use super::body::{Completion, LogContext, RequestBody, ResponseBody};
use super::forward::{self, Extra};
use super::handler::{error_response, ConnInfo, X_REQUEST_ID};
use crate::error::{Cause, ErrorKind, Progress, ProxyError};
use crate::policy::identity::Identity;
use crate::routing::Entry;
use crate::snapshot::{Snapshot, Target};
use crate::state::breaker::Limit;
use crate::telemetry::metrics::RequestMetrics;
use crate::upstream::backend::{BackendRt, EndpointRt};
use crate::upstream::client::{self, UpstreamBody};
use gatehouse_config::units::DisplayDuration;
use gatehouse_config::BackendProtocol;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request's context on its way to a backend: what every step of forwarding reads, carried
/// in one value instead of long parameter lists.
pub(crate) struct Exchange<'a> {
    /// The snapshot the request is served by, loaded once.
    pub(crate) snap: &'a Arc<Snapshot>,
    /// The downstream connection.
    pub(crate) conn: &'a ConnInfo,
    /// The matched rule and what it compiled to.
    pub(crate) entry: &'a Entry<Target>,
    /// The request id (`x-request-id`), sent upstream and back.
    pub(crate) rid: &'a HeaderValue,
    /// When the request arrived.
    pub(crate) start: Instant,
    /// The whole request's timeout from `start` (the rule's, shortened by a gRPC client's
    /// `grpc-timeout`); zero for none.
    pub(crate) timeout: Duration,
    /// The caller, as the rule's authentication policies established it (overrides by claim
    /// read it); `None` without auth.
    pub(crate) identity: Option<&'a Identity>,
}

impl Exchange<'_> {
    /// The rule's `requestLimits.maxBodySize`, when a policy sets one.
    pub(crate) fn max_body(&self) -> Option<u64> {
        (self.entry.target.policies.as_ref()).and_then(|c| c.max_body_size())
    }

    /// The error response for a failure before any upstream answered.
    fn fail(
        &self,
        err: ProxyError,
        metrics: &Arc<RequestMetrics>,
        log: Option<Box<LogContext>>,
    ) -> Response<ResponseBody> {
        let done = Completion::new(self.start, metrics.clone(), log);
        error_response(self.snap, err, self.rid, &self.entry.target.errors, done)
    }

    /// Forwards the request: backend, breaker, endpoint, prepare, attempts, finish.
    pub(crate) async fn forward(
        &self,
        req: Request<Incoming>,
        mut log: Option<Box<LogContext>>,
    ) -> Response<ResponseBody> {
        let target = &self.entry.target;
        let chosen =
            crate::routing::split::choose(target, req.headers(), req.uri().query(), self.identity);
        let Some(chosen) = chosen else {
            let err = ProxyError::new(
                ErrorKind::NoHealthyEndpoint,
                "no backend with a weight above 0",
            );
            return self.fail(err, &target.local_metrics, log);
        };
        let choice = chosen.choice;
        let backend = &choice.backend;
        // Before the balancer: an overloaded backend is refused at once, not queued.
        let slot = match backend.breaker_slot(Limit::Requests) {
            Ok(slot) => slot,
            Err(err) => return self.fail(err, &choice.metrics, log),
        };
        let bytes_in = log.as_mut().map(|l| {
            l.backend = Some(backend.id.clone());
            l.override_use = chosen.over.map(|o| o.as_str());
            let counter = Arc::new(AtomicU64::new(0));
            l.bytes_in = Some(counter.clone());
            counter
        });
        let picked = backend.pick_for(req.headers(), req.uri().query(), self.conn.peer.ip());
        let Some((ep, affinity)) = picked else {
            let err = ProxyError::new(
                ErrorKind::NoHealthyEndpoint,
                format!("backend {} has no available endpoint", backend.id),
            );
            return self.fail(err, &choice.metrics, log);
        };
        let (mut parts, body) = req.into_parts();
        let dialect = dialect::Dialect::take(&mut parts, &self.entry.rule, backend);
        let body = self.request_body(&mut parts, body, bytes_in, &dialect);
        let scheme = HeaderValue::from_static(self.conn.scheme);
        // The request's authority: the Host header (HTTP/1.1) or :authority (HTTP/2).
        let authority: Option<HeaderValue> = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        let mut extra = match self.prepare(&mut parts, backend, &ep, &scheme, authority.as_ref()) {
            Ok(extra) => extra,
            Err(err) => return self.fail(err, &choice.metrics, log),
        };
        dialect.apply(&mut parts);

        // From here the exchange is recorded even if it is abandoned (the client disconnects and
        // hyper drops this future): `done` decrements the in-flight count and logs when dropped.
        let mut done = Completion::new(self.start, choice.metrics.clone(), log);
        done.breaker = slot;
        ep.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        done.in_flight = Some(ep.shared.clone());
        let sent_at = done.log.as_ref().map(|_| Instant::now());
        let first = ep.key;
        let sent = Sent {
            parts,
            body,
            extra: &mut extra,
            dialect: &dialect,
        };
        let (result, ep) = self
            .attempts(sent, backend, ep, &choice.metrics, &mut done)
            .await;
        if let (Some(l), Some(sent_at)) = (done.log.as_mut(), sent_at) {
            l.upstream = Some(ep.address.clone());
            l.upstream_duration = Some(sent_at.elapsed());
        }
        match result {
            // A retry that moved to another endpoint pins the client there instead.
            Ok(resp) => {
                let mut resp = self.answer(
                    resp,
                    dialect,
                    backend,
                    &ep,
                    affinity || ep.key != first,
                    done,
                );
                if let Some(cookie) = chosen.set_cookie {
                    resp.headers_mut().append(header::SET_COOKIE, cookie);
                }
                resp
            }
            Err(err) => error_response(self.snap, err, self.rid, &self.entry.target.errors, done),
        }
    }

    /// The attempts of one exchange: the first, awaited as on a rule without retries, and on a
    /// rule with `retry`, the retries it wants. The last outcome and the endpoint it came from.
    async fn attempts(
        &self,
        sent: Sent<'_, '_>,
        backend: &BackendRt,
        ep: Arc<EndpointRt>,
        metrics: &Arc<RequestMetrics>,
        done: &mut Completion,
    ) -> (Result<Response<UpstreamBody>, ProxyError>, Arc<EndpointRt>) {
        let Sent {
            parts,
            body,
            extra,
            dialect,
        } = sent;
        match &self.entry.rule.retry {
            // The first attempt awaited here as in the arm below, sharing the future's storage
            // with it (one await or the other); the retries, rare, in a box of their own. (A
            // gRPC-Web text body is decoded as it streams, and not replayed.)
            Some(policy) if !dialect.text() => {
                extra.0[4] = retry::attempt_field(1);
                let leg = retry::Leg {
                    ex: self,
                    policy,
                    backend,
                    metrics,
                    extra,
                };
                let (first, replay) = leg.start(body, done);
                let head = client::Head::Kept(&parts);
                let per_try = policy.per_try_timeout;
                let result = self
                    .attempt(backend, &ep, head, first, extra, per_try)
                    .await;
                if leg.settled(&result, &parts, &replay) {
                    (result, ep)
                } else {
                    Box::pin(leg.retry(&parts, replay, result, ep, done)).await
                }
            }
            _ => {
                let head = client::Head::Owned(parts);
                (
                    self.attempt(backend, &ep, head, body, extra, None).await,
                    ep,
                )
            }
        }
    }

    /// The body to forward: what policies read ahead or kept for validation, then the client's
    /// stream, within `maxBodySize`, decoded for gRPC-Web text, and teed to a shadow when the
    /// rule mirrors (from the head the client sent: this runs before `prepare`).
    fn request_body(
        &self,
        parts: &mut http::request::Parts,
        body: Incoming,
        bytes_in: Option<Arc<AtomicU64>>,
        dialect: &dialect::Dialect,
    ) -> RequestBody {
        let target = &self.entry.target;
        let ahead = crate::body::ahead::take(target.policies.as_deref(), &mut parts.extensions);
        let body = RequestBody::new(body, bytes_in);
        let body = crate::policy::validate::kept(target, parts, body);
        let mut body = body.limited(self.max_body()).ahead(ahead);
        if dialect.text() {
            body = body.grpc_web_text();
        }
        match target.release.as_ref().and_then(|r| r.mirror.as_ref()) {
            Some(m) => m.start(&self.entry.rule, parts, self.rid, self.timeout, body),
            None => body,
        }
    }

    /// Builds the upstream request head in `parts`, once for every attempt: forwarding fields,
    /// the request id, the rule's header changes, Host, and the (rewritten) URI. Returns the
    /// fields the HTTP/1.1 codec writes straight into the head (the common case: an HTTP/1.1
    /// upstream, a request without forwarding headers or an id, no header changes in the rule).
    fn prepare<'x>(
        &'x self,
        parts: &mut Parts,
        backend: &BackendRt,
        ep: &EndpointRt,
        scheme: &'x HeaderValue,
        authority: Option<&'x HeaderValue>,
    ) -> Result<Extra<'x>, ProxyError> {
        let rule = &self.entry.rule;
        let h2 = backend.protocol == BackendProtocol::HTTP2;
        // gRPC needs `te: trailers` end to end, though TE is otherwise hop-by-hop.
        let wants_trailers = h2
            && (parts.headers.get(header::TE))
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
                });
        let scan = forward::scan(&parts.headers);
        forward::strip_found(&mut parts.headers, &scan);
        let mut extra = Extra::default();
        if !h2 && !scan.forwarded && rule.request_headers.is_empty() {
            extra = forward::forwarded_extra(&self.conn.forwarded_for, scheme, authority);
        } else {
            forward::set_forwarded(
                &mut parts.headers,
                &self.conn.forwarded_for,
                self.conn.peer.ip(),
                &self.snap.config.gateway.trusted_proxies,
                self.conn.scheme,
                authority,
            );
        }
        if !h2 && !scan.request_id && rule.request_headers.is_empty() {
            extra.0[3] = Some(("x-request-id", self.rid));
        } else {
            parts.headers.insert(X_REQUEST_ID.clone(), self.rid.clone());
        }
        if !rule.request_headers.is_empty() {
            forward::apply_mods(&mut parts.headers, &rule.request_headers);
        }
        // The attempt count is the gateway's to say on a retrying rule.
        if scan.attempts && rule.retry.is_some() {
            parts.headers.remove(retry::X_GATEHOUSE_ATTEMPTS);
        }
        if scan.client_cert || self.conn.client_cert.is_some() {
            let cert = self.conn.client_cert.as_ref();
            super::client_cert::set_header(&mut parts.headers, scan.client_cert, cert);
        }
        if h2 && wants_trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        self.upstream_uri(parts, h2, &ep.address, authority.cloned())?;
        Ok(extra)
    }

    /// Sets the version, Host and URI the upstream gets: absolute-form for HTTP/2, origin-form
    /// for HTTP/1.1, after the rule's rewrite.
    fn upstream_uri(
        &self,
        parts: &mut Parts,
        h2: bool,
        address: &str,
        authority: Option<HeaderValue>,
    ) -> Result<(), ProxyError> {
        let target = &self.entry.target;
        // HTTP/1.1 requests already carry the right Host unless it is rewritten.
        let from_host_header = parts.uri.authority().is_none();
        let upstream_host = target.host_rewrite.clone().or(authority);
        let rewritten =
            forward::rewrite_path(&self.entry.rule, parts.uri.path(), parts.uri.query());
        let uri = if h2 {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            let host = (upstream_host.as_ref())
                .and_then(|h| h.to_str().ok())
                .unwrap_or(address);
            let pq = (rewritten.as_deref())
                .or(parts.uri.path_and_query().map(|p| p.as_str()))
                .unwrap_or("/");
            Some(
                format!("http://{host}{pq}")
                    .parse::<Uri>()
                    .map_err(|e| e.to_string()),
            )
        } else {
            parts.version = Version::HTTP_11;
            if let Some(h) =
                upstream_host.filter(|_| target.host_rewrite.is_some() || !from_host_header)
            {
                parts.headers.insert(header::HOST, h);
            }
            match rewritten {
                Some(pq) => Some(pq.parse::<Uri>().map_err(|e| e.to_string())),
                // HTTP/1.1 upstreams get origin-form; an absolute-form or HTTP/2 request URI is
                // cut down to its path and query (a cheap clone of shared bytes).
                None if parts.uri.scheme().is_some() || parts.uri.authority().is_some() => {
                    let mut p = http::uri::Parts::default();
                    p.path_and_query = parts.uri.path_and_query().cloned();
                    Some(Uri::from_parts(p).map_err(|e| e.to_string()))
                }
                None => None,
            }
        };
        match uri {
            Some(Ok(u)) => parts.uri = u,
            Some(Err(e)) => {
                return Err(ProxyError::new(
                    ErrorKind::BadRequest,
                    format!("cannot build upstream URI: {e}"),
                ))
            }
            None => {}
        }
        Ok(())
    }

    /// One attempt: sends `head` and `body` to `ep` and waits for the response head, within the rule's
    /// `timeout` (measured from the request's arrival, retries included) and `per_try`, if any.
    /// The outcome feeds outlier detection.
    async fn attempt(
        &self,
        backend: &BackendRt,
        ep: &EndpointRt,
        head: client::Head<'_>,
        body: RequestBody,
        extra: &Extra<'_>,
        per_try: Option<Duration>,
    ) -> Result<Response<UpstreamBody>, ProxyError> {
        let whole = self.timeout;
        let overall =
            (!whole.is_zero()).then(|| tokio::time::Instant::from_std(self.start) + whole);
        let per_try_until = per_try.map(|d| tokio::time::Instant::now() + d);
        // The send future is large: made where it is awaited, never moved through a local.
        let result = match (overall, per_try_until) {
            (None, None) => client::send(backend, ep, head, body, extra, self.start).await,
            (overall, per_try_until) => {
                let per_try_first = per_try_until.is_some_and(|p| overall.is_none_or(|o| p < o));
                let until = match (overall, per_try_until) {
                    (Some(o), Some(p)) => o.min(p),
                    (o, p) => o.or(p).unwrap_or_else(tokio::time::Instant::now),
                };
                // Coarse, and cheap (see `deadline`).
                let timed = super::deadline::timed(
                    until,
                    client::send(backend, ep, head, body, extra, self.start),
                );
                match timed.await {
                    Ok(r) => r,
                    Err(_) if per_try_first => Err(timed_out(backend, per_try.unwrap_or(whole))
                        .because(Cause::PerTryTimeout)
                        .at(Progress::HeadSent)),
                    Err(_) => Err(timed_out(backend, whole).at(Progress::HeadSent)),
                }
            }
        };
        if let Some(od) = &backend.outlier {
            let failed = match &result {
                Ok(r) => r.status().is_server_error(),
                Err(e) => e.kind.counts_against_endpoint(),
            };
            crate::health::outlier::record(od, &backend.state, ep, failed);
        }
        result
    }

    /// The client's response head from the upstream's: hop-by-hop fields out (HTTP/2; the
    /// HTTP/1.1 codec leaves them out as it parses), the rule's header changes, the affinity
    /// cookie, the request id; the body streams through `ResponseBody`, which ends the exchange.
    fn finish(
        &self,
        resp: Response<UpstreamBody>,
        backend: &BackendRt,
        ep: &EndpointRt,
        affinity: bool,
        mut done: Completion,
    ) -> Response<ResponseBody> {
        let rule = &self.entry.rule;
        let (mut parts, body) = resp.into_parts();
        if matches!(body, UpstreamBody::H2(_)) {
            forward::strip_hop_by_hop(&mut parts.headers);
        }
        if !rule.response_headers.is_empty() {
            forward::apply_mods(&mut parts.headers, &rule.response_headers);
        }
        if affinity {
            if let Some(cookie) = backend.affinity_cookie(ep) {
                parts.headers.append(header::SET_COOKIE, cookie);
            }
        }
        parts.headers.insert(X_REQUEST_ID.clone(), self.rid.clone());
        done.status = parts.status.as_u16();
        Response::from_parts(
            parts,
            ResponseBody::upstream(body, Some(done), backend.read_timeout),
        )
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

/// What goes upstream, prepared once for every attempt.
struct Sent<'a, 'e> {
    parts: http::request::Parts,
    body: RequestBody,
    extra: &'a mut Extra<'e>,
    dialect: &'a dialect::Dialect,
}
