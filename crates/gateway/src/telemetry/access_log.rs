//! Request flow, last step: one JSON access-log line per finished request.
//!
//! The line is built in a reused per-thread buffer and written with one `write` call, so lines from
//! different workers never interleave and the hot path allocates nothing for logging.

use gatehouse_config::{AccessLog, LogTarget};
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
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
    /// Downstream peer.
    pub client: SocketAddr,
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
    /// `namespace/name` of the route, empty when none matched.
    pub route: &'a str,
    /// `namespace/name` of the backend, empty when not forwarded.
    pub backend: &'a str,
    /// Endpoint used, if any.
    pub upstream: Option<&'a str>,
    /// Time to the upstream's response headers, if forwarded.
    pub upstream_duration: Option<Duration>,
    /// Proxy error kind, if the proxy answered with an error.
    pub error: Option<&'static str>,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

fn string(buf: &mut Vec<u8>, s: &str) {
    // serde_json escapes correctly; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
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
            let ts = humantime::format_rfc3339_millis(SystemTime::now());
            let _ = write!(buf, "{{\"timestamp\":\"{ts}\",\"requestId\":");
            string(buf, r.request_id);
            let _ = write!(buf, ",\"client\":\"{}\",\"method\":", r.client.ip());
            string(buf, r.method);
            buf.extend_from_slice(b",\"host\":");
            string(buf, r.host);
            buf.extend_from_slice(b",\"path\":");
            string(buf, r.path);
            let _ = write!(
                buf,
                ",\"status\":{},\"bytesIn\":{},\"bytesOut\":{},\"durationMs\":{:.3},\"route\":",
                r.status,
                r.bytes_in,
                r.bytes_out,
                r.duration.as_secs_f64() * 1000.0
            );
            string(buf, r.route);
            buf.extend_from_slice(b",\"backend\":");
            string(buf, r.backend);
            buf.extend_from_slice(b",\"upstream\":");
            match r.upstream {
                Some(u) => string(buf, u),
                None => buf.extend_from_slice(b"null"),
            }
            buf.extend_from_slice(b",\"upstreamDurationMs\":");
            match r.upstream_duration {
                Some(d) => {
                    let _ = write!(buf, "{:.3}", d.as_secs_f64() * 1000.0);
                }
                None => buf.extend_from_slice(b"null"),
            }
            if let Some(e) = r.error {
                let _ = write!(buf, ",\"error\":\"{e}\"");
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
