//! Request flow, auth step: `basicAuth`. `Authorization: Basic` credentials checked against a
//! watched htpasswd file of bcrypt entries (`htpasswd -B`). bcrypt is slow on purpose (tens of
//! milliseconds), so it runs on the blocking pool, never on a worker, and a successful check is
//! remembered for `CACHE_TTL` (keyed by a SHA-256 of user and password, bounded to
//! `CACHE_ENTRIES`): a client sending the same credentials pays bcrypt once per minute, not per
//! request. A changed file forgets every remembered check.

use super::watched::Watched;
use super::{Failure, Verdict};
use crate::policy::identity::Identity;
use crate::policy::Input;
use base64::Engine;
use http::HeaderValue;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a successful check is remembered.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// At most this many remembered checks; the cache is emptied when full.
const CACHE_ENTRIES: usize = 10_000;

/// User name to bcrypt hash.
pub(crate) type Users = HashMap<String, String>;

/// One `basicAuth` section, compiled.
pub(crate) struct BasicAuth {
    pub(crate) users: Arc<Watched<Users>>,
    /// `Basic realm="..."`.
    pub(crate) challenge: HeaderValue,
    /// Recent successful checks, kept across reloads with the file.
    pub(crate) cache: Arc<Cache>,
}

/// Remembered checks: key hash to (when it expires, the users table it was checked against).
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<[u8; 32], (Instant, usize)>>);

/// The credentials of a request, decoded.
struct Presented {
    user: String,
    password: String,
    key: [u8; 32],
}

impl BasicAuth {
    /// Decides from the cache; `Pending` when bcrypt must run.
    pub(crate) fn check(&self, input: &Input) -> Verdict {
        let p = match presented(input) {
            Ok(Some(p)) => p,
            Ok(None) => return Verdict::Missing,
            Err(f) => return Verdict::Fail(f),
        };
        let users = self.users.get();
        if !users.contains_key(&p.user) {
            return Verdict::Fail(bad());
        }
        if self.cached(&p.key, generation(&users)) {
            return pass(p.user);
        }
        Verdict::Pending
    }

    /// Runs bcrypt on the blocking pool and remembers a success.
    pub(crate) async fn check_async(&self, input: &Input<'_>) -> Verdict {
        let v = self.check(input);
        if !matches!(v, Verdict::Pending) {
            return v;
        }
        let Ok(Some(p)) = presented(input) else {
            return Verdict::Missing;
        };
        let users = self.users.get_full();
        let Some(hash) = users.get(&p.user).cloned() else {
            return Verdict::Fail(bad());
        };
        let password = p.password.clone();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map(|r| r.unwrap_or(false))
            .unwrap_or(false);
        if !ok {
            return Verdict::Fail(bad());
        }
        let mut cache = self.cache.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(p.key, (Instant::now() + CACHE_TTL, generation(&users)));
        pass(p.user)
    }

    fn cached(&self, key: &[u8; 32], generation: usize) -> bool {
        let cache = self.cache.0.lock().unwrap_or_else(|e| e.into_inner());
        matches!(cache.get(key), Some((until, g)) if *g == generation && *until > Instant::now())
    }
}

/// Identifies the users table a check was made against (its address): a reloaded file makes
/// every remembered check stale.
fn generation(users: &Arc<Users>) -> usize {
    Arc::as_ptr(users) as usize
}

fn pass(user: String) -> Verdict {
    let user: Arc<str> = user.into();
    Verdict::Pass(Identity {
        subject: Some(user.clone()),
        consumer: Some(user),
        claims: None,
    })
}

fn bad() -> Failure {
    Failure::unauthenticated("bad_credentials", "the user name or password is not valid")
}

/// The `Authorization: Basic` credentials, `None` without any, an error when malformed.
fn presented(input: &Input) -> Result<Option<Presented>, Failure> {
    let Some(value) = input.headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Some(encoded) = value
        .as_bytes()
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case(b"basic "))
        .map(|_| value.as_bytes()[6..].trim_ascii())
    else {
        return Ok(None);
    };
    let malformed =
        || Failure::unauthenticated("malformed_credentials", "malformed Basic credentials");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (user, password) = text.split_once(':').ok_or_else(malformed)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let key = <[u8; 32]>::try_from(digest.as_ref()).map_err(|_| malformed())?;
    Ok(Some(Presented {
        user: user.to_string(),
        password: password.to_string(),
        key,
    }))
}

/// An htpasswd file of bcrypt entries (`user:$2y$...`); other schemes (MD5 `$apr1$`, SHA1,
/// crypt) are refused: they are too cheap to guess.
pub(crate) fn parse_htpasswd(path: &Path, text: &str) -> Result<Users, String> {
    let mut out = Users::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("{}: expected `user:bcrypt-hash`", at()))?;
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(format!(
                "{}: user `{user}` is not a bcrypt entry (make it with `htpasswd -B`)",
                at()
            ));
        }
        out.insert(user.to_string(), hash.to_string());
    }
    Ok(out)
}
