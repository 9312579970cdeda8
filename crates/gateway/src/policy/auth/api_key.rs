//! Request flow, auth step: `apiKey`. The presented key is hashed (SHA-256) and the hash looked
//! up among the configured ones — inline `keys` and the watched `keysFile` — so no comparison
//! ever runs over the secret itself, and what is compared (a hash) tells an attacker nothing
//! about how close a guess was. A match names the consumer.

use super::watched::Watched;
use super::{credential_bytes, Failure, Source, Verdict};
use crate::policy::identity::Identity;
use crate::policy::Input;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

/// Key hash to consumer.
pub(crate) type KeyTable = HashMap<[u8; 32], Arc<str>, BuildHasherDefault<DigestHasher>>;

/// Hashes a SHA-256 digest by its first eight bytes: they are already uniform, so SipHash
/// (about 270 instructions a lookup) adds nothing. Flooding is not possible either: requests
/// only look up; the table holds the configured keys alone.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_ne_bytes(first);
    }
}

/// One `apiKey` section, compiled.
pub(crate) struct ApiKeyAuth {
    pub(crate) from: Box<[Source]>,
    /// Inline `keys`.
    pub(crate) inline: KeyTable,
    /// `keysFile`, kept across reloads by `state::policy`.
    pub(crate) file: Option<Arc<Watched<KeyTable>>>,
}

impl ApiKeyAuth {
    /// Looks the request's key up.
    pub(crate) fn check(&self, input: &Input) -> Verdict {
        let Some(key) = credential_bytes(input, &self.from) else {
            return Verdict::Missing;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &key);
        let Ok(hash) = <[u8; 32]>::try_from(digest.as_ref()) else {
            return Verdict::Missing;
        };
        let consumer = match self.inline.get(&hash) {
            Some(c) => Some(c.clone()),
            None => self.file.as_ref().and_then(|f| f.get().get(&hash).cloned()),
        };
        match consumer {
            Some(c) => Verdict::Pass(Identity {
                consumer: Some(c),
                ..Identity::default()
            }),
            None => Verdict::Fail(Failure::unauthenticated(
                "unknown_api_key",
                "the API key is not valid",
            )),
        }
    }
}

/// A `keysFile`: one key per line, `consumer sha256-hex`; blank lines and `#` comments skipped.
pub(crate) fn parse_keys_file(path: &Path, text: &str) -> Result<KeyTable, String> {
    let mut out = KeyTable::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(consumer), Some(hex), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "{}:{}: expected `consumer sha256-hex`",
                path.display(),
                n + 1
            ));
        };
        let hash = gatehouse_config::parse_sha256(hex).ok_or_else(|| {
            format!(
                "{}:{}: expected the key's SHA-256 as 64 hexadecimal digits",
                path.display(),
                n + 1
            )
        })?;
        out.insert(hash, consumer.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};

    /// The consumer the key in header `x-api-key: value` names, or why it names none.
    fn consumer_of(value: &[u8], from: Box<[Source]>) -> Result<Arc<str>, &'static str> {
        let sha = ring::digest::digest(&ring::digest::SHA256, b"secret-key");
        let hash = <[u8; 32]>::try_from(sha.as_ref()).unwrap();
        let auth = ApiKeyAuth {
            from,
            inline: [(hash, Arc::from("acme"))].into_iter().collect(),
            file: None,
        };
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_bytes(value).unwrap());
        match auth.check(&Input::for_test(&h, "/")) {
            Verdict::Pass(id) => Ok(id.consumer.unwrap()),
            Verdict::Missing => Err("missing"),
            Verdict::Fail(f) => Err(f.reason),
            Verdict::Pending => Err("pending"),
        }
    }

    #[test]
    fn a_header_key_is_read_as_ascii_bytes_trimmed_like_any_credential() {
        let header = || Box::from([Source::Header(HeaderName::from_static("x-api-key"), None)]);
        assert_eq!(consumer_of(b"secret-key", header()).as_deref(), Ok("acme"));
        assert_eq!(
            consumer_of(b" \tsecret-key ", header()).as_deref(),
            Ok("acme")
        );
        assert_eq!(
            consumer_of(b"secret-kez", header()).err(),
            Some("unknown_api_key")
        );
        // Not ASCII: no credential, as `HeaderValue::to_str` would have it.
        assert_eq!(
            consumer_of("s\u{e9}cret".as_bytes(), header()).err(),
            Some("missing")
        );
        assert_eq!(consumer_of(b"  ", header()).err(), Some("missing"));
        // A prefix goes the general way, with the same result.
        let prefixed = Box::from([Source::Header(
            HeaderName::from_static("x-api-key"),
            Some("Key ".into()),
        )]);
        assert_eq!(
            consumer_of(b"key  secret-key", prefixed).as_deref(),
            Ok("acme")
        );
    }

    #[test]
    fn keys_files_parse_and_report_their_line() {
        let hex = "a".repeat(64);
        let t = parse_keys_file(Path::new("k"), &format!("# c\n\nacme {hex}\n")).unwrap();
        assert_eq!(t.get(&[0xaa; 32]).map(|c| &**c), Some("acme"));
        let e = parse_keys_file(Path::new("k"), "acme\n").err().unwrap();
        assert!(e.starts_with("k:1:"), "{e}");
        assert!(parse_keys_file(Path::new("k"), "acme zz\n").is_err());
    }
}
