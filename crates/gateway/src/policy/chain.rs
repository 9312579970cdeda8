//! Request flow, after route lookup: a rule's policy chain, compiled once per snapshot. Steps run
//! in a fixed order — request limits, authentication (one step per policy with auth sections),
//! rate limits (in the order the rule lists its policies), then the rule's fault — each letting
//! the request go on (having maybe written `Effects`: identity, header fields) or answering it.
//! IP filters and CORS (of every listed policy) come first, before request limits, and a
//! policy's `externalAuth` right after its other auth sections. Steps that need no waiting (a declared length, a local
//! bucket, a JWT whose key is cached, a fault that only aborts) are decided without allocating;
//! the chain switches to a boxed future only at the first step that must wait (Redis, a JWKS
//! refresh, a fault delay).
//!
//! Adding a kind of step: a variant of `Step`, its synchronous part in `Step::begin` (answer
//! `Next::Done`, or `Next::Wait` to be called again in `Step::wait`, which may await), and its
//! place in `Chain::compile`.

use super::auth::external::ExternalAuthStep;
use super::auth::AuthStep;
use super::cors::CorsStep;
use super::fault::FaultStep;
use super::ip_filter::IpFilterStep;
use super::rate_limit::{local::LocalLimiter, RateLimitStep, Store};
use super::validate::ValidateStep;
use super::{Effects, Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use crate::state::policy::PolicyPlan;
use crate::telemetry::metrics::Metrics;
use gatehouse_config::{ObjectId, Policy, RateLimitScope, Rule};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// One step of a chain.
pub(crate) enum Step {
    /// `ipFilter`: the client address against allow/deny networks.
    IpFilter(Box<IpFilterStep>),
    /// `cors`: preflights answered, response fields for allowed origins.
    Cors(Box<CorsStep>),
    /// `externalAuth`: an HTTP service decides (cached per credential).
    ExternalAuth(Box<ExternalAuthStep>),
    /// `requestLimits.maxBodySize`: a declared `Content-Length` above it is refused at once.
    BodyLimit(u64),
    /// A policy's auth sections (`jwt`, `apiKey`, `basicAuth`; `anyOf`).
    Auth(Box<AuthStep>),
    /// A `rateLimit`.
    RateLimit(Box<RateLimitStep>),
    /// The rule's `fault`.
    Fault(FaultStep),
    /// Request validation against the rule's OpenAPI document (`policy::validate`).
    Validate(Arc<ValidateStep>),
}

/// What a step wants after its synchronous part.
enum Next<'s> {
    Done(Result<(), Box<Rejection>>),
    /// The step must wait: `Step::wait` finishes it.
    Wait(&'s Step),
    /// Wait, then maybe abort.
    Sleep(Duration, Option<Box<Rejection>>),
}

/// A rule's compiled policies; rules without any have none (`Option::None` in the snapshot).
pub(crate) struct Chain {
    steps: Box<[Step]>,
    max_body: Option<u64>,
    /// `externalAuth.body`: bytes of the body to read before the chain runs, and whether a
    /// longer declared body need not be read (no section accepts a partial body).
    read_ahead: Option<(usize, bool)>,
    /// The validation step, for the body check after the chain (`policy::validate`).
    validation: Option<Arc<ValidateStep>>,
}

/// Everything `compile` reads.
pub(crate) struct Sources<'a> {
    pub(crate) policies: &'a HashMap<ObjectId, &'a Policy>,
    pub(crate) plan: &'a PolicyPlan,
    pub(crate) metrics: &'a Metrics,
}

/// The `Step` of each kind a policy holds, in chain order (before rate limits).
fn policy_steps(p: &Policy, src: &Sources, steps: &mut Vec<Step>) -> Result<(), String> {
    if let Some(auth) = AuthStep::compile(p, src.plan)? {
        steps.push(Step::Auth(Box::new(auth)));
    }
    // In `anyOf`, the auth service is one of the alternatives of the step above.
    if !p
        .any_of
        .contains(&gatehouse_config::AuthSection::ExternalAuth)
    {
        if let Some(ext) = ExternalAuthStep::compile(p, src.plan)? {
            steps.push(Step::ExternalAuth(Box::new(ext)));
        }
    }
    Ok(())
}

impl Chain {
    /// The chain of `rule` of `route`, or `None` when it has no policy and no fault.
    pub(crate) fn compile(route: &str, rule: &Rule, src: &Sources) -> Result<Option<Self>, String> {
        if rule.policies.is_empty() && rule.fault.is_none() {
            return Ok(None);
        }
        let listed: Vec<&Policy> = (rule.policies.iter())
            .filter_map(|id| src.policies.get(id).copied())
            .collect();
        let max_body = (listed.iter())
            .filter_map(|p| p.request_limits.as_ref().map(|l| l.max_body_size))
            .min();
        // The edge steps first: a refused address or a preflight is answered before anything
        // else is looked at.
        let mut steps: Vec<Step> = (listed.iter())
            .filter_map(|p| p.ip_filter.as_ref())
            .map(|f| Step::IpFilter(Box::new(IpFilterStep::new(f))))
            .collect();
        steps.extend(
            (listed.iter())
                .filter_map(|p| p.cors.as_ref())
                .map(|c| Step::Cors(Box::new(CorsStep::new(c)))),
        );
        steps.extend(max_body.map(Step::BodyLimit));
        for p in &listed {
            policy_steps(p, src, &mut steps)?;
        }
        for p in &listed {
            if let Some(rl) = &p.rate_limit {
                steps.push(Step::RateLimit(Box::new(rate_limit_step(
                    route, p, rl, src,
                )?)));
            }
        }
        if let Some(f) = &rule.fault {
            steps.push(Step::Fault(FaultStep::new(f)));
        }
        Ok(Some(Chain {
            steps: steps.into(),
            max_body,
            read_ahead: super::auth::external::read_ahead(&listed),
            validation: None,
        }))
    }

    /// `chain` (or an empty one) with request validation added after its rate limits, before
    /// the rule's fault (which stands for the backend).
    pub(crate) fn with_validation(
        chain: Option<Chain>,
        validator: Arc<gatehouse_contract::RequestValidator>,
        source: u64,
    ) -> Chain {
        let (mut steps, max_body) = match chain {
            Some(c) => (c.steps.into_vec(), c.max_body),
            None => (Vec::new(), None),
        };
        let step = Arc::new(ValidateStep::new(validator, max_body, source));
        let at = match steps.last() {
            Some(Step::Fault(_)) => steps.len() - 1,
            _ => steps.len(),
        };
        steps.insert(at, Step::Validate(step.clone()));
        Chain {
            steps: steps.into(),
            max_body,
            // `Validators::attach` refuses validation beside `externalAuth.body`.
            read_ahead: None,
            validation: Some(step),
        }
    }

    /// The rule's request validation, whose body check runs after the chain.
    pub(crate) fn validation(&self) -> Option<&ValidateStep> {
        self.validation.as_deref()
    }

    /// Whether a `cors` step answers CORS preflights (which then need not match the rule's
    /// methods: see `handler::preflight_route`).
    pub(crate) fn answers_preflights(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Cors(_)))
    }

    /// How much of the body to read before the chain runs (`externalAuth.body`), if any.
    #[inline]
    pub(crate) fn read_ahead(&self) -> Option<(usize, bool)> {
        self.read_ahead
    }

    /// The smallest `requestLimits.maxBodySize` of the rule's policies.
    pub(crate) fn max_body_size(&self) -> Option<u64> {
        self.max_body
    }

    /// Runs the chain: `Ok` to go on (with what the steps decided in `fx`), or the rejection to
    /// answer with.
    pub(crate) fn run<'a>(&'a self, input: &'a Input<'a>, fx: &'a mut Effects) -> Run<'a> {
        for (i, step) in self.steps.iter().enumerate() {
            match step.begin(input, fx) {
                Next::Done(Ok(())) => {}
                Next::Done(Err(r)) => return Run::Ready(Some(Err(r))),
                pending => return Run::Waiting(Box::pin(self.finish(i, pending, input, fx))),
            }
        }
        Run::Ready(Some(Ok(())))
    }

    /// The rest of the chain from step `at`, whose synchronous part said `pending`.
    async fn finish<'a>(
        &'a self,
        mut at: usize,
        pending: Next<'a>,
        input: &'a Input<'a>,
        fx: &'a mut Effects,
    ) -> Result<(), Box<Rejection>> {
        let mut next = pending;
        loop {
            match next {
                Next::Done(result) => result?,
                Next::Wait(step) => step.wait(input, fx).await?,
                Next::Sleep(d, abort) => {
                    tokio::time::sleep(d).await;
                    if let Some(r) = abort {
                        return Err(r);
                    }
                }
            }
            at += 1;
            let Some(step) = self.steps.get(at) else {
                return Ok(());
            };
            next = step.begin(input, fx);
        }
    }
}

impl Step {
    /// The step's synchronous part: its decision, or `Wait` when it must await something.
    fn begin<'s>(&'s self, input: &Input, fx: &mut Effects) -> Next<'s> {
        match self {
            Step::IpFilter(f) => Next::Done(f.check(input)),
            Step::Cors(c) => Next::Done(c.check(input, fx)),
            Step::ExternalAuth(ext) => match ext.check(input, fx) {
                Some(result) => Next::Done(result),
                None => Next::Wait(self),
            },
            Step::BodyLimit(max) => Next::Done(body_limit(*max, input)),
            Step::Auth(auth) => match auth.check(input, fx) {
                Some(result) => Next::Done(result),
                None => Next::Wait(self),
            },
            Step::RateLimit(rl) if rl.is_global() => Next::Wait(self),
            Step::RateLimit(rl) => Next::Done(rl.check_local(input, fx).unwrap_or(Ok(()))),
            Step::Validate(v) => Next::Done(v.check(input)),
            Step::Fault(f) => {
                // A generator seeded from the thread-local one: one u64 of state, no lock.
                let roll = f.roll(input, &mut fastrand::Rng::with_seed(fastrand::u64(..)));
                let abort = roll.abort.then(|| f.rejection());
                match (roll.delay, abort) {
                    (Some(d), abort) => Next::Sleep(d, abort),
                    (None, Some(r)) => Next::Done(Err(r)),
                    (None, None) => Next::Done(Ok(())),
                }
            }
        }
    }
}

impl Step {
    /// The rest of a step whose synchronous part said `Next::Wait`.
    async fn wait(&self, input: &Input<'_>, fx: &mut Effects) -> Result<(), Box<Rejection>> {
        match self {
            Step::Auth(auth) => auth.check_async(input, fx).await,
            Step::RateLimit(rl) => rl.check_global(input, fx).await,
            Step::ExternalAuth(ext) => ext.check_async(input, fx).await,
            Step::BodyLimit(_)
            | Step::Fault(_)
            | Step::IpFilter(_)
            | Step::Cors(_)
            | Step::Validate(_) => Ok(()),
        }
    }
}

/// A declared length over the limit is refused before any of the body is read; bodies without
/// one are counted as they stream (`body::limited`).
fn body_limit(max: u64, input: &Input) -> Result<(), Box<Rejection>> {
    let declared = (input.headers.get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(Rejection::new(ProxyError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body ({n} bytes) is larger than this route accepts ({max} bytes)"),
        ))),
        _ => Ok(()),
    }
}

fn rate_limit_step(
    route: &str,
    p: &Policy,
    rl: &gatehouse_config::RateLimit,
    src: &Sources,
) -> Result<RateLimitStep, String> {
    let name = p.id.to_string();
    let store = match rl.scope {
        RateLimitScope::Local => {
            let limiter: Arc<LocalLimiter> = (src.plan.limiter(&p.id).cloned())
                .ok_or_else(|| format!("no rate limit state planned for policy {name}"))?;
            Store::Local(limiter)
        }
        RateLimitScope::Global => Store::Global {
            redis: (src.plan.redis().cloned())
                .ok_or_else(|| format!("policy {name} needs the Gateway's redis"))?,
            gcra: super::rate_limit::gcra::Gcra::new(rl.requests, rl.per, rl.burst),
            on_error: rl.on_store_error,
        },
    };
    Ok(RateLimitStep {
        policy_header: RateLimitStep::policy_header(&name, rl.requests, rl.per),
        key: rl.key.clone(),
        store,
        rejected: src.metrics.policy.rate_limited(route, &name),
        store_errors: src.metrics.policy.store_errors(&name),
        policy: name.into(),
    })
}

/// The chain's result, ready at once when no step had to wait.
pub(crate) enum Run<'a> {
    Ready(Option<Result<(), Box<Rejection>>>),
    Waiting(Pin<Box<dyn Future<Output = Result<(), Box<Rejection>>> + Send + 'a>>),
}

impl Future for Run<'_> {
    type Output = Result<(), Box<Rejection>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Run::Ready(r) => Poll::Ready(r.take().unwrap_or(Ok(()))),
            Run::Waiting(f) => f.as_mut().poll(cx),
        }
    }
}
