//! Request flow, the last step of a rule's policy chain (after authentication and rate limits, so
//! an unauthorised caller learns nothing of the schema): request validation against the rule's
//! OpenAPI document (`openapi: {file, validateRequests: true}`, or its Route's).
//!
//! The chain step checks what arrives before the body — the operation (method and client path,
//! before any rewrite), path and query parameters, the content type, a required body's presence —
//! without waiting. When the operation takes a JSON body with a schema, the handler then reads
//! the body whole (`check_body`: up to the rule's `requestLimits.maxBodySize`, 1 MiB without one;
//! a larger body is refused with 413, never let through unchecked), checks it and hands the kept
//! bytes on to the exchange as a replayable body (`kept`). Refusals are one `invalid_request`
//! 400 naming the field. A rule without validation has no step and pays nothing.

use super::{Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use crate::proxy::body::RequestBody;
use bytes::{Bytes, BytesMut};
use gatehouse_config::openapi::OpenApi;
use gatehouse_config::{Config, Route, Rule};
use gatehouse_contract::RequestValidator;
use http::{header, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How much of a body validation reads when no policy of the rule sets `requestLimits`.
pub(crate) const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// One rule's request validation.
pub(crate) struct ValidateStep {
    validator: Arc<RequestValidator>,
    /// The most body bytes read for a check.
    max_body: u64,
    /// Content hash of the document the validator was compiled from (`OpenApi::digest`): a
    /// reload keeps the rule's compiled entry only while the document hashes the same.
    source: u64,
}

/// The body the validation step read, handed to the exchange in the request's extensions.
#[derive(Clone)]
struct KeptBody(Bytes);

impl ValidateStep {
    /// The step for `validator`, compiled from a document hashing to `source`, reading at most
    /// `max_body` bytes (the rule's `requestLimits.maxBodySize`, when it has one).
    pub(crate) fn new(
        validator: Arc<RequestValidator>,
        max_body: Option<u64>,
        source: u64,
    ) -> Self {
        ValidateStep {
            validator,
            max_body: max_body.unwrap_or(DEFAULT_MAX_BODY),
            source,
        }
    }

    /// The content hash of the document this step validates against.
    pub(crate) fn source(&self) -> u64 {
        self.source
    }

    /// The chain's synchronous part: everything but the body.
    pub(crate) fn check(&self, input: &Input) -> Result<(), Box<Rejection>> {
        // Whether a body follows, when the head says; an HTTP/2 request need not (`check_body`
        // looks at the stream).
        let has_body = match declared_length(input.headers) {
            Some(n) => Some(n > 0),
            None => input
                .headers
                .contains_key(header::TRANSFER_ENCODING)
                .then_some(true),
        };
        (self.validator)
            .validate_head(
                input.method.as_str(),
                input.path(),
                input.query(),
                content_type(input.headers),
                has_body,
            )
            .map(|_| ())
            .map_err(invalid)
    }

    /// After the chain let the request through: reads and checks a JSON body the operation has a
    /// schema for, within `timeout` (zero: none), keeping it for the exchange (see `kept`).
    pub(crate) async fn check_body(
        &self,
        req: &mut Request<Incoming>,
        timeout: Duration,
    ) -> Result<(), Box<Rejection>> {
        use http_body::Body;
        let has_body = !req.body().is_end_stream();
        let (method, path) = (req.method().as_str(), req.uri().path());
        let ct = content_type(req.headers());
        // The stream tells what the head may not have (HTTP/2): whether a body follows.
        if !(self.validator)
            .body_expected(method, path, ct, has_body)
            .map_err(invalid)?
        {
            return Ok(());
        }
        if let Some(n) = declared_length(req.headers()).filter(|n| *n > self.max_body) {
            return Err(too_large(Some(n), self.max_body));
        }
        let read = read_body(req.body_mut(), self.max_body);
        let body = match timeout.is_zero() {
            true => read.await?,
            false => tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| slow_body(timeout))??,
        };
        let (method, path) = (req.method().as_str(), req.uri().path());
        (self.validator)
            .validate_body(method, path, content_type(req.headers()), &body)
            .map_err(invalid)?;
        req.extensions_mut().insert(KeptBody(body));
        Ok(())
    }
}

/// Reads a body whole, refusing it past `max` bytes.
async fn read_body(body: &mut Incoming, max: u64) -> Result<Bytes, Box<Rejection>> {
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let kind = crate::proxy::body::request_body_fault(&e);
            Rejection::new(ProxyError::new(kind, "the request body could not be read"))
        })?;
        if let Ok(data) = frame.into_data() {
            if kept.len() as u64 + data.len() as u64 > max {
                return Err(too_large(None, max));
            }
            kept.extend_from_slice(&data);
        }
    }
    Ok(kept.freeze())
}

/// The request body an exchange sends: the one validation kept, when it read one, else `body`.
/// For a rule without validation this is one `Option` check.
#[inline]
pub(crate) fn kept(
    target: &crate::snapshot::Target,
    parts: &mut http::request::Parts,
    body: RequestBody,
) -> RequestBody {
    if (target.policies.as_ref()).is_none_or(|c| c.validation().is_none()) {
        return body;
    }
    match parts.extensions.remove::<KeptBody>() {
        Some(KeptBody(bytes)) => body.with_kept(bytes),
        None => body,
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    (headers.get(header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn content_type(headers: &http::HeaderMap) -> Option<&str> {
    (headers.get(header::CONTENT_TYPE)).and_then(|v| v.to_str().ok())
}

fn invalid(message: String) -> Box<Rejection> {
    let mut r = Rejection::new(ProxyError::new(ErrorKind::InvalidRequest, message));
    r.reason = Some("openapi");
    r
}

fn too_large(declared: Option<u64>, max: u64) -> Box<Rejection> {
    let size = declared.map_or_else(
        || "request body".to_string(),
        |n| format!("request body ({n} bytes)"),
    );
    Rejection::new(ProxyError::new(
        ErrorKind::PayloadTooLarge,
        format!("the {size} is larger than request validation reads ({max} bytes)"),
    ))
}

fn slow_body(timeout: Duration) -> Box<Rejection> {
    let mut r = Rejection::new(ProxyError::new(
        ErrorKind::Timeout,
        format!(
            "the request body did not arrive within the route's timeout ({})",
            gatehouse_config::units::DisplayDuration(timeout)
        ),
    ));
    // The client was slow, not the upstream.
    r.status = Some(http::StatusCode::REQUEST_TIMEOUT);
    r
}

/// The validators of one config, compiled when the snapshot build asks for a rule's (a rule a
/// reload keeps goes on with its compiled step), for the rules that ask for validation only.
#[derive(Default)]
pub(crate) struct Validators<'c> {
    /// The routes some rule of which validates, by `namespace/name`.
    routes: HashMap<String, &'c Route>,
}

impl<'c> Validators<'c> {
    /// Notes the routes of `config` that validate; compiles nothing yet.
    pub(crate) fn new(config: &'c Config) -> Self {
        Validators {
            routes: validating_routes(config),
        }
    }

    /// The document rule `rule` of `route` validates against, if it validates.
    pub(crate) fn document<'r>(&'r self, route: &str, rule: &'r Rule) -> Option<&'r OpenApi> {
        applying(self.routes.get(route)?, rule)
    }

    /// `chain` with the validation step of rule `index` of `route` added, when it has one.
    /// An error is a document the validator cannot use (a broken `pattern`), or validation
    /// beside `externalAuth.body`: that reads the body's start before the chain, and the body
    /// check after it would see only the rest.
    pub(crate) fn attach(
        &self,
        route: &Arc<str>,
        index: usize,
        rule: &Rule,
        chain: Option<super::Chain>,
    ) -> Result<Option<super::Chain>, String> {
        if self.routes.is_empty() {
            return Ok(chain);
        }
        let Some(api) = self.document(route, rule) else {
            return Ok(chain);
        };
        let v = RequestValidator::new(rule, api).map_err(|e| format!("route {route}: {e}"))?;
        if chain.as_ref().is_some_and(|c| c.read_ahead().is_some()) {
            return Err(format!(
                "route {route}, rule {index}: `openapi.validateRequests` and a policy with \
                 `externalAuth.body` cannot be combined on one rule yet"
            ));
        }
        Ok(Some(super::Chain::with_validation(
            chain,
            Arc::new(v),
            api.digest,
        )))
    }
}

/// The routes of `config` some rule of which may validate requests, by `namespace/name`; empty
/// (and allocation-free) when none does.
fn validating_routes(config: &Config) -> HashMap<String, &Route> {
    (config.routes.iter())
        .filter(|r| route_validates(r))
        .map(|r| (r.id.to_string(), r))
        .collect()
}

/// Whether any rule of `route` may validate requests (its own document or the Route's asks for
/// it).
pub(crate) fn route_validates(route: &Route) -> bool {
    let asks = |o: Option<&OpenApi>| o.is_some_and(|o| o.validate_requests);
    asks(route.openapi.as_ref()) || route.rules.iter().any(|r| asks(r.openapi.as_deref()))
}

/// The document rule `rule` of `route` validates requests against, if it validates: its own
/// document when it names one (whether or not that asks for validation), else its Route's.
fn applying<'a>(route: &'a Route, rule: &'a Rule) -> Option<&'a OpenApi> {
    let api = rule.openapi.as_deref().or(route.openapi.as_ref())?;
    api.validate_requests.then_some(api)
}
