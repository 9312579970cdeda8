//! Request flow, policy chain: the `rateLimit` step. Finds the request's key (client address,
//! header, cookie or route), asks the policy's buckets — in process (`local`) or in Redis
//! (`redis`) — and refuses with 429, `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit`
//! fields (draft-ietf-httpapi-ratelimit-headers) when the bucket is empty.

pub(crate) mod gcra;
pub(crate) mod local;
pub(crate) mod redis;

use super::{Effects, Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use gatehouse_config::{RateLimitKey, StoreErrorMode};
use gcra::{Decision, Gcra};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use local::LocalLimiter;
use prometheus_client::metrics::counter::Counter;
use redis::RedisStore;
use std::net::IpAddr;
use std::sync::Arc;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Where a limit's buckets are.
pub(crate) enum Store {
    /// In this process, kept across reloads in `state::policy`.
    Local(Arc<LocalLimiter>),
    /// In Redis.
    Global {
        redis: Arc<RedisStore>,
        gcra: Gcra,
        on_error: StoreErrorMode,
    },
}

/// One `rateLimit` of one rule, compiled.
pub(crate) struct RateLimitStep {
    /// `namespace/name` of the policy: the quota's name in the headers and the Redis key.
    pub(crate) policy: Arc<str>,
    pub(crate) key: RateLimitKey,
    pub(crate) store: Store,
    /// `RateLimit-Policy`, made once.
    pub(crate) policy_header: HeaderValue,
    /// `gatehouse_rate_limited_total{route, policy}`.
    pub(crate) rejected: Counter,
    /// `gatehouse_rate_limit_store_errors_total{policy}`.
    pub(crate) store_errors: Counter,
}

/// The part of a request a bucket is keyed by. Requests without the header or cookie share one
/// bucket (the empty key), so leaving it out is no way around the limit.
enum KeyRef<'a> {
    Ip(IpAddr),
    Bytes(&'a [u8]),
    /// A claim in its text form (numbers are formatted).
    Text(std::borrow::Cow<'a, str>),
}

/// One write per key: a limiter's keys are all of one kind (its step's `key`), so neither a
/// variant tag nor a length prefix is needed to tell them apart, and each extra write is a round
/// of the keyed hash (an address hashed as the derive does it took ~140 instructions).
impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self {
            KeyRef::Ip(IpAddr::V4(a)) => h.write_u128(u128::from(a.to_ipv6_mapped())),
            KeyRef::Ip(IpAddr::V6(a)) => h.write_u128(u128::from(*a)),
            KeyRef::Bytes(b) => h.write(b),
            KeyRef::Text(t) => h.write(t.as_bytes()),
        }
    }
}

impl RateLimitStep {
    /// The `RateLimit-Policy` value: the quota's name, requests (`q`) per window (`w`, seconds).
    pub(crate) fn policy_header(
        policy: &str,
        requests: u64,
        per: std::time::Duration,
    ) -> HeaderValue {
        let w = per.as_secs().max(1);
        HeaderValue::from_str(&format!("\"{policy}\";q={requests};w={w}"))
            .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
    }

    /// The request's key. Requests without a consumer or the claim (no auth policy passed one
    /// before this step) share the empty key, like requests without the header.
    fn key<'a>(&self, input: &'a Input<'a>, fx: &'a Effects) -> KeyRef<'a> {
        let id = fx.identity.as_ref();
        match &self.key {
            RateLimitKey::ClientAddress => KeyRef::Ip(input.client_ip()),
            RateLimitKey::Header(name) => KeyRef::Bytes(
                input
                    .headers
                    .get(name.as_str())
                    .map_or(&[][..], HeaderValue::as_bytes),
            ),
            RateLimitKey::Cookie(name) => KeyRef::Bytes(input.cookie(name).unwrap_or(&[])),
            RateLimitKey::Route => KeyRef::Bytes(input.route.as_bytes()),
            RateLimitKey::Consumer => KeyRef::Bytes(
                id.and_then(|i| i.consumer.as_deref())
                    .map_or(&[][..], str::as_bytes),
            ),
            RateLimitKey::Claim(name) => KeyRef::Text(
                id.and_then(|i| i.claim_text(name))
                    .unwrap_or(std::borrow::Cow::Borrowed("")),
            ),
        }
    }

    /// Whether the decision needs the network (a global limit).
    pub(crate) fn is_global(&self) -> bool {
        matches!(self.store, Store::Global { .. })
    }

    /// Decides a local limit; `None` for a global one (see `check_global`).
    pub(crate) fn check_local(
        &self,
        input: &Input,
        fx: &Effects,
    ) -> Option<Result<(), Box<Rejection>>> {
        let Store::Local(limiter) = &self.store else {
            return None;
        };
        Some(self.verdict(limiter.check(&self.key(input, fx))))
    }

    /// Decides a global limit through Redis, `onStoreError` deciding when Redis cannot.
    pub(crate) async fn check_global(
        &self,
        input: &Input<'_>,
        fx: &Effects,
    ) -> Result<(), Box<Rejection>> {
        let Store::Global {
            redis,
            gcra,
            on_error,
        } = &self.store
        else {
            return Ok(());
        };
        let key = redis_key(&self.policy, &self.key(input, fx));
        match redis.check(key, *gcra).await {
            Ok(d) => self.verdict(d),
            Err(e) => {
                self.store_errors.inc();
                tracing::warn!(policy = &*self.policy, "rate limit store: {e}");
                match on_error {
                    StoreErrorMode::Allow => Ok(()),
                    StoreErrorMode::Deny => Err(self.refuse(gcra.interval_duration())),
                }
            }
        }
    }

    fn verdict(&self, d: Decision) -> Result<(), Box<Rejection>> {
        if d.allowed {
            return Ok(());
        }
        Err(self.refuse(d.wait))
    }

    fn refuse(&self, wait: std::time::Duration) -> Box<Rejection> {
        self.rejected.inc();
        // Whole seconds, rounded up: a client that waits this long is admitted.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let mut buf = itoa::Buffer::new();
        let retry =
            HeaderValue::from_str(buf.format(secs)).unwrap_or(HeaderValue::from_static("1"));
        let state = HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", self.policy))
            .unwrap_or_else(|_| HeaderValue::from_static("\"limit\";r=0"));
        let error = ProxyError::new(
            ErrorKind::RateLimited,
            format!(
                "rate limit of policy {} exceeded; retry in {secs}s",
                self.policy
            ),
        );
        Box::new(Rejection {
            error,
            status: None,
            headers: vec![
                (RETRY_AFTER, retry),
                (RATELIMIT_POLICY.clone(), self.policy_header.clone()),
                (RATELIMIT.clone(), state),
            ],
            reason: None,
            answer: None,
        })
    }
}

impl Gcra {
    /// The emission interval as a duration (the wait a refused request is told when the store
    /// cannot say).
    fn interval_duration(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.interval)
    }
}

/// The Redis key of a bucket: `gatehouse:rl:{policy}:{key}`; long or binary keys are hashed
/// (FNV-1a, stable across processes) so that keys stay short and printable. Written into one
/// string without `format!`: this runs for every request under a global limit.
fn redis_key(policy: &str, key: &KeyRef) -> String {
    const PREFIX: &str = "gatehouse:rl:{";
    let mut out = String::with_capacity(PREFIX.len() + policy.len() + 2 + 40);
    out.push_str(PREFIX);
    out.push_str(policy);
    out.push_str("}:");
    let mut digits = itoa::Buffer::new();
    match key {
        KeyRef::Ip(IpAddr::V4(ip)) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
        }
        KeyRef::Ip(ip @ IpAddr::V6(_)) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
        KeyRef::Text(t) => push_key_bytes(&mut out, t.as_bytes()),
        KeyRef::Bytes(b) => push_key_bytes(&mut out, b),
    }
    out
}

/// A header, cookie, consumer or claim key: as it is when short and printable, else `#` and its
/// FNV-1a hash in hex.
fn push_key_bytes(out: &mut String, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) if s.len() <= 128 && s.bytes().all(|c| c.is_ascii_graphic()) => out.push_str(s),
        _ => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for c in b.iter() {
                h ^= u64::from(*c);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            use std::fmt::Write;
            let _ = write!(out, "#{h:016x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn cookies_and_redis_keys() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "a=1; session=abc ; b=2".parse().unwrap());
        let input = Input::for_test(&headers, "/");
        assert_eq!(input.cookie("session"), Some(&b"abc"[..]));
        assert_eq!(input.cookie("sess"), None);
        assert_eq!(
            redis_key("ns/p", &KeyRef::Bytes(b"alice")),
            "gatehouse:rl:{ns/p}:alice"
        );
        assert!(redis_key("ns/p", &KeyRef::Bytes(b"a b")).starts_with("gatehouse:rl:{ns/p}:#"));
        let v4 = KeyRef::Ip("10.0.200.7".parse().unwrap());
        assert_eq!(redis_key("ns/p", &v4), "gatehouse:rl:{ns/p}:10.0.200.7");
        let v6 = KeyRef::Ip("2001:db8::1".parse().unwrap());
        assert_eq!(redis_key("ns/p", &v6), "gatehouse:rl:{ns/p}:2001:db8::1");
    }
}
