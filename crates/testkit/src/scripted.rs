//! Test harness: an HTTP/1.1 upstream whose every answer a test scripts — a status, a reset
//! connection, a slow answer, a held one, or a body broken half-way — and which records what it
//! was sent (method, path, `x-gatehouse-attempts`, body size and hash). For retry and
//! circuit-breaker tests.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// What the upstream does with one request (its body already read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// That status, body `ok` (or `fail` for 5xx).
    Status(u16),
    /// Closes the connection without an answer.
    Reset,
    /// Answers 200 after this long.
    Slow(Duration),
    /// Answers 200 once `Scripted::release` is called.
    Hold,
    /// Answers 200 with a length of 1000, sends `0123456789`, then breaks the connection once
    /// `Scripted::release` is called.
    BreakBody,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// `x-gatehouse-attempts`, if sent.
    pub attempt: Option<String>,
    /// Request body size.
    pub body_len: usize,
    /// FNV-64 of the body.
    pub body_hash: String,
}

type Script = dyn Fn(usize, &Seen) -> Answer + Send + Sync;
type Body = BoxBody<Bytes, std::io::Error>;

struct State {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    release: Notify,
}

/// A running scripted upstream; stops when dropped.
pub struct Scripted {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Starts on a free port; `script(n, seen)` decides the answer to the `n`-th request (from 0).
    pub async fn start(script: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind scripted upstream");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            release: Notify::new(),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            // Connection tasks live in the set: aborting the upstream closes them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| serve(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Scripted { addr, state, task }
    }

    /// Every request seen so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// Requests seen so far.
    pub fn count(&self) -> usize {
        self.state.seen.lock().expect("seen").len()
    }

    /// Requests being answered now (held or slow).
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Lets every held request answer.
    pub fn release(&self) {
        self.state.release.notify_waiters();
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        attempt: (parts.headers.get("x-gatehouse-attempts"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body_len: body.len(),
        body_hash: crate::fnv64(&body),
    };
    let n = {
        let mut all = st.seen.lock().expect("seen");
        all.push(seen.clone());
        all.len() - 1
    };
    let answer = (st.script)(n, &seen);
    // Registered before the request counts as in flight, so a release that follows a test's
    // wait for `in_flight` is never missed.
    let released = st.release.notified();
    tokio::pin!(released);
    released.as_mut().enable();
    st.in_flight.fetch_add(1, Ordering::SeqCst);
    let _counted = InFlight(&st.in_flight);
    let status = match answer {
        Answer::Status(s) => s,
        // A service error makes hyper close the connection without answering.
        Answer::Reset => return Err(std::io::Error::other("scripted reset")),
        Answer::Slow(d) => {
            tokio::time::sleep(d).await;
            200
        }
        Answer::Hold => {
            released.await;
            200
        }
        Answer::BreakBody => {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let st = st.clone();
            tokio::spawn(async move {
                let released = st.release.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"0123456789"))))
                    .await;
                released.await;
                let _ = tx.send(Err(std::io::Error::other("scripted break"))).await;
            });
            let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            let mut resp = Response::new(BodyExt::boxed(body));
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, 1000.into());
            return Ok(resp);
        }
    };
    let text = if status >= 500 { "fail" } else { "ok" };
    let full = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {});
    let mut resp = Response::new(BodyExt::boxed(full));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok(resp)
}
