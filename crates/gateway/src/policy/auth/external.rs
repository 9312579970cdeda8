//! Request flow, policy chain, after the other auth sections: `externalAuth`. The request's
//! method, target (`x-forwarded-method`, `x-forwarded-uri`, `x-forwarded-host`), client address
//! (`x-forwarded-for`) and the listed header fields are sent to an HTTP service, which decides:
//! a 2xx lets the request go on and may give it header fields (`upstreamHeaders`); a 3xx or
//! 4xx answer is handed to the client as it came (status, fields, body); a 5xx, no answer or
//! no answer within `timeout` is a failure, which `failureMode` turns into 403 (`Deny`, the
//! default) or a pass (`Allow`). Decisions are cached per credential (the listed fields' values,
//! hashed) for `cache.ttl`: a cached credential costs a hash and a map lookup, no request.
//! With `body`, the start of the request body (read before the chain, `body::ahead`) is sent
//! too, and is part of the credential the cache is keyed by.

use super::super::{Effects, Input, Rejection};
use crate::body::ahead::{AheadEnd, ReadAhead};
use crate::error::{ErrorKind, ProxyError};
use crate::state::auth_cache::{CredentialKey, DecisionCache};
use crate::state::policy::PolicyPlan;
use bytes::Bytes;
use gatehouse_config::{AuthBody, ExternalAuth, FailureMode, Policy};
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest answer body taken from the auth service (it is handed to the client).
const MAX_ANSWER: usize = 64 * 1024;
/// Idle connections to the auth service kept for reuse.
const MAX_IDLE: usize = 32;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Says the service was sent only the first `body.maxSize` bytes of a longer body.
static PARTIAL_BODY: HeaderName = HeaderName::from_static("x-gatehouse-partial-body");

/// `externalAuth.body` of the rule's policies: how many bytes of the body to read before the
/// chain runs (the largest `maxSize`), and whether a declared length above that may be refused
/// unread (no section accepts a partial body). `None` when no section sends the body.
pub(crate) fn read_ahead(policies: &[&Policy]) -> Option<(usize, bool)> {
    let bodies = (policies.iter()).filter_map(|p| p.external_auth.as_ref()?.body.as_ref());
    bodies.fold(None, |acc, b| {
        let (max, refuse) = acc.unwrap_or((0, true));
        Some((max.max(b.max_size), refuse && !b.allow_partial))
    })
}

/// What the auth service said about a credential.
#[derive(Clone, Debug)]
pub(crate) enum Decision {
    /// 2xx: go on, with these fields (of `upstreamHeaders`) on the upstream request.
    Allow(Arc<[(HeaderName, HeaderValue)]>),
    /// Anything else it answered: handed to the client.
    Deny(Arc<Denial>),
}

/// The auth service's refusal, as the client gets it.
#[derive(Debug)]
pub(crate) struct Denial {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// A compiled `externalAuth`.
pub(crate) struct ExternalAuthStep {
    /// `namespace/name` of the policy (logs).
    policy: Arc<str>,
    /// `host:port` to connect to.
    authority: Box<str>,
    /// The Host field of requests to the service.
    host: HeaderValue,
    /// Path and query on the service.
    path: Box<str>,
    timeout: Duration,
    headers: Box<[HeaderName]>,
    upstream_headers: Box<[HeaderName]>,
    failure_mode: FailureMode,
    cache: Option<Arc<DecisionCache>>,
    /// `body`: the start of the request body is sent too.
    body: Option<AuthBody>,
    /// Idle HTTP/1.1 connections to the service.
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

fn names(list: &[String]) -> Result<Box<[HeaderName]>, String> {
    (list.iter())
        .map(|n| HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("bad header name {n}")))
        .collect()
}

impl ExternalAuthStep {
    /// The step of `p`'s `externalAuth`, or `None` when it has none.
    pub(crate) fn compile(p: &Policy, plan: &PolicyPlan) -> Result<Option<Self>, String> {
        let Some(ext) = &p.external_auth else {
            return Ok(None);
        };
        Ok(Some(Self::new(
            p.id.to_string().into(),
            ext,
            plan.auth_cache(&p.id).cloned(),
        )?))
    }

    fn new(
        policy: Arc<str>,
        ext: &ExternalAuth,
        cache: Option<Arc<DecisionCache>>,
    ) -> Result<Self, String> {
        let rest = (ext.url.strip_prefix("http://"))
            .ok_or_else(|| format!("policy {policy}: externalAuth.url must be http://"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let connect = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(ExternalAuthStep {
            host: HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
            authority: connect.into(),
            path: path.into(),
            timeout: ext.timeout,
            headers: names(&ext.headers)?,
            upstream_headers: names(&ext.upstream_headers)?,
            failure_mode: ext.failure_mode,
            cache,
            body: ext.body.clone(),
            policy,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Decides from the cache without waiting; `None` when the service must be asked.
    pub(crate) fn check(
        &self,
        input: &Input,
        fx: &mut Effects,
    ) -> Option<Result<(), Box<Rejection>>> {
        if let Some(b) = &self.body {
            if let Err(r) = self.body_fits(b, input) {
                return Some(Err(r));
            }
        }
        let decision = self.cache.as_ref()?.get(&self.key(input))?;
        Some(self.apply(&decision, fx))
    }

    /// The fields the service vouches for (`upstreamHeaders`).
    pub(crate) fn vouched(&self) -> &[HeaderName] {
        &self.upstream_headers
    }

    /// As an `anyOf` alternative (`policy::auth`): the cached decision, or `Pending`.
    pub(crate) fn verdict(&self, input: &Input, fx: &mut Effects) -> super::Verdict {
        match self.check(input, fx) {
            Some(result) => verdict_of(result),
            None => super::Verdict::Pending,
        }
    }

    /// As an `anyOf` alternative: the cached decision, or the service's.
    pub(crate) async fn verdict_async(
        &self,
        input: &Input<'_>,
        fx: &mut Effects,
    ) -> super::Verdict {
        match self.check(input, fx) {
            Some(result) => verdict_of(result),
            None => verdict_of(self.check_async(input, fx).await),
        }
    }

    /// Asks the service (within the timeout), caches its decision and applies it.
    pub(crate) async fn check_async(
        &self,
        input: &Input<'_>,
        fx: &mut Effects,
    ) -> Result<(), Box<Rejection>> {
        let asked = tokio::time::timeout(self.timeout, self.ask(input)).await;
        let decision = match asked {
            Ok(Ok(d)) => d,
            Ok(Err(why)) => return self.failed(&why, fx),
            Err(_) => return self.failed("no answer within the timeout", fx),
        };
        if let Some(cache) = &self.cache {
            cache.insert(self.key(input), decision.clone());
        }
        self.apply(&decision, fx)
    }

    /// Refuses a request whose body cannot be sent as configured: broken or abandoned (400,
    /// 499), too slow to arrive (408), or longer than `maxSize` without `allowPartial` (413).
    fn body_fits(&self, b: &AuthBody, input: &Input) -> Result<(), Box<Rejection>> {
        let Some(ahead) = input.extensions.get::<ReadAhead>() else {
            return Ok(());
        };
        let (kind, status, message) = match ahead.end {
            AheadEnd::Failed(kind) => (kind, None, "the request body broke off".to_string()),
            AheadEnd::Slow => (
                ErrorKind::BadRequest,
                Some(StatusCode::REQUEST_TIMEOUT),
                format!(
                    "the request body did not arrive within {}s",
                    crate::body::ahead::READ_TIMEOUT.as_secs()
                ),
            ),
            _ if ahead.longer_than(b.max_size) && !b.allow_partial => (
                ErrorKind::PayloadTooLarge,
                None,
                format!(
                    "the request body is larger than the {} bytes the authorization service of policy {} may be sent",
                    b.max_size, self.policy
                ),
            ),
            _ => return Ok(()),
        };
        let mut r = Rejection::new(ProxyError::new(kind, message));
        r.status = status;
        Err(r)
    }

    /// The body sent to the service, and whether it is only the start of a longer one.
    fn body_sent(&self, input: &Input) -> Option<(Bytes, bool)> {
        let b = self.body.as_ref()?;
        let ahead = input.extensions.get::<ReadAhead>()?;
        Some((ahead.prefix(b.max_size), ahead.longer_than(b.max_size)))
    }

    /// The credential's cache key: SHA-256 over each listed field's name and values, and over
    /// the body sent (with `body`: the service may decide by it, so it is part of the credential).
    fn key(&self, input: &Input) -> CredentialKey {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for name in self.headers.iter() {
            ctx.update(name.as_str().as_bytes());
            for v in input.headers.get_all(name) {
                ctx.update(&[0]);
                ctx.update(v.as_bytes());
            }
            ctx.update(&[1]);
        }
        if let Some((body, partial)) = self.body_sent(input) {
            ctx.update(&[2, u8::from(partial)]);
            ctx.update(&(body.len() as u64).to_be_bytes());
            ctx.update(&body);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// The decision's effect: upstream fields for a pass (client copies of every
    /// `upstreamHeaders` field removed first), the service's answer for a refusal.
    fn apply(&self, d: &Decision, fx: &mut Effects) -> Result<(), Box<Rejection>> {
        match d {
            Decision::Allow(fields) => {
                self.strip(fx);
                for (name, value) in fields.iter() {
                    fx.upstream.push((name.clone(), Some(value.clone())));
                }
                Ok(())
            }
            Decision::Deny(denial) => {
                let kind = if denial.status == StatusCode::UNAUTHORIZED {
                    ErrorKind::Unauthenticated
                } else {
                    ErrorKind::Forbidden
                };
                let message = format!(
                    "refused by the authorization service of policy {}",
                    self.policy
                );
                let mut r = Rejection::new(ProxyError::new(kind, message));
                r.reason = Some("external_denied");
                r.answer = Some((denial.status, denial.body.clone()));
                r.headers = denial.headers.clone();
                Err(r)
            }
        }
    }

    /// Client-supplied copies of the fields the service vouches for never reach the backend.
    fn strip(&self, fx: &mut Effects) {
        for name in self.upstream_headers.iter() {
            fx.upstream.push((name.clone(), None));
        }
    }

    /// The service could not decide: `failureMode` does.
    fn failed(&self, why: &str, fx: &mut Effects) -> Result<(), Box<Rejection>> {
        tracing::warn!(policy = &*self.policy, "externalAuth: {why}");
        match self.failure_mode {
            FailureMode::Allow => {
                self.strip(fx);
                Ok(())
            }
            FailureMode::Deny => {
                let mut r = Rejection::new(ProxyError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "the authorization service of policy {} could not decide",
                        self.policy
                    ),
                ));
                r.reason = Some("auth_service_failed");
                Err(r)
            }
        }
    }

    /// One question to the service; `Err` for anything that is no decision (5xx included).
    async fn ask(&self, input: &Input<'_>) -> Result<Decision, String> {
        let mut pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(send) = pooled.as_mut() {
            if send.ready().await.is_err() {
                pooled = None;
            }
        }
        let resp = match pooled {
            Some(mut send) => match send.send_request(self.request(input)?).await {
                Ok(resp) => (resp, send),
                // The service closed the idle connection as it was reused: a new one.
                Err(_) => self.send_new(input).await?,
            },
            None => self.send_new(input).await?,
        };
        let (resp, send) = resp;
        let (parts, body) = resp.into_parts();
        let body = (Limited::new(body, MAX_ANSWER).collect().await)
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if send.is_ready() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(send);
            }
        }
        if parts.status.is_success() {
            let fields: Vec<_> = (self.upstream_headers.iter())
                .filter_map(|n| Some((n.clone(), parts.headers.get(n)?.clone())))
                .collect();
            return Ok(Decision::Allow(fields.into()));
        }
        if parts.status.is_server_error() {
            return Err(format!("the service answered {}", parts.status));
        }
        let headers = (parts.headers.iter())
            .filter(|(n, _)| {
                crate::proxy::forward::hop_by_hop_index(n.as_str()).is_none()
                    && *n != http::header::CONTENT_LENGTH
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        Ok(Decision::Deny(Arc::new(Denial {
            status: parts.status,
            headers,
            body,
        })))
    }

    /// Sends the question on a new connection.
    async fn send_new(
        &self,
        input: &Input<'_>,
    ) -> Result<
        (
            http::Response<hyper::body::Incoming>,
            SendRequest<Full<Bytes>>,
        ),
        String,
    > {
        let tcp = (tokio::net::TcpStream::connect(&*self.authority).await)
            .map_err(|e| format!("connecting: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut send, conn) = (hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await)
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let resp =
            (send.send_request(self.request(input)?).await).map_err(|e| format!("asking: {e}"))?;
        Ok((resp, send))
    }

    /// The question: the request's method, the service's path, the listed fields and where the
    /// request was going.
    fn request(&self, input: &Input<'_>) -> Result<Request<Full<Bytes>>, String> {
        let (body, partial) = self.body_sent(input).unwrap_or_default();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = input.method.clone();
        *req.uri_mut() = self
            .path
            .parse()
            .map_err(|_| "bad service path".to_string())?;
        let h = req.headers_mut();
        h.insert(http::header::HOST, self.host.clone());
        for name in self.headers.iter() {
            // The question's own framing is hyper's to write, whatever the client's was.
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                continue;
            }
            for v in input.headers.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
        if partial {
            h.insert(PARTIAL_BODY.clone(), HeaderValue::from_static("true"));
        }
        h.insert(
            X_FORWARDED_METHOD.clone(),
            HeaderValue::from_str(input.method.as_str()).map_err(|e| e.to_string())?,
        );
        let target = input.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(v) = HeaderValue::from_str(target) {
            h.insert(X_FORWARDED_URI.clone(), v);
        }
        if let Some(host) = input.headers.get(http::header::HOST) {
            h.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        h.insert(
            X_FORWARDED_FOR.clone(),
            crate::proxy::forward::forwarded_for_value(input.client_ip()),
        );
        Ok(req)
    }
}

/// A decision as an `anyOf` alternative sees it: a pass (with no identity: the service vouches
/// through `upstreamHeaders`), or a failure that loses the service's own answer (the policy's
/// 401/403 names every alternative).
fn verdict_of(result: Result<(), Box<Rejection>>) -> super::Verdict {
    match result {
        Ok(()) => super::Verdict::Pass(Default::default()),
        Err(r) => super::Verdict::Fail(super::Failure {
            kind: r.error.kind,
            reason: r.reason.unwrap_or("external_denied"),
            message: r.error.message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn step(url: &str, cache: Option<Arc<DecisionCache>>) -> ExternalAuthStep {
        let ext = ExternalAuth {
            url: url.into(),
            timeout: Duration::from_millis(200),
            headers: vec!["authorization".into(), "x-tenant".into()],
            upstream_headers: vec!["x-user".into()],
            cache: None,
            failure_mode: FailureMode::Deny,
            body: None,
        };
        ExternalAuthStep::new("default/ext".into(), &ext, cache).unwrap()
    }

    #[test]
    fn the_url_gives_the_address_host_and_path() {
        let s = step("http://127.0.0.1:7000/check?v=1", None);
        assert_eq!((&*s.authority, &*s.path), ("127.0.0.1:7000", "/check?v=1"));
        let s = step("http://auth.internal", None);
        assert_eq!((&*s.authority, &*s.path), ("auth.internal:80", "/"));
        assert_eq!(s.host, "auth.internal");
    }

    #[test]
    fn the_key_depends_on_the_listed_fields_only() {
        let s = step("http://127.0.0.1:1/", None);
        let key = |fields: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in fields {
                h.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            s.key(&Input::for_test(&h, "/"))
        };
        let a = key(&[("authorization", "Bearer a")]);
        assert_eq!(a, key(&[("authorization", "Bearer a"), ("x-other", "1")]));
        assert_ne!(a, key(&[("authorization", "Bearer b")]));
        assert_ne!(a, key(&[("authorization", "Bearer a"), ("x-tenant", "t")]));
        // Values cannot be shifted between fields to forge another credential's key.
        assert_ne!(
            key(&[("authorization", "ab")]),
            key(&[("authorization", "a"), ("x-tenant", "b")])
        );
    }

    #[test]
    fn a_pass_sets_the_vouched_fields_and_strips_client_copies() {
        let s = step("http://127.0.0.1:1/", None);
        let user = HeaderName::from_static("x-user");
        let mut fx = Effects::default();
        let d = Decision::Allow(Arc::from(vec![(
            user.clone(),
            HeaderValue::from_static("alice"),
        )]));
        assert!(s.apply(&d, &mut fx).is_ok());
        assert_eq!(
            fx.upstream,
            vec![
                (user.clone(), None),
                (user, Some(HeaderValue::from_static("alice")))
            ]
        );
    }

    #[test]
    fn a_refusal_is_the_services_answer() {
        let s = step("http://127.0.0.1:1/", None);
        let d = Decision::Deny(Arc::new(Denial {
            status: StatusCode::UNAUTHORIZED,
            headers: vec![(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            )],
            body: Bytes::from_static(b"no"),
        }));
        let r = s.apply(&d, &mut Effects::default()).expect_err("refused");
        assert_eq!(
            r.answer,
            Some((StatusCode::UNAUTHORIZED, Bytes::from_static(b"no")))
        );
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.error.kind, ErrorKind::Unauthenticated);
    }

    #[tokio::test]
    async fn a_service_that_is_down_fails_as_configured() {
        // A port nothing listens on: connection refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = step(&format!("http://127.0.0.1:{port}/"), None);
        let h = HeaderMap::new();
        let input = Input::for_test(&h, "/");
        let r = s
            .check_async(&input, &mut Effects::default())
            .await
            .expect_err("Deny");
        assert_eq!(
            (r.error.kind, r.reason),
            (ErrorKind::Forbidden, Some("auth_service_failed"))
        );
        s.failure_mode = FailureMode::Allow;
        let mut fx = Effects::default();
        assert!(s.check_async(&input, &mut fx).await.is_ok());
        assert_eq!(fx.upstream.len(), 1, "client copies are still stripped");
    }

    #[tokio::test]
    async fn cached_decisions_are_used_without_asking() {
        let cache = Arc::new(DecisionCache::new(Duration::from_secs(30), 10));
        let s = step("http://127.0.0.1:1/", Some(cache.clone()));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer a".parse().unwrap());
        let input = Input::for_test(&h, "/");
        assert!(
            s.check(&input, &mut Effects::default()).is_none(),
            "a miss must ask"
        );
        cache.insert(s.key(&input), Decision::Allow(Arc::from(Vec::new())));
        assert!(matches!(
            s.check(&input, &mut Effects::default()),
            Some(Ok(()))
        ));
    }
}
