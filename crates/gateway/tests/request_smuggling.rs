//! Request smuggling and path-spelling vectors over raw sockets, each against a route protected by
//! a policy. The vectors are written from RFC 9112 (§2.2 line endings, §5 field syntax, §5.2
//! obs-fold, §6.1 Transfer-Encoding, §6.3 message length, §7.1 chunk sizes), RFC 9110 (§5.5 field
//! values, §8.6 Content-Length) and RFC 3986 (§5.2.4 dot segments, §6.2.2 normalisation), and from
//! the published smuggling research (Watchfire 2005, Kettle's "HTTP Desync Attacks": CL.TE, TE.CL,
//! TE.TE obfuscation). What the gateway must do: refuse every ambiguous message with 400 and close
//! the connection (so nothing after it is read as a request), refuse the same ambiguities from an
//! upstream with 502, and route and police every spelling of a path by its one normal form.

use gatehouse_testkit::{TestGateway, Upstream};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

/// `/admin` is behind a `rateLimit` of one request per hour for the whole route, so the first
/// request that reaches that rule passes and every later one is 429: a spelling that reached the
/// backend by another rule would be a 200. `/keyed` needs an API key (`x-api-key: letmein`). `/private` has a generous limit and shows what path
/// the backend receives. Everything else is open.
fn protected(backend: SocketAddr, gateway_extra: &str) -> String {
    r#"
kind: Gateway
metadata: {name: g}
spec: {accessLog: {enabled: false} GATEWAY_EXTRA}
---
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:0", protocol: HTTP}
---
kind: Backend
metadata: {name: app}
spec: {endpoints: ["BACKEND"]}
---
kind: Policy
metadata: {name: once}
spec:
  rateLimit: {requests: 1, per: 1h, key: {route: true}}
---
kind: Policy
metadata: {name: many}
spec:
  rateLimit: {requests: 100000, per: 1h, key: {route: true}}
---
kind: Route
metadata: {name: admin}
spec:
  rules:
    - match: {path: {prefix: /admin}}
      backends: [{backend: app}]
      policies: [once]
---
kind: Policy
metadata: {name: keyed}
spec:
  apiKey:
    from: [{header: x-api-key}]
    keys: [{consumer: ops, sha256: "1c8bfe8f801d79745c4631d09fff36c82aa37fc4cce4fc946683d7b336b63032"}]
---
kind: Route
metadata: {name: keyed}
spec:
  rules:
    - match: {path: {prefix: /keyed}}
      backends: [{backend: app}]
      policies: [keyed]
---
kind: Route
metadata: {name: private}
spec:
  rules:
    - match: {path: {prefix: /private}}
      backends: [{backend: app}]
      policies: [many]
---
kind: Route
metadata: {name: open}
spec:
  rules:
    - backends: [{backend: app}]
"#
    .replace("BACKEND", &backend.to_string())
    .replace("GATEWAY_EXTRA", gateway_extra)
}

/// Writes `raw` on a new connection and reads until the gateway closes it (whole text).
async fn send(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut buf))
        .await
        .expect("the gateway answers and closes in time")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads one whole response from a kept-alive connection (length-delimited or chunked).
async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = (head.lines())
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.parse::<usize>().ok());
            let done = match length {
                Some(n) => body.len() >= n,
                None => body.ends_with("0\r\n\r\n"),
            };
            if done {
                return text;
            }
        }
        let n = tokio::time::timeout(LIMIT, s.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "the connection closed before a whole response: {text:?}"
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// The status codes of every response in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

/// A field of the echo in the last response in `text`.
fn echoed(text: &str, field: &str) -> serde_json::Value {
    let body = &text[text.rfind("\r\n\r\n").expect("head end") + 4..];
    let json = &body[body.find('{').expect("json")..=body.rfind('}').expect("json")];
    let v: serde_json::Value = serde_json::from_str(json).expect("echo JSON");
    v[field].clone()
}

/// A request that ends with `Connection: close`, sent after each vector on the same connection:
/// if the gateway read the vector's bytes differently than a backend would, this is where a
/// smuggled request would show.
const TAIL: &str = "GET /admin/smuggled HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";

/// Messages whose framing or fields a gateway and a backend could read differently. Each is sent
/// with a `Content-Length`-or-chunked body that hides another request, then `TAIL`.
const AMBIGUOUS_HEADS: &[(&str, &str)] = &[
    // Content-Length that is not one non-negative decimal number (RFC 9110 §8.6).
    (
        "two different lengths",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    ),
    (
        "a length list",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3, 3\r\n\r\nabc",
    ),
    (
        "a length list of two values",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3, 30\r\n\r\nabc",
    ),
    (
        "plus sign",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: +3\r\n\r\nabc",
    ),
    (
        "negative length",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: -1\r\n\r\n",
    ),
    (
        "hex length",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0x3\r\n\r\nabc",
    ),
    (
        "length with a suffix",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3a\r\n\r\nabc",
    ),
    (
        "empty length",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: \r\n\r\n",
    ),
    (
        "length past u64",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ),
    // TE.TE: a Transfer-Encoding one parser takes for chunked and another ignores.
    (
        "chunked, identity",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "identity",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: identity\r\n\r\n",
    ),
    (
        "xchunked",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked twice in one field",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked in two fields",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "chunked then junk",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
    ),
    (
        "gzip, chunked",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "space before the colon",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "folded Transfer-Encoding",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "vertical tab before chunked",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding in HTTP/1.0",
        "POST /x HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    // Field syntax (RFC 9112 §5, §5.2; RFC 9110 §5.5).
    (
        "obs-fold",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n b\r\n\r\n",
    ),
    (
        "obs-fold with a tab",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n\tb\r\n\r\n",
    ),
    (
        "NUL in a value",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nX-A: a\0b\r\n\r\n",
    ),
    (
        "bare CR in a value",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nX-A: a\rb\r\n\r\n",
    ),
    (
        "space in a name",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nX A: b\r\n\r\n",
    ),
    (
        "DEL in a name",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nX\x7fA: b\r\n\r\n",
    ),
    (
        "empty name",
        "GET /x HTTP/1.1\r\nHost: app.test\r\n: b\r\n\r\n",
    ),
    (
        "a line without a colon",
        "GET /x HTTP/1.1\r\nHost: app.test\r\nno colon here\r\n\r\n",
    ),
    (
        "whitespace before the first field",
        "GET /x HTTP/1.1\r\n Host: app.test\r\n\r\n",
    ),
    // Request line (RFC 9112 §3).
    ("NUL in the path", "GET /a\0b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    ("space in the path", "GET /a b HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    (
        "escaped NUL in the path",
        "GET /admin%00.json HTTP/1.1\r\nHost: app.test\r\n\r\n",
    ),
    ("unknown version", "GET /x HTTP/1.2x\r\nHost: app.test\r\n\r\n"),
];

/// CL.TE and TE.CL: both framings on one message, and a second `Content-Length` (RFC 9112 §6.3,
/// RFC 9110 §8.6). hyper alone would read the first kind by the coding (dropping the length) and
/// fold the second into one length; the gateway's framing guard (`framing_guard.rs`) makes them
/// a 400 like every other ambiguous head, so no reading of them reaches a backend.
const LENGTH_AMBIGUITIES: &[(&str, &str)] = &[
    (
        "CL.TE",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    ),
    (
        "TE.CL",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
    ),
    (
        "TE.CL, chunked in mixed case and names in other cases",
        "POST /x HTTP/1.1\r\nHost: app.test\r\ntransfer-ENCODING: cHuNkEd\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
    ),
    (
        "CL 0 with TE",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "CL.TE with a bare LF before the coding",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    ),
    (
        "two equal lengths",
        "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    ),
    (
        "two equal lengths in other cases",
        "POST /x HTTP/1.1\r\nHost: app.test\r\ncontent-length: 3\r\nCONTENT-LENGTH:3\r\n\r\nabc",
    ),
];

/// Asserts that `text` is one JSON 400 of the gateway (`bad_request`, with a request id, asking
/// to close) and nothing else.
fn assert_json_400(name: &str, text: &str) {
    assert_eq!(statuses(text), [400], "{name}: {text:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    assert!(head.contains("x-request-id: "), "{name}: {head}");
    assert!(head.contains("connection: close"), "{name}: {head}");
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["error"], "bad_request", "{name}: {body}");
}

/// The admin's count of `bad_request` answers made before routing.
async fn bad_requests(gw: &TestGateway) -> String {
    let metrics = gatehouse_testkit::Client::new()
        .get(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .expect("metrics")
        .text();
    let line = "gatehouse_proxy_errors_total{route=\"none\",kind=\"bad_request\"} ";
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or("0")
        .to_string()
}

#[tokio::test]
async fn a_length_beside_a_transfer_coding_or_a_second_length_is_a_json_400() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    for (name, vector) in LENGTH_AMBIGUITIES {
        // `send` returns once the gateway closed the connection: nothing after the head is read.
        let text = send(addr, format!("{vector}{TAIL}").as_bytes()).await;
        assert_json_400(name, &text);
        assert!(
            text.contains("Content-Length and Transfer-Encoding"),
            "{name}: {text}"
        );
    }
    assert_eq!(up.requests(), 0, "no ambiguous request reached the backend");
    assert_eq!(
        bad_requests(&gw).await,
        LENGTH_AMBIGUITIES.len().to_string()
    );
    // The smuggled request never reached /admin: the policy's one request is still unspent.
    let text = send(addr, TAIL.as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
}

#[tokio::test]
async fn an_ambiguous_head_later_on_a_kept_alive_connection_is_a_json_400() {
    // The guard follows the framing: after a request with a body (by length or chunked) in the
    // same segment, and after a response on the connection, the next head is read as a head.
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    let first = "POST /private/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc";
    let chunked = "POST /private/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    for (name, vector) in LENGTH_AMBIGUITIES {
        // Pipelined after a body framed by its length, or chunked, in one write.
        for before in [first, chunked] {
            let text = send(addr, format!("{before}{vector}{TAIL}").as_bytes()).await;
            assert_eq!(statuses(&text), [200, 400], "{name}: {text}");
            assert!(text.contains("\"error\":\"bad_request\""), "{name}: {text}");
        }
        // After a chunked request's response, on the same connection.
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(chunked.as_bytes()).await.expect("write");
        let text = read_response(&mut s).await;
        assert_eq!(statuses(&text), [200], "{name}: {text}");
        s.write_all(format!("{vector}{TAIL}").as_bytes())
            .await
            .expect("write");
        let mut rest = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut rest))
            .await
            .expect("the gateway answers and closes in time")
            .expect("read");
        assert_json_400(name, &String::from_utf8_lossy(&rest));
    }
    assert_eq!(
        up.requests(),
        3 * LENGTH_AMBIGUITIES.len(),
        "only the first requests"
    );
    let text = send(addr, TAIL.as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
}

/// Bodies whose chunked framing is broken (RFC 9112 §7.1): the head is fine, so the request may
/// have started upstream, but the gateway must answer 400 and read nothing after it.
const BAD_CHUNKS: &[(&str, &str)] = &[
    (
        "chunk size past u64",
        "fffffffffffffffff1\r\nx\r\n0\r\n\r\n",
    ),
    ("chunk size with 0x", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("negative chunk size", "-5\r\nhello\r\n0\r\n\r\n"),
    ("no chunk size", "\r\nhello\r\n0\r\n\r\n"),
    ("data longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
    ("data not followed by CRLF", "5\r\nhelloXX0\r\n\r\n"),
];

#[tokio::test]
async fn ambiguous_request_heads_are_400_and_nothing_after_them_is_read() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    let mut wrong = Vec::new();
    for (name, vector) in AMBIGUOUS_HEADS {
        let text = send(addr, format!("{vector}{TAIL}").as_bytes()).await;
        // The gateway's JSON answer (hyper's bare one rewritten, or the handler's own).
        let json = text.contains("content-type: application/json") && text.contains("x-request-id");
        if statuses(&text) != [400] || !json {
            wrong.push(format!("{name}: {text:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused with a JSON 400 alone:\n{}",
        wrong.join("\n")
    );
    assert_eq!(up.requests(), 0, "no ambiguous request reached the backend");
    // The policy's one request is still unspent: nothing reached /admin.
    let text = send(addr, TAIL.as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
}

#[tokio::test]
async fn broken_chunked_bodies_are_400_and_nothing_after_them_is_read() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    for (name, body) in BAD_CHUNKS {
        let raw = format!(
            "POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}{TAIL}"
        );
        let text = send(addr, raw.as_bytes()).await;
        assert_eq!(statuses(&text), [400], "{name}: {text:?}");
    }
    let text = send(addr, TAIL.as_bytes()).await;
    assert_eq!(
        statuses(&text),
        [200],
        "nothing reached /admin before: {text}"
    );
}

#[tokio::test]
async fn well_framed_messages_pass_and_keep_the_connection() {
    // The control for the tests above: the same shapes, written correctly, are served, and the
    // request after each is read as the next request.
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    let tail = "GET /private/next HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    for (name, vector, body_len) in [
        (
            "length",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc",
            3,
        ),
        (
            "chunked",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
            5,
        ),
        (
            "Chunked in upper case",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            3,
        ),
        (
            "optional whitespace around the value",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nContent-Length:\t 3 \t\r\n\r\nabc",
            3,
        ),
        (
            "two spaces before the length, one after",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nContent-Length:  3 \r\n\r\nabc",
            3,
        ),
        (
            "a body that looks like ambiguous fields",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 70\r\n\r\n\r\nContent-Length: 5\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            70,
        ),
        (
            "a chunked body that looks like ambiguous fields",
            "POST /private/x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n2d\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n0\r\n\r\n",
            45,
        ),
    ] {
        let text = send(addr, format!("{vector}{tail}").as_bytes()).await;
        assert_eq!(statuses(&text), [200, 200], "{name}: {text}");
        let first = &text[..text.rfind("HTTP/1.1 200").expect("second response")];
        assert_eq!(echoed(first, "bodyBytes"), body_len, "{name}: {first}");
        assert_eq!(echoed(&text, "path"), "/private/next", "{name}");
    }
}

#[tokio::test]
async fn a_hundred_requests_on_one_kept_alive_connection_pass() {
    // The control for the framing guard on the common path: heads with and without bodies, in
    // separate writes, each answered before the next is sent.
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("web").await)
        .await
        .expect("connect");
    for i in 0..100 {
        let raw = match i % 3 {
            0 => format!("GET /private/{i} HTTP/1.1\r\nHost: app.test\r\n\r\n"),
            1 => format!("POST /private/{i} HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello"),
            _ => format!("POST /private/{i} HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        };
        s.write_all(raw.as_bytes()).await.expect("write");
        let text = read_response(&mut s).await;
        assert_eq!(statuses(&text), [200], "request {i}: {text}");
        assert_eq!(echoed(&text, "path"), format!("/private/{i}"));
    }
    assert_eq!(up.requests(), 100);
}

/// Spellings of `/admin` from RFC 3986 and path-confusion research (Orange Tsai's "Breaking
/// Parser Logic": `..;/`, backslashes, double encoding), as whole request lines so absolute-form
/// targets are included.
const ADMIN_SPELLINGS: &[&str] = &[
    "/%61dmin",
    "/%61%64%6D%69%6E/",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/x/%2e%2e/admin",
    "/x/.%2E/admin",
    "/../../admin/x",
    "/admin/x/..",
    "/admin%2f",
    "/x/..%2fadmin",
    "/x/..%5Cadmin",
    "/x/..\\admin",
    "/x/..;/admin",
    "/x/.;/../admin",
    "/admin%00",
    "/admin%",
    "/admin#fragment",
    "/admin?x=/open",
    "http://app.test/admin",
    "http://app.test//x/../admin",
    "http://other.test/%61dmin",
];

#[tokio::test]
async fn every_spelling_of_a_protected_path_meets_its_policy() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    };
    // Spends the policy's one request.
    let text = send(addr, get("/admin").as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
    for spelling in ADMIN_SPELLINGS {
        let text = send(addr, get(spelling).as_bytes()).await;
        let status = statuses(&text);
        assert!(
            status == [429] || status == [400],
            "{spelling} must meet the /admin policy (429) or be refused (400): {text}"
        );
    }
    assert_eq!(
        up.requests(),
        1,
        "only the first /admin reached the backend"
    );
}

#[tokio::test]
async fn every_spelling_of_a_path_behind_an_api_key_needs_the_key() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    // The same spellings, of `/keyed` (`%6B` is `k`, `%65` is `e`).
    let spellings = (ADMIN_SPELLINGS.iter())
        .map(|s| s.replace("%61%64%6D%69%6E", "%6B%65%79%65%64"))
        .map(|s| s.replace("%61dmin", "%6Beyed").replace("admin", "keyed"));
    for keyed in spellings {
        assert!(
            !keyed.contains("admin") && !keyed.contains("%61"),
            "{keyed}"
        );
        let raw = |key: &str| {
            format!("GET {keyed} HTTP/1.1\r\nHost: app.test\r\n{key}Connection: close\r\n\r\n")
        };
        let text = send(addr, raw("").as_bytes()).await;
        let status = statuses(&text);
        assert!(
            status == [401] || status == [400],
            "{keyed} without a key must be 401 (or 400): {text}"
        );
        if status == [401] {
            // The same spelling with the key reaches the backend, as the normal form.
            let text = send(addr, raw("x-api-key: letmein\r\n").as_bytes()).await;
            assert_eq!(statuses(&text), [200], "{keyed}: {text}");
            let path = echoed(&text, "path");
            assert!(
                path.as_str().is_some_and(|p| p.starts_with("/keyed")),
                "{keyed}: {path}"
            );
        }
    }
}

#[tokio::test]
async fn the_backend_receives_the_path_the_policy_saw() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let addr = gw.addr("web").await;
    for (sent, seen) in [
        ("/private/x", "/private/x"),
        ("/%70rivate/x", "/private/x"),
        ("//private//x", "/private/x"),
        ("/open/../private/./x", "/private/x"),
        ("/private/a/%2E%2E/x", "/private/x"),
        ("/private/%7e%e2%82%ac", "/private/~%E2%82%AC"),
        ("http://app.test/private/x?q=%2F..", "/private/x"),
    ] {
        let raw = format!("GET {sent} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let text = send(addr, raw.as_bytes()).await;
        assert_eq!(statuses(&text), [200], "{sent}: {text}");
        assert_eq!(echoed(&text, "path"), seen, "{sent}");
    }
}

/// The `x-forwarded-*` family and `forwarded` a client may send to pass for someone else.
const FORGED: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /evil\r\nForwarded: for=6.6.6.6;proto=https\r\n";

#[tokio::test]
async fn forwarding_fields_from_an_untrusted_peer_are_replaced_or_dropped() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, "")).await;
    let raw =
        format!("GET /private/x HTTP/1.1\r\nHost: app.test\r\n{FORGED}Connection: close\r\n\r\n");
    let text = send(gw.addr("web").await, raw.as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
    let h = echoed(&text, "headers");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");
    assert_eq!(h["x-forwarded-host"], "app.test", "{h}");
    for dropped in ["x-forwarded-port", "x-forwarded-prefix", "forwarded"] {
        assert!(h.get(dropped).is_none(), "{dropped} passed: {h}");
    }
}

#[tokio::test]
async fn forwarding_fields_from_a_trusted_peer_are_kept_and_extended() {
    let up = Upstream::start("app").await;
    let gw = TestGateway::start(&protected(up.addr, ", trustedProxies: [127.0.0.0/8]")).await;
    let raw =
        format!("GET /private/x HTTP/1.1\r\nHost: app.test\r\n{FORGED}Connection: close\r\n\r\n");
    let text = send(gw.addr("web").await, raw.as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
    let h = echoed(&text, "headers");
    assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "https", "{h}");
    assert_eq!(h["x-forwarded-host"], "evil.test", "{h}");
    assert_eq!(h["x-forwarded-port"], "1", "{h}");
}

/// An upstream that answers every request on a connection with `answer`, then closes.
async fn raw_upstream(answer: &'static [u8]) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// The same ambiguities in an upstream's response head: a protocol error (502), never a guess.
const AMBIGUOUS_RESPONSES: &[(&str, &[u8])] = &[
    (
        "CL.TE",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "TE.CL",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "two different lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    ),
    (
        "two equal lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    ),
    (
        "a length list",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
    ),
    ("plus sign", b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"),
    ("negative length", b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc"),
    (
        "chunked, identity",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "space before the colon",
        b"HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc",
    ),
    (
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: a\r\n b\r\n\r\nabc",
    ),
    (
        "NUL in a value",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: a\0b\r\n\r\nabc",
    ),
    (
        "bare CR in a value",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: a\rb\r\n\r\nabc",
    ),
    (
        "space in a name",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX A: b\r\n\r\nabc",
    ),
];

#[tokio::test]
async fn ambiguous_upstream_responses_are_502() {
    for (name, answer) in AMBIGUOUS_RESPONSES {
        let up = raw_upstream(answer).await;
        let gw = TestGateway::start(&protected(up, "")).await;
        let raw = "GET /private/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        let text = send(gw.addr("web").await, raw.as_bytes()).await;
        assert_eq!(statuses(&text), [502], "{name}: {text}");
        assert!(text.contains("upstream_protocol"), "{name}: {text}");
    }
}
