//! Developer portal, try-it proxy (`POST /try` on the portal's own listener): the browser cannot
//! reach the gateway's listener from another origin, nor set `Host`, so the portal sends the
//! request for it — only ever to the gateway's own HTTP listener — and answers with what came
//! back: status, headers and body (cut at 1 MiB).

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The largest request the form may send, and response body it shows.
const MAX_BODY: usize = 1 << 20;
/// The whole exchange, connect included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What `portal.js` posts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TryRequest {
    method: String,
    #[serde(default)]
    host: String,
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = crate::admin::json_response(status, value);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bad(message: impl Into<String>) -> Response<Full<Bytes>> {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad_request", "message": message.into()}),
    )
}

/// Sends the described request to the gateway's listener at `target` and describes the answer.
pub(crate) async fn proxy(
    target: Option<SocketAddr>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // A JSON content type makes a cross-site form or `fetch` need a CORS preflight, which the
    // portal never grants: other sites cannot make a visitor's browser send requests through it.
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return bad("send the request as application/json");
    }
    let Some(target) = target else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no_listener", "message": "the gateway has no plain HTTP listener to send the request to"}),
        );
    };
    let body = match Limited::new(req.into_body(), MAX_BODY + 4096)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad("the request is too large or was cut off"),
    };
    let t: TryRequest = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return bad(format!("invalid request: {e}")),
    };
    let upstream = match build(&t, target) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, send(target, upstream)).await {
        Ok(Ok((status, headers, body, truncated))) => reply(
            StatusCode::OK,
            json!({
                "status": status.as_u16(),
                "statusText": status.canonical_reason().unwrap_or(""),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
                "truncated": truncated,
                "durationMs": started.elapsed().as_millis() as u64,
            }),
        ),
        Ok(Err(e)) => reply(
            StatusCode::BAD_GATEWAY,
            json!({"error": "try_failed", "message": format!("the gateway could not be reached: {e}")}),
        ),
        Err(_) => reply(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "timeout", "message": format!("no complete answer within {}s", TIMEOUT.as_secs())}),
        ),
    }
}

/// The request to send, checked: a real method, an origin-form path, valid header names.
fn build(t: &TryRequest, target: SocketAddr) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(t.method.as_bytes())
        .map_err(|_| format!("invalid method `{}`", t.method))?;
    if !t.path.starts_with('/') || t.path.starts_with("//") {
        return Err("the path must start with a single `/`".into());
    }
    let uri: http::Uri = t
        .path
        .parse()
        .map_err(|_| format!("invalid path `{}`", t.path))?;
    let host = if t.host.is_empty() {
        target.to_string()
    } else {
        t.host.clone()
    };
    let host = HeaderValue::from_str(&host).map_err(|_| format!("invalid host `{}`", t.host))?;
    if t.body.len() > MAX_BODY {
        return Err("the body is larger than 1 MiB".into());
    }
    let mut r = Request::new(Full::new(Bytes::from(t.body.clone())));
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    let h = r.headers_mut();
    h.insert(header::HOST, host);
    for (name, value) in &t.headers {
        let n = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let v = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        // Framing and connection handling belong to this client, not the form.
        if [
            header::HOST,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(&n)
        {
            continue;
        }
        h.append(n, v);
    }
    Ok(r)
}

type Described = (StatusCode, Vec<(String, String)>, Vec<u8>, bool);

async fn send(target: SocketAddr, req: Request<Full<Bytes>>) -> Result<Described, String> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let result = match resp {
        Ok(resp) => {
            let (parts, mut body) = resp.into_parts();
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut out = Vec::new();
            let mut truncated = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                if let Some(data) = frame.data_ref() {
                    let room = MAX_BODY - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                    if data.len() > room {
                        truncated = true;
                        break;
                    }
                }
            }
            Ok((parts.status, headers, out, truncated))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}
