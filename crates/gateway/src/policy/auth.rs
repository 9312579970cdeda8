//! Request flow, policy chain: the authentication step of one policy. It asks each of the
//! policy's auth sections (`jwt`, `apiKey`, `basicAuth`; `externalAuth` joins as another
//! `Authenticator`) about the request: all must pass, except the sections `anyOf` lists, of which
//! one must. A pass yields an `Identity` (merged into `Effects`) and, for `jwt`, forwarded
//! claims; a failure answers 401 (`WWW-Authenticate` with each scheme's challenge) or 403, the
//! reason kind in the access log and never the credential.

use super::identity::Identity;
use super::{Effects, Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use crate::state::policy::PolicyPlan;
use gatehouse_config::Policy;
use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use std::sync::Arc;

/// What one auth section says about a request.
pub(crate) enum Verdict {
    /// A valid credential: whose.
    Pass(Identity),
    /// The request carries no credential of this kind.
    Missing,
    /// A credential that does not pass.
    Fail(Failure),
    /// The section must await something first (a JWKS refresh): ask `check_async`.
    Pending,
}

/// Why a credential does not pass.
pub(crate) struct Failure {
    /// `Unauthenticated` (401) or `Forbidden` (403).
    pub(crate) kind: ErrorKind,
    /// A word for the access log (`expired`, `bad_signature`, `unknown_key`...).
    pub(crate) reason: &'static str,
    /// The message in the JSON body; says what is wrong, never echoes the credential.
    pub(crate) message: String,
}

impl Failure {
    /// A 401.
    pub(crate) fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind: ErrorKind::Unauthenticated,
            reason,
            message: message.into(),
        }
    }

    /// A 403.
    pub(crate) fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind: ErrorKind::Forbidden,
            reason,
            message: message.into(),
        }
    }
}

/// One auth section of a policy, compiled.
pub(crate) enum Authenticator {}

impl Authenticator {
    /// The section's name in the config (messages, `anyOf`).
    fn section(&self) -> &'static str {
        match *self {}
    }

    /// The synchronous check.
    fn check(&self, _input: &Input) -> Verdict {
        match *self {}
    }

    /// The check when `check` said `Pending`: awaits what it needs, then decides.
    async fn check_async(&self, input: &Input<'_>) -> Verdict {
        self.check(input)
    }

    /// The `WWW-Authenticate` challenge of the section's scheme, if it has one.
    fn challenge(&self) -> Option<&HeaderValue> {
        match *self {}
    }

    /// Header fields for the upstream request once this section passed (forwarded claims).
    fn forward(&self, _id: &Identity, _fx: &mut Effects) {
        match *self {}
    }
}

/// A policy's auth sections, compiled: the step of the chain.
pub(crate) struct AuthStep {
    /// `namespace/name` of the policy (messages).
    policy: Arc<str>,
    /// Sections that must all pass.
    required: Box<[Authenticator]>,
    /// Sections of `anyOf`: one must pass.
    alternatives: Box<[Authenticator]>,
    /// Upstream header fields the policy's sections set: removed from every request it lets
    /// through first, so a client cannot send its own copy.
    strip: Box<[HeaderName]>,
}

/// What checking every section found, before it is turned into effects or a rejection.
type Outcome = Result<(Identity, Vec<usize>), Failure>;

impl AuthStep {
    /// The step of `p`, or `None` when it has no auth section.
    pub(crate) fn compile(p: &Policy, _plan: &PolicyPlan) -> Result<Option<Self>, String> {
        let required: Vec<Authenticator> = Vec::new();
        let alternatives: Vec<Authenticator> = Vec::new();
        let strip: Vec<HeaderName> = Vec::new();
        if required.is_empty() && alternatives.is_empty() {
            return Ok(None);
        }
        Ok(Some(AuthStep {
            policy: p.id.to_string().into(),
            required: required.into(),
            alternatives: alternatives.into(),
            strip: strip.into(),
        }))
    }

    /// Decides without waiting; `None` when a section must wait (see `check_async`).
    pub(crate) fn check(
        &self,
        input: &Input,
        fx: &mut Effects,
    ) -> Option<Result<(), Box<Rejection>>> {
        let verdicts = self.all().map(|a| a.check(input));
        let mut found = Vec::with_capacity(0);
        for v in verdicts {
            if matches!(v, Verdict::Pending) {
                return None;
            }
            found.push(v);
        }
        Some(self.conclude(self.judge(found), fx))
    }

    /// Decides, awaiting what the sections need.
    pub(crate) async fn check_async(
        &self,
        input: &Input<'_>,
        fx: &mut Effects,
    ) -> Result<(), Box<Rejection>> {
        let mut found = Vec::new();
        for a in self.all() {
            found.push(a.check_async(input).await);
        }
        self.conclude(self.judge(found), fx)
    }

    /// Every section, required ones first.
    fn all(&self) -> impl Iterator<Item = &Authenticator> {
        self.required.iter().chain(self.alternatives.iter())
    }

    /// Combines the verdicts (in `all` order): every required one must pass, and one of the
    /// alternatives when there are some. Returns the identity and which sections passed.
    fn judge(&self, verdicts: Vec<Verdict>) -> Outcome {
        let mut id = Identity::default();
        let mut passed = Vec::new();
        let mut refusal: Option<Failure> = None;
        let n = self.required.len();
        for (i, v) in verdicts.into_iter().enumerate() {
            match v {
                Verdict::Pass(who) if i < n || passed.iter().all(|p| *p < n) => {
                    id.merge(who);
                    passed.push(i);
                }
                Verdict::Pass(_) => {}
                Verdict::Fail(f) if i < n => return Err(f),
                Verdict::Missing if i < n => return Err(self.missing()),
                // An alternative that fails is remembered: if none passes, its reason is the
                // most telling one (an expired token says more than an absent key).
                Verdict::Fail(f) => {
                    refusal.get_or_insert(f);
                }
                Verdict::Missing | Verdict::Pending => {}
            }
        }
        if !self.alternatives.is_empty() && passed.iter().all(|p| *p < n) {
            return Err(refusal.unwrap_or_else(|| self.missing()));
        }
        Ok((id, passed))
    }

    fn missing(&self) -> Failure {
        let names: Vec<&str> = self.all().map(Authenticator::section).collect();
        Failure::unauthenticated(
            "missing_credentials",
            format!(
                "policy {} requires authentication ({})",
                self.policy,
                names.join(", ")
            ),
        )
    }

    /// Writes a pass into `fx`, or renders the failure.
    fn conclude(&self, outcome: Outcome, fx: &mut Effects) -> Result<(), Box<Rejection>> {
        match outcome {
            Ok((id, passed)) => {
                for name in self.strip.iter() {
                    fx.upstream.push((name.clone(), None));
                }
                let all: Vec<&Authenticator> = self.all().collect();
                for i in passed {
                    all[i].forward(&id, fx);
                }
                fx.identify(id);
                Ok(())
            }
            Err(f) => Err(self.reject(f)),
        }
    }

    fn reject(&self, f: Failure) -> Box<Rejection> {
        let mut r = Rejection::new(ProxyError::new(f.kind, f.message));
        r.reason = Some(f.reason);
        if f.kind == ErrorKind::Unauthenticated {
            for c in self.all().filter_map(Authenticator::challenge) {
                r.headers.push((WWW_AUTHENTICATE, c.clone()));
            }
        }
        r
    }
}
