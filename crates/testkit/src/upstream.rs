//! A real HTTP/1.1 + h2c upstream on an ephemeral port, with endpoints that let tests observe what
//! the gateway sent and control when the response continues (to prove streaming).
//!
//! - any path: JSON echo of method, path, query, version, headers, body size and FNV-64 of the body
//! - `/stream/N`: N bytes of a fixed pattern, in 64 KiB chunks
//! - `/gate`: headers and `first\n` now, `rest\n` after `Upstream::release()`
//! - `/upload-gate`: reports the first request-body chunk to `Upstream::first_chunk()` before reading on
//! - `/slow/MS`: answers after MS milliseconds; `/status/N`: answers with status N

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex, Notify};

type Body = BoxBody<Bytes, Infallible>;

struct State {
    name: String,
    release: Notify,
    first_chunk_tx: mpsc::UnboundedSender<usize>,
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<State>,
    first_chunk_rx: Mutex<mpsc::UnboundedReceiver<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The byte at offset `i` of `/stream/N` bodies.
pub fn pattern(i: usize) -> u8 {
    b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]
}

impl Upstream {
    /// Starts an upstream that names itself `name` in every echo.
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            name: name.to_string(),
            release: Notify::new(),
            first_chunk_tx: tx,
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(serve(st, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            state,
            first_chunk_rx: Mutex::new(rx),
            task,
        }
    }

    /// Lets one waiting `/gate` response continue.
    pub fn release(&self) {
        self.state.release.notify_one();
    }

    /// Waits until an `/upload-gate` request's first body chunk arrived; returns its size.
    pub async fn first_chunk(&self) -> usize {
        self.first_chunk_rx
            .lock()
            .await
            .recv()
            .await
            .expect("upstream alive")
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

async fn serve(st: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if let Some(n) = path
        .strip_prefix("/stream/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
        tokio::spawn(async move {
            let mut sent = 0;
            while sent < n {
                let len = (n - sent).min(64 * 1024);
                let chunk: Vec<u8> = (sent..sent + len).map(pattern).collect();
                if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                    return;
                }
                sent += len;
            }
        });
        let body = StreamBody::new(tokio_stream(rx));
        let mut r = Response::new(BodyExt::boxed(body));
        r.headers_mut().insert("content-length", n.into());
        return r;
    }
    if path == "/gate" {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        let st2 = st.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"first\n"))))
                .await;
            st2.release.notified().await;
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"rest\n"))))
                .await;
        });
        return Response::new(BodyExt::boxed(StreamBody::new(tokio_stream(rx))));
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return full(StatusCode::OK, format!("slept {ms}ms\n"));
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|n| n.parse::<u16>().ok())
    {
        return full(
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            format!("status {code}\n"),
        );
    }
    let (parts, mut body) = req.into_parts();
    let gate = path == "/upload-gate";
    let mut size = 0usize;
    let mut hash = fnv64_init();
    let mut first = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return full(StatusCode::BAD_REQUEST, "body error");
        };
        if let Some(d) = frame.data_ref() {
            size += d.len();
            hash = fnv64_update(hash, d);
            if gate && first && !d.is_empty() {
                first = false;
                let _ = st.first_chunk_tx.send(d.len());
            }
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::from(v.to_str().unwrap_or("<binary>")),
            )
        })
        .fold(serde_json::Map::new(), |mut m, (k, v)| {
            match m.get_mut(&k) {
                Some(serde_json::Value::String(prev)) => {
                    *prev = format!("{prev}, {}", v.as_str().unwrap_or(""));
                }
                _ => {
                    m.insert(k, v);
                }
            }
            m
        });
    let echo = serde_json::json!({
        "server": st.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "bodyBytes": size,
        "bodyHash": format!("{hash:016x}"),
    });
    let mut r = full(StatusCode::OK, echo.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    r.headers_mut().insert(
        "x-upstream",
        st.name
            .parse()
            .unwrap_or_else(|_| "?".parse().expect("static")),
    );
    r
}

fn tokio_stream<T>(rx: mpsc::Receiver<T>) -> tokio_stream::wrappers::ReceiverStream<T> {
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

pub(crate) fn fnv64_init() -> u64 {
    0xcbf2_9ce4_8422_2325
}

pub(crate) fn fnv64_update(mut h: u64, data: &[u8]) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
