//! Unit tests of the framing guard: which heads it spoils, and that it follows the framing
//! across reads split anywhere.

use super::*;
use std::sync::atomic::Ordering;

fn info() -> ConnInfo {
    ConnInfo::new(
        "127.0.0.1:1".parse().expect("addr"),
        "http",
        Default::default(),
    )
}

/// Feeds `wire` to a new guard in reads of the given lengths (the rest in one last read);
/// returns the bytes as hyper would receive them and whether the guard refused a head.
fn feed(wire: &[u8], cuts: &[usize], info: &ConnInfo) -> (Vec<u8>, bool) {
    let mut g = FramingGuard::new();
    let mut out = wire.to_vec();
    let mut start: usize = 0;
    for &len in cuts.iter().chain(std::iter::once(&usize::MAX)) {
        let end = start.saturating_add(len).min(out.len());
        g.scan(&mut out[start..end], info);
        start = end;
        if start == out.len() {
            break;
        }
    }
    (out, g.refused())
}

const AMBIGUOUS: &[&[u8]] = &[
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\ntransfer-encoding: ChUnKeD\r\nCONTENT-LENGTH: 4\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\nContent-Length: 3\nContent-Length: 5\n\nabcde",
];

#[test]
fn ambiguous_heads_are_spoiled_wherever_the_reads_end() {
    let info = info();
    for wire in AMBIGUOUS {
        for cut in 0..wire.len() {
            let (out, refused) = feed(wire, &[cut], &info);
            let text = String::from_utf8_lossy(wire);
            assert!(refused, "cut at {cut}: {text:?}");
            let nul = out.iter().position(|&b| b == 0).expect("a NUL");
            let end = (text.find("\r\n\r\n").map(|i| i + 4))
                .or_else(|| text.find("\n\n").map(|i| i + 2))
                .expect("end");
            assert!(nul < end, "the NUL falls inside the head: {text:?}");
            let mut parsed = [httparse::EMPTY_HEADER; 8];
            assert!(
                httparse::Request::new(&mut parsed).parse(&out).is_err(),
                "hyper's parser refuses it: {text:?}"
            );
        }
    }
}

/// Well-framed traffic: bodies with field-like lines, pipelined heads, optional whitespace.
const FINE: &[u8] = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length:  40 \r\n\r\n\r\nContent-Length: 5\r\nContent-Length: 5\r\n\
GET /b HTTP/1.1\r\nHost: a\r\n\r\n\
GET /c HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\nX-Transfer-Encoding: chunked\r\n\r\n\
POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\nTransfer-Encoding: chunked\r\nContent-Length\
GET /e HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\
POST /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1b\r\nContent-Length: 1\r\nTransfer\r\n0\r\n\r\n\
GET /g HTTP/1.1\r\nHost: a\r\n\r\n";

#[test]
fn well_framed_traffic_passes_untouched_wherever_the_reads_end() {
    let info = info();
    for a in 0..FINE.len() {
        for b in [1, 7, 60, FINE.len()] {
            let (out, refused) = feed(FINE, &[a, b], &info);
            assert!(!refused, "cuts {a}, {b}");
            assert_eq!(out, FINE, "cuts {a}, {b}");
        }
    }
}

#[test]
fn bodies_framed_by_length_are_skipped_and_the_next_head_is_read() {
    let info = info();
    let wire = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
    for cut in 0..wire.len() {
        assert!(feed(wire, &[cut], &info).1, "cut at {cut}");
    }
}

#[test]
fn chunked_bodies_are_skipped_and_the_next_head_is_read() {
    let info = info();
    let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        13\r\nContent-Length: 1\r\n\r\n15;ext=\"a\"\r\nContent-Length: 1\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n\
        GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body_end = wire.len() - 65;
    assert!(wire[body_end..].starts_with(b"GET"));
    for cut in 0..wire.len() {
        for second in [1, 5, wire.len()] {
            let (out, refused) = feed(wire, &[cut, second], &info);
            assert!(refused, "cuts {cut}, {second}");
            let nul = out.iter().position(|&b| b == 0).expect("a NUL");
            assert!(nul > body_end, "the NUL is in the second head");
        }
    }
}

#[test]
fn after_an_upgrade_the_guard_waits_for_that_response_to_end() {
    let info = info();
    let mut g = FramingGuard::new();
    let mut head = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec();
    g.scan(&mut head, &info);
    assert_eq!(g.state, State::Wait(0));
    // The request is dispatched and its upgrade refused; bytes read meanwhile are not a head.
    info.requests.fetch_add(1, Ordering::Relaxed);
    info.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut early = b"Content-Length: 1\r\nContent-Length: 1\r\n".to_vec();
    g.scan(&mut early, &info);
    assert!(!g.refused() && !early.contains(&0));
    // Its response ended: the next read is a head again.
    info.in_flight.fetch_sub(1, Ordering::Relaxed);
    let mut next =
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    g.scan(&mut next, &info);
    assert!(g.refused());
}

#[test]
fn a_chunk_size_past_u64_loses_the_framing_without_refusing() {
    let info = info();
    let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    let (out, refused) = feed(wire, &[], &info);
    assert!(!refused && !out.contains(&0));
}

#[test]
fn upgrades_and_connect_are_not_read_past_their_head() {
    let info = info();
    for head in [
        &b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"[..],
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    ] {
        let tunnel = b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n";
        let (out, refused) = feed(&[head, &tunnel[..]].concat(), &[], &info);
        assert!(!refused && !out.contains(&0));
    }
}

#[test]
fn lengths_are_read_as_hyper_reads_them() {
    assert_eq!(parse_length(b" 5 "), Some(5));
    assert_eq!(parse_length(b"\t05"), Some(5));
    assert_eq!(parse_length(b"18446744073709551615"), None);
    for bad in [&b"+5"[..], b"5, 5", b"", b"0x5", b"-1", b"5 5"] {
        assert_eq!(parse_length(bad), None, "{bad:?}");
    }
}
