//! Request flow, auth step: `jwt`. The token is read from the configured places, its header
//! checked before any key is touched — `alg: none`, embedded keys (`jwk`, `jku`, `x5u`) and
//! algorithms outside `algorithms` are refused — then verified with a key of the policy's set
//! that was made for exactly the token's algorithm (so an RSA public key can never serve as an
//! HMAC secret), with `exp`/`nbf` (leeway), `iss` and `aud`. Scopes and required claims decide
//! 403. A `kid` the set does not hold makes the step wait for a JWKS refresh (`jwks`).
//!
//! A signature check costs more than the rest of a proxied request, and clients send the same
//! token many times: a token that passed is remembered (`Verified`, keyed by the whole token) until
//! its `exp` (plus leeway), at most `REMEMBER`, or until the key set changes.

use super::jwks::{KeySet, RemoteJwks};
use super::watched::Watched;
use super::{credential, Failure, Source, Verdict};
use crate::policy::identity::Identity;
use crate::policy::{Effects, Input};
use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind as JwtError;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest time a verified token is remembered.
const REMEMBER: Duration = Duration::from_secs(60);
/// At most this many remembered tokens per `jwt` section; emptied when full.
const REMEMBERED: usize = 10_000;

/// Tokens that passed, by the whole token: until when, the key set they were verified against
/// (kept, so that a new set can never be mistaken for it), and whose they are.
#[derive(Default)]
pub(crate) struct Verified(Mutex<HashMap<Box<str>, Remembered>>);

/// Until when, against which key set, whose.
type Remembered = (Instant, Arc<KeySet>, Identity);

/// Where a `jwt`'s keys are, kept across reloads by `state::policy`.
#[derive(Clone)]
pub(crate) enum Keys {
    /// Fetched from a URL.
    Remote(Arc<RemoteJwks>),
    /// A watched file (JWKS or secret).
    File(Arc<Watched<KeySet>>),
    /// An inline secret.
    Fixed(Arc<KeySet>),
}

/// One `jwt` section, compiled.
pub(crate) struct JwtAuth {
    pub(crate) keys: Keys,
    /// One validation per accepted algorithm (built once: issuer, audiences, leeway).
    pub(crate) validations: Vec<(Algorithm, Validation)>,
    pub(crate) from: Box<[Source]>,
    /// Claim to upstream header.
    pub(crate) forward: Box<[(String, HeaderName)]>,
    pub(crate) scopes: Box<[String]>,
    pub(crate) claims: Box<[(String, String)]>,
    /// `Bearer realm="gatehouse"`.
    pub(crate) challenge: HeaderValue,
    /// Tokens that passed recently.
    pub(crate) verified: Verified,
    /// `leeway`, added to a remembered token's `exp`.
    pub(crate) leeway: Duration,
}

/// The validation of tokens signed with `alg`.
pub(crate) fn validation(alg: Algorithm, jwt: &gatehouse_config::Jwt) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = jwt.leeway.as_secs();
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp"]);
    if let Some(iss) = &jwt.issuer {
        v.set_issuer(&[iss]);
        v.set_required_spec_claims(&["exp", "iss"]);
    }
    if jwt.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&jwt.audiences);
    }
    v
}

impl JwtAuth {
    /// Checks the token; `Pending` when its `kid` is unknown and a refresh may bring it.
    pub(crate) fn check(&self, input: &Input) -> Verdict {
        self.verify(input, true)
    }

    /// Refreshes the key set if `check` asked for it, then decides.
    pub(crate) async fn check_async(&self, input: &Input<'_>) -> Verdict {
        match self.verify(input, true) {
            Verdict::Pending => {}
            v => return v,
        }
        if let Keys::Remote(r) = &self.keys {
            r.refresh_for_unknown_kid().await;
        }
        self.verify(input, false)
    }

    fn verify(&self, input: &Input, may_wait: bool) -> Verdict {
        let Some(token) = credential(input, &self.from) else {
            return Verdict::Missing;
        };
        let set = self.key_set();
        if let Some(id) = self.remembered(&token, &set) {
            return Verdict::Pass(id);
        }
        let header = match jsonwebtoken::decode_header(&token) {
            Ok(h) => h,
            Err(_) => return Verdict::Fail(header_failure(&token)),
        };
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() {
            return fail(
                "embedded_key",
                "tokens that carry their own key are not accepted",
            );
        }
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return fail(
                "algorithm_not_allowed",
                format!("tokens signed with {:?} are not accepted here", header.alg),
            );
        };
        let Some(mut keys) = set.candidates(header.kid.as_deref(), header.alg) else {
            return match (may_wait, &self.keys) {
                (true, Keys::Remote(_)) => Verdict::Pending,
                _ => fail("unknown_key", "the token's key (`kid`) is not known"),
            };
        };
        let mut outcome = fail(
            "algorithm_mismatch",
            format!("no key of this policy verifies {:?}", header.alg),
        );
        for key in keys.by_ref() {
            match jsonwebtoken::decode::<Map<String, Value>>(&token, &key.decoding, validation) {
                Ok(data) => {
                    let v = self.authorize(data.claims);
                    if let Verdict::Pass(id) = &v {
                        self.remember(&token, &set, id);
                    }
                    return v;
                }
                Err(e) if *e.kind() == JwtError::InvalidSignature => {
                    outcome = fail("bad_signature", "the token's signature is not valid");
                }
                Err(e) => return Verdict::Fail(claim_failure(e.kind())),
            }
        }
        outcome
    }

    /// The identity of a token that passed recently against the same key set.
    fn remembered(&self, token: &str, set: &Arc<KeySet>) -> Option<Identity> {
        let map = self.verified.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(token) {
            Some((until, s, id)) if Arc::ptr_eq(s, set) && *until > Instant::now() => {
                Some(id.clone())
            }
            _ => None,
        }
    }

    /// Remembers a token that passed, until its `exp` (plus leeway) or `REMEMBER`.
    fn remember(&self, token: &str, set: &Arc<KeySet>, id: &Identity) {
        let Some(exp) = id.claim("exp").and_then(serde_json::Value::as_u64) else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let left = Duration::from_secs(exp).saturating_sub(now) + self.leeway;
        let until = Instant::now() + left.min(REMEMBER);
        let mut map = self.verified.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= REMEMBERED {
            map.clear();
        }
        map.insert(token.into(), (until, set.clone(), id.clone()));
    }

    fn key_set(&self) -> Arc<KeySet> {
        match &self.keys {
            Keys::Remote(r) => r.keys().clone(),
            Keys::File(w) => w.get_full(),
            Keys::Fixed(k) => k.clone(),
        }
    }

    /// Required scopes and claims on a verified token (403 when missing).
    fn authorize(&self, claims: Map<String, Value>) -> Verdict {
        let id = Identity {
            subject: claims.get("sub").and_then(Value::as_str).map(Arc::from),
            consumer: None,
            claims: Some(Arc::new(claims)),
        };
        let granted = scopes(&id);
        if let Some(s) = self.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
            return Verdict::Fail(Failure::forbidden(
                "missing_scope",
                format!("the token does not grant scope `{s}`"),
            ));
        }
        for (name, want) in self.claims.iter() {
            let ok = match id.claim(name) {
                Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(want)),
                Some(_) => id.claim_text(name).as_deref() == Some(want.as_str()),
                None => false,
            };
            if !ok {
                return Verdict::Fail(Failure::forbidden(
                    "missing_claim",
                    format!("the token's claim `{name}` does not allow this"),
                ));
            }
        }
        Verdict::Pass(id)
    }

    /// The forwarded claims of a passed token (their client-sent copies are already removed).
    pub(crate) fn forward(&self, id: &Identity, fx: &mut Effects) {
        for (claim, header) in self.forward.iter() {
            let value = id
                .claim_text(claim)
                .and_then(|t| HeaderValue::from_str(&t).ok());
            if let Some(v) = value {
                fx.upstream.push((header.clone(), Some(v)));
            }
        }
    }
}

/// The scopes a token grants: `scope` (space-separated) and `scp` (a list or a string).
fn scopes(id: &Identity) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match id.claim(name) {
            Some(Value::String(s)) => out.extend(s.split_ascii_whitespace()),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

fn fail(reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::Fail(Failure::unauthenticated(reason, message))
}

/// Why a token's header could not be read: `alg: none` (or another unknown algorithm) is told
/// apart from plain garbage.
fn header_failure(token: &str) -> Failure {
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .and_then(|h| {
            h.get("alg")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        });
    match alg.as_deref() {
        Some("none") => Failure::unauthenticated("alg_none", "unsigned tokens are not accepted"),
        Some(_) => Failure::unauthenticated(
            "algorithm_not_allowed",
            "the token's algorithm is not accepted",
        ),
        None => Failure::unauthenticated("malformed_token", "the token is not a valid JWT"),
    }
}

/// A verified signature whose claims do not pass.
fn claim_failure(kind: &JwtError) -> Failure {
    let (reason, message) = match kind {
        JwtError::ExpiredSignature => ("expired", "the token has expired"),
        JwtError::ImmatureSignature => ("not_yet_valid", "the token is not valid yet (`nbf`)"),
        JwtError::InvalidIssuer => ("wrong_issuer", "the token's issuer is not accepted"),
        JwtError::InvalidAudience => ("wrong_audience", "the token is not meant for this audience"),
        JwtError::MissingRequiredClaim(_) => (
            "missing_claim",
            "the token lacks a required claim (`exp`, `iss`)",
        ),
        JwtError::InvalidAlgorithm => (
            "algorithm_mismatch",
            "the token's algorithm does not match its key",
        ),
        _ => ("malformed_token", "the token is not a valid JWT"),
    };
    Failure::unauthenticated(reason, message)
}
