//! Request flow, last step: one JSON access-log line per finished request.
//!
//! The line is built in a reused per-thread buffer and written with one `write` call, so lines from
//! different workers never interleave and the hot path allocates nothing for logging.

use gatehouse_config::{AccessLog, LogTarget};
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Where lines are written.
pub struct AccessLogger {
    target: Target,
}

enum Target {
    Stdout,
    Stderr,
    File(Mutex<File>),
}

/// Everything one line says.
pub struct Record<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Downstream peer's address.
    pub client: &'a str,
    /// Method.
    pub method: &'a str,
    /// Host as requested.
    pub host: &'a str,
    /// Path (without query).
    pub path: &'a str,
    /// Status sent.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes written.
    pub bytes_out: u64,
    /// Total time.
    pub duration: Duration,
    /// `namespace/name` of the route, `none` when none matched (as the metrics label it).
    pub route: &'a str,
    /// `namespace/name` of the backend, empty when not forwarded.
    pub backend: &'a str,
    /// Endpoint used, if any.
    pub upstream: Option<&'a str>,
    /// Time to the upstream's response headers, if forwarded.
    pub upstream_duration: Option<Duration>,
    /// Proxy error kind, if the proxy answered with an error.
    pub error: Option<&'static str>,
    /// Attempts made upstream, when the rule retries.
    pub attempts: Option<u32>,
    /// What a rule's `overrides` did, when one matched.
    pub override_use: Option<&'static str>,
    /// Why a policy refused the request, in a word.
    pub reason: Option<&'static str>,
    /// The caller's consumer name (API key, basic auth), when authenticated.
    pub consumer: Option<&'a str>,
    /// The caller's subject (JWT `sub`, basic-auth user), when authenticated.
    pub subject: Option<&'a str>,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

fn string(buf: &mut Vec<u8>, s: &str) {
    // No early exit, so the check vectorizes; almost every string needs no escaping.
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // serde_json escapes correctly; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

/// Milliseconds with three decimals, without float formatting.
fn millis(buf: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    let mut b = itoa::Buffer::new();
    buf.extend_from_slice(b.format(micros / 1000).as_bytes());
    buf.push(b'.');
    let frac = (micros % 1000) as u32;
    buf.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

thread_local! {
    /// The second the cached timestamp prefix belongs to, and `YYYY-MM-DDTHH:MM:SS.` for it.
    static STAMP: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-11-23T03:03:48.307Z`; the date and time part is formatted once per second.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, ms) = (since.as_secs(), since.subsec_millis());
    STAMP.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let full = humantime::format_rfc3339_seconds(now).to_string();
            c.1 = format!("{}.", full.trim_end_matches('Z'));
            c.0 = secs;
        }
        buf.extend_from_slice(c.1.as_bytes());
    });
    buf.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

impl AccessLogger {
    /// A logger for the settings, or `None` when disabled.
    pub fn new(settings: &AccessLog) -> std::io::Result<Option<Self>> {
        if !settings.enabled {
            return Ok(None);
        }
        let target = match &settings.target {
            LogTarget::Stdout => Target::Stdout,
            LogTarget::Stderr => Target::Stderr,
            LogTarget::File(p) => Target::File(Mutex::new(
                File::options().create(true).append(true).open(p)?,
            )),
        };
        Ok(Some(AccessLogger { target }))
    }

    /// Writes one line.
    pub fn log(&self, r: &Record) {
        BUF.with(|b| {
            let mut guard = b.borrow_mut();
            let buf = &mut *guard;
            buf.clear();
            buf.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(buf, SystemTime::now());
            buf.push(b'"');
            for (key, value) in [
                (&b",\"requestId\":"[..], r.request_id),
                (b",\"client\":", r.client),
                (b",\"method\":", r.method),
                (b",\"host\":", r.host),
                (b",\"path\":", r.path),
            ] {
                buf.extend_from_slice(key);
                string(buf, value);
            }
            let mut n = itoa::Buffer::new();
            for (key, value) in [
                (&b",\"status\":"[..], u64::from(r.status)),
                (b",\"bytesIn\":", r.bytes_in),
                (b",\"bytesOut\":", r.bytes_out),
            ] {
                buf.extend_from_slice(key);
                buf.extend_from_slice(n.format(value).as_bytes());
            }
            buf.extend_from_slice(b",\"durationMs\":");
            millis(buf, r.duration);
            for (key, value) in [
                (&b",\"route\":"[..], r.route),
                (b",\"backend\":", r.backend),
            ] {
                buf.extend_from_slice(key);
                string(buf, value);
            }
            buf.extend_from_slice(b",\"upstream\":");
            match r.upstream {
                Some(u) => string(buf, u),
                None => buf.extend_from_slice(b"null"),
            }
            buf.extend_from_slice(b",\"upstreamDurationMs\":");
            match r.upstream_duration {
                Some(d) => millis(buf, d),
                None => buf.extend_from_slice(b"null"),
            }
            if let Some(e) = r.error {
                let _ = write!(buf, ",\"error\":\"{e}\"");
            }
            if let Some(e) = r.reason {
                let _ = write!(buf, ",\"reason\":\"{e}\"");
            }
            for (key, value) in [
                (&b",\"consumer\":"[..], r.consumer),
                (b",\"subject\":", r.subject),
            ] {
                if let Some(v) = value {
                    buf.extend_from_slice(key);
                    string(buf, v);
                }
            }
            if let Some(n) = r.attempts {
                buf.extend_from_slice(b",\"attempts\":");
                buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            if let Some(o) = r.override_use {
                let _ = write!(buf, ",\"override\":\"{o}\"");
            }
            buf.extend_from_slice(b"}\n");
            // A full disk or closed pipe must not fail the request; the line is dropped.
            let _ = match &self.target {
                Target::Stdout => std::io::stdout().lock().write_all(buf),
                Target::Stderr => std::io::stderr().lock().write_all(buf),
                Target::File(f) => match f.lock() {
                    Ok(mut f) => f.write_all(buf),
                    Err(_) => Ok(()),
                },
            };
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_times_and_strings_format_without_fmt() {
        let mut b = Vec::new();
        millis(&mut b, Duration::from_micros(12_345_678));
        assert_eq!(b, b"12345.678");
        b.clear();
        millis(&mut b, Duration::from_micros(7));
        assert_eq!(b, b"0.007");
        b.clear();
        timestamp(
            &mut b,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_404_228_307),
        );
        assert_eq!(
            String::from_utf8(b.clone()).unwrap(),
            "2026-11-23T03:23:48.307Z"
        );
        b.clear();
        string(&mut b, "plain/path");
        string(&mut b, "quote\"and\nnewline");
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#""plain/path""quote\"and\nnewline""#
        );
    }
}
