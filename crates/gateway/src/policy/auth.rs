//! Request flow, policy chain: the authentication step of one policy. It asks each of the
//! policy's auth sections (`jwt`, `apiKey`, `basicAuth`, and `externalAuth` when `anyOf` lists
//! it; otherwise that one is its own step, after this one) about the request: all must pass,
//! except the sections `anyOf` lists, of which one must; they are asked in that order (the auth
//! service last) and no further than the first that passes. A pass yields an `Identity` (merged into `Effects`) and, for `jwt`, forwarded
//! claims; a failure answers 401 (`WWW-Authenticate` with each scheme's challenge) or 403, the
//! reason kind in the access log and never the credential.

pub(crate) mod api_key;
pub(crate) mod basic;
pub(crate) mod external;
pub(crate) mod jwks;
pub(crate) mod jwt;
pub(crate) mod watched;

use super::identity::Identity;
use super::{Effects, Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use crate::state::policy::{AuthState, PolicyPlan};
use gatehouse_config::{AuthSection, CredentialSource, Policy};
use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use std::borrow::Cow;
use std::sync::Arc;

/// Where a credential is read, compiled from `from`.
pub(crate) enum Source {
    /// A header, and the prefix its value must start with (compared without regard to case).
    Header(HeaderName, Option<Box<str>>),
    /// A cookie.
    Cookie(Box<str>),
    /// A query parameter.
    Query(Box<str>),
}

impl Source {
    fn compile(s: &CredentialSource) -> Result<Self, String> {
        Ok(match s {
            CredentialSource::Header { name, prefix } => Source::Header(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| format!("header {name}: {e}"))?,
                prefix.as_deref().map(Box::from),
            ),
            CredentialSource::Cookie(c) => Source::Cookie(c.as_str().into()),
            CredentialSource::Query(q) => Source::Query(q.as_str().into()),
        })
    }
}

/// The first credential found in the request's `sources`, in order.
pub(crate) fn credential<'a>(input: &'a Input<'a>, sources: &[Source]) -> Option<Cow<'a, str>> {
    sources.iter().find_map(|s| match s {
        Source::Header(name, prefix) => {
            let v = input.headers.get(name)?.to_str().ok()?;
            let rest = match prefix {
                Some(p) => {
                    let head = v.get(..p.len())?;
                    head.eq_ignore_ascii_case(p).then(|| &v[p.len()..])?
                }
                None => v,
            };
            // No control character can be in a header value: ASCII trimming is `str::trim`.
            let rest = rest.trim_ascii();
            (!rest.is_empty()).then_some(Cow::Borrowed(rest))
        }
        Source::Cookie(name) => {
            let v = std::str::from_utf8(input.cookie(name)?).ok()?;
            (!v.is_empty()).then_some(Cow::Borrowed(v))
        }
        Source::Query(name) => input.query_param(name).filter(|v| !v.is_empty()),
    })
}

/// `credential` as bytes, for a check that only hashes them (API keys): a header's value is
/// taken as it is — the ASCII test, a word at a time, is `to_str`'s own condition for a header
/// value (no control character can be in one), without its byte loop or a UTF-8 pass.
pub(crate) fn credential_bytes<'a>(
    input: &'a Input<'a>,
    sources: &[Source],
) -> Option<Cow<'a, [u8]>> {
    let [Source::Header(name, None)] = sources else {
        return match credential(input, sources)? {
            Cow::Borrowed(s) => Some(Cow::Borrowed(s.as_bytes())),
            Cow::Owned(s) => Some(Cow::Owned(s.into_bytes())),
        };
    };
    let v = input.headers.get(name)?.as_bytes();
    let v = v.trim_ascii();
    (v.is_ascii() && !v.is_empty()).then_some(Cow::Borrowed(v))
}

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
pub(crate) enum Authenticator {
    /// `jwt`.
    Jwt(Box<jwt::JwtAuth>),
    /// `apiKey`.
    ApiKey(Box<api_key::ApiKeyAuth>),
    /// `basicAuth`.
    Basic(Box<basic::BasicAuth>),
    /// `externalAuth`, as an `anyOf` alternative.
    External(Box<external::ExternalAuthStep>),
}

impl Authenticator {
    /// The section's name in the config (messages, `anyOf`).
    fn section(&self) -> &'static str {
        match self {
            Authenticator::Jwt(_) => "jwt",
            Authenticator::ApiKey(_) => "apiKey",
            Authenticator::Basic(_) => "basicAuth",
            Authenticator::External(_) => "externalAuth",
        }
    }

    /// The synchronous check. Only the auth service writes into `fx` (the fields it vouches
    /// for), and only when it passes.
    fn check(&self, input: &Input, fx: &mut Effects) -> Verdict {
        match self {
            Authenticator::Jwt(j) => j.check(input),
            Authenticator::ApiKey(k) => k.check(input),
            Authenticator::Basic(b) => b.check(input),
            Authenticator::External(e) => e.verdict(input, fx),
        }
    }

    /// The check when `check` said `Pending`: awaits what it needs, then decides.
    async fn check_async(&self, input: &Input<'_>, fx: &mut Effects) -> Verdict {
        match self {
            Authenticator::Jwt(j) => j.check_async(input).await,
            Authenticator::ApiKey(k) => k.check(input),
            Authenticator::Basic(b) => b.check_async(input).await,
            Authenticator::External(e) => e.verdict_async(input, fx).await,
        }
    }

    /// The `WWW-Authenticate` challenge of the section's scheme, if it has one.
    fn challenge(&self) -> Option<&HeaderValue> {
        match self {
            Authenticator::Jwt(j) => Some(&j.challenge),
            Authenticator::ApiKey(_) | Authenticator::External(_) => None,
            Authenticator::Basic(b) => Some(&b.challenge),
        }
    }

    /// Header fields for the upstream request once this section passed (forwarded claims).
    fn forward(&self, id: &Identity, fx: &mut Effects) {
        if let Authenticator::Jwt(j) = self {
            j.forward(id, fx);
        }
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

fn sources(from: &[CredentialSource]) -> Result<Box<[Source]>, String> {
    from.iter().map(Source::compile).collect()
}

/// A `jwt` section with the keys `state` holds for it.
fn compile_jwt(j: &gatehouse_config::Jwt, state: &AuthState) -> Result<jwt::JwtAuth, String> {
    use jsonwebtoken::Algorithm::*;
    let keys = state
        .jwt_keys
        .clone()
        .ok_or_else(|| "no JWT key state planned".to_string())?;
    let hmac = matches!(keys, jwt::Keys::Fixed(_))
        || matches!(j.keys, gatehouse_config::JwtKeys::SecretFile(_));
    let family = match hmac {
        true => vec![HS256, HS384, HS512],
        false => vec![
            RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ],
    };
    let validations = (family.into_iter())
        .filter(|a| j.algorithms.is_empty() || j.algorithms.iter().any(|n| *n == format!("{a:?}")))
        .map(|a| (a, jwt::validation(a, j)))
        .collect();
    let forward = (j.forward_claims.iter())
        .map(|(c, h)| {
            Ok((
                c.clone(),
                HeaderName::from_bytes(h.as_bytes()).map_err(|e| e.to_string())?,
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(jwt::JwtAuth {
        keys,
        validations,
        from: sources(&j.from)?,
        forward,
        scopes: j.required_scopes.clone().into(),
        claims: j.required_claims.clone().into(),
        challenge: HeaderValue::from_static("Bearer realm=\"gatehouse\""),
        verified: jwt::Verified::default(),
        leeway: j.leeway,
    })
}

/// What checking every section found, before it is turned into effects or a rejection: the
/// identity and which sections passed (bit `i` for the `i`-th of `AuthStep::all`).
type Outcome = Result<(Identity, u8), Failure>;

impl AuthStep {
    /// The step of `p`, or `None` when it has no auth section.
    pub(crate) fn compile(p: &Policy, plan: &PolicyPlan) -> Result<Option<Self>, String> {
        let external_alternative = p.any_of.contains(&AuthSection::ExternalAuth);
        if p.jwt.is_none() && p.api_key.is_none() && p.basic_auth.is_none() && !external_alternative
        {
            return Ok(None);
        }
        let state = plan.auth(&p.id)?;
        let mut required: Vec<Authenticator> = Vec::new();
        let mut alternatives: Vec<Authenticator> = Vec::new();
        let mut strip: Vec<HeaderName> = Vec::new();
        let mut put = |section: AuthSection, a: Authenticator| match p.any_of.contains(&section) {
            true => alternatives.push(a),
            false => required.push(a),
        };
        if let Some(j) = &p.jwt {
            let auth = compile_jwt(j, state)?;
            strip.extend(auth.forward.iter().map(|(_, h)| h.clone()));
            put(AuthSection::Jwt, Authenticator::Jwt(Box::new(auth)));
        }
        if let Some(k) = &p.api_key {
            let auth = api_key::ApiKeyAuth {
                from: sources(&k.from)?,
                inline: (k.keys.iter())
                    .map(|e| (e.sha256, Arc::from(e.consumer.as_str())))
                    .collect(),
                file: state.api_keys.clone(),
            };
            put(AuthSection::ApiKey, Authenticator::ApiKey(Box::new(auth)));
        }
        if let Some(b) = &p.basic_auth {
            let (users, cache) = state
                .htpasswd
                .clone()
                .ok_or_else(|| format!("no htpasswd state planned for policy {}", p.id))?;
            let challenge = HeaderValue::from_str(&format!("Basic realm=\"{}\"", b.realm))
                .map_err(|_| format!("policy {}: invalid basicAuth realm", p.id))?;
            let auth = basic::BasicAuth {
                users,
                challenge,
                cache,
            };
            put(AuthSection::BasicAuth, Authenticator::Basic(Box::new(auth)));
        }
        // Last: the costliest alternative is asked only when the others did not pass.
        if external_alternative {
            if let Some(ext) = external::ExternalAuthStep::compile(p, plan)? {
                // Whichever alternative passes, a client's copy of a vouched field is gone.
                strip.extend(ext.vouched().iter().cloned());
                put(
                    AuthSection::ExternalAuth,
                    Authenticator::External(Box::new(ext)),
                );
            }
        }
        Ok(Some(AuthStep {
            policy: p.id.to_string().into(),
            required: required.into(),
            alternatives: alternatives.into(),
            strip: strip.into(),
        }))
    }

    /// Decides without waiting; `None` when a section must wait (see `check_async`). Sections
    /// are asked in order and no further than needed; nothing is allocated.
    pub(crate) fn check(
        &self,
        input: &Input,
        fx: &mut Effects,
    ) -> Option<Result<(), Box<Rejection>>> {
        let mark = fx.upstream.len();
        let outcome = self.judge(self.all().map(|a| a.check(input, fx)))?;
        Some(self.conclude(outcome, fx, mark))
    }

    /// Decides, awaiting what the sections need.
    pub(crate) async fn check_async(
        &self,
        input: &Input<'_>,
        fx: &mut Effects,
    ) -> Result<(), Box<Rejection>> {
        let mark = fx.upstream.len();
        let mut found = Vec::new();
        let n = self.required.len();
        for (i, a) in self.all().enumerate() {
            let verdict = a.check_async(input, fx).await;
            // As `judge` does: a required section that fails decides, and so does the first
            // alternative that passes (the auth service is not asked after a token passed).
            let decided = match verdict {
                Verdict::Pass(_) => i >= n,
                Verdict::Fail(_) | Verdict::Missing => i < n,
                Verdict::Pending => false,
            };
            found.push(verdict);
            if decided {
                break;
            }
        }
        let outcome = self.judge(found.into_iter()).unwrap_or_else(|| {
            Err(Failure::unauthenticated(
                "unknown_key",
                "the credential could not be checked",
            ))
        });
        self.conclude(outcome, fx, mark)
    }

    /// Every section, required ones first.
    fn all(&self) -> impl Iterator<Item = &Authenticator> {
        self.required.iter().chain(self.alternatives.iter())
    }

    /// Combines the verdicts (in `all` order): every required one must pass, and one of the
    /// alternatives when there are some. `None` at the first section that must wait. Verdicts
    /// are taken lazily: none after the first alternative that passed (alternatives come last).
    fn judge(&self, verdicts: impl Iterator<Item = Verdict>) -> Option<Outcome> {
        let mut id = Identity::default();
        let mut passed = 0u8;
        let mut refusal: Option<Failure> = None;
        let n = self.required.len();
        for (i, v) in verdicts.enumerate() {
            let alternative_passed = passed >> n != 0;
            if alternative_passed {
                break;
            }
            match v {
                Verdict::Pending => return None,
                Verdict::Pass(who) if i < n || !alternative_passed => {
                    id.merge(who);
                    passed |= 1 << i;
                }
                Verdict::Pass(_) => {}
                Verdict::Fail(f) if i < n => return Some(Err(f)),
                Verdict::Missing if i < n => return Some(Err(self.missing())),
                // An alternative that fails is remembered: if none passes, its reason is the
                // most telling one (an expired token says more than an absent key).
                Verdict::Fail(f) => {
                    refusal.get_or_insert(f);
                }
                Verdict::Missing => {}
            }
        }
        if !self.alternatives.is_empty() && passed >> n == 0 {
            return Some(Err(refusal.unwrap_or_else(|| self.missing())));
        }
        Some(Ok((id, passed)))
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

    /// Writes a pass into `fx`, or renders the failure. `mark`: where this step's own field
    /// edits begin (an auth service that passed wrote its fields there): the client copies are
    /// removed before them.
    fn conclude(
        &self,
        outcome: Outcome,
        fx: &mut Effects,
        mark: usize,
    ) -> Result<(), Box<Rejection>> {
        match outcome {
            Ok((id, passed)) => {
                // Most policies set no upstream field (no forwarded claim, no auth service):
                // nothing to splice or forward then.
                if !self.strip.is_empty() {
                    let strip = self.strip.iter().map(|name| (name.clone(), None));
                    fx.upstream.splice(mark..mark, strip);
                    for (i, a) in self.all().enumerate() {
                        if passed & (1 << i) != 0 {
                            a.forward(&id, fx);
                        }
                    }
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
