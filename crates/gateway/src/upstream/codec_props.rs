//! Property tests of the HTTP/1.1 upstream codec (outside the request flow): the response head
//! parser and the chunked decoder, fed valid messages split at arbitrary points and garbage.
//!
//! Case counts are bounded so the suite runs in seconds in CI. A longer local run:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test -p gatehouse-gateway --lib codec_props
//! ```

use super::codec::{parse_head, Chunked, Decoded, Framing, WireError};
use bytes::BytesMut;
use http::{HeaderMap, Method};
use proptest::prelude::*;
use proptest::sample::Index;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What decoding a whole input produced.
#[derive(Debug, Default)]
struct Outcome {
    /// Data frames, in order.
    frames: Vec<Vec<u8>>,
    /// `Some` once the decoder reported the end, with the trailers it returned.
    end: Option<Option<HeaderMap>>,
    /// The error that stopped it, if any.
    error: Option<String>,
    /// Input left unread (after the end, or when it ran out).
    rest: Vec<u8>,
}

/// Feeds `wire` to a fresh decoder in pieces cut at `cuts`, decoding after each piece as a
/// connection would, until the end, an error or the input runs out.
fn decode_in_pieces(wire: &[u8], cuts: &[Index]) -> Outcome {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
    at.push(wire.len());
    at.sort_unstable();
    at.dedup();
    let mut dec = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut out = Outcome::default();
    let mut fed = 0;
    for cut in at {
        buf.extend_from_slice(&wire[fed..cut]);
        fed = cut;
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Data(d)) => {
                    assert!(!d.is_empty(), "an empty data frame");
                    out.frames.push(d.to_vec());
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::End(t)) => {
                    out.end = Some(t);
                    buf.extend_from_slice(&wire[fed..]);
                    out.rest = buf.to_vec();
                    return out;
                }
                Err(WireError(e)) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out.rest = buf.to_vec();
    out
}

fn lower(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(b'a'..=b'z', len).prop_map(|v| String::from_utf8(v).unwrap())
}

/// A chunk extension as RFC 9112 §7.1.1 writes them, or none.
fn extension() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        lower(1..6).prop_map(|n| format!(";{n}")),
        (lower(1..6), lower(0..6)).prop_map(|(n, v)| format!(";{n}={v}")),
        (lower(1..6), "[a-z ;=]{0,6}").prop_map(|(n, v)| format!(" ; {n}=\"{v}\"")),
    ]
}

/// One chunk: its data, the spelling of its size (case, leading zeros) and an extension.
fn chunk() -> impl Strategy<Value = (Vec<u8>, bool, usize, String)> {
    (
        proptest::collection::vec(any::<u8>(), 1..80),
        any::<bool>(),
        0usize..3,
        extension(),
    )
}

/// A trailer field.
fn trailer() -> impl Strategy<Value = (String, String)> {
    (lower(1..8), "[a-zA-Z0-9 ]{0,12}").prop_map(|(n, v)| (format!("x-{n}"), v.trim().to_string()))
}

/// A valid chunked body on the wire, and the data and trailers it carries.
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, Vec<(String, String)>)> {
    (
        proptest::collection::vec(chunk(), 0..8),
        extension(),
        proptest::collection::vec(trailer(), 0..4),
    )
        .prop_map(|(chunks, last_ext, trailers)| {
            let mut wire = Vec::new();
            let mut body = Vec::new();
            for (data, upper, zeros, ext) in chunks {
                let size = if upper {
                    format!("{:X}", data.len())
                } else {
                    format!("{:x}", data.len())
                };
                wire.extend_from_slice(format!("{}{size}{ext}\r\n", "0".repeat(zeros)).as_bytes());
                wire.extend_from_slice(&data);
                wire.extend_from_slice(b"\r\n");
                body.extend_from_slice(&data);
            }
            wire.extend_from_slice(format!("0{last_ext}\r\n").as_bytes());
            for (n, v) in &trailers {
                wire.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            wire.extend_from_slice(b"\r\n");
            (wire, body, trailers)
        })
}

/// Whether `part` occurs in `whole` as one contiguous run.
fn occurs_in(part: &[u8], whole: &[u8]) -> bool {
    part.is_empty() || whole.windows(part.len()).any(|w| w == part)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_valid_chunked_body_decodes_exactly_however_it_is_split(
        (wire, body, trailers) in chunked_body(),
        cuts in proptest::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut input = wire.clone();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let out = decode_in_pieces(&input, &cuts);
        prop_assert_eq!(out.error, None);
        prop_assert_eq!(out.frames.concat(), body);
        let got = out.end.expect("the end is found");
        match got {
            None => prop_assert!(trailers.is_empty()),
            Some(map) => {
                for (n, v) in &trailers {
                    prop_assert!(map.get_all(n.as_str()).iter().any(|x| x == v.as_str()));
                }
            }
        }
        // Nothing after the body is consumed: the next response on the connection is intact.
        prop_assert_eq!(out.rest, b"HTTP/1.1 200 OK\r\n".to_vec());
    }

    #[test]
    fn garbage_is_an_error_or_more_input_never_a_panic_or_invented_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<Index>(), 0..12),
    ) {
        let out = decode_in_pieces(&input, &cuts);
        for f in &out.frames {
            prop_assert!(occurs_in(f, &input), "a frame not in the input: {:?}", f);
        }
        prop_assert!(out.frames.iter().map(Vec::len).sum::<usize>() <= input.len());
    }

    #[test]
    fn a_damaged_valid_body_never_yields_bytes_that_were_not_sent(
        (wire, _body, _t) in chunked_body(),
        damage in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        cuts in proptest::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut input = wire;
        for (at, byte) in damage {
            let i = at.index(input.len());
            input[i] = byte;
        }
        let out = decode_in_pieces(&input, &cuts);
        for f in &out.frames {
            prop_assert!(occurs_in(f, &input), "a frame not in the input: {:?}", f);
        }
    }

    #[test]
    fn the_head_parser_never_panics_on_garbage(
        prefix in prop_oneof![Just(&b""[..]), Just(&b"HTTP/1.1 "[..]), Just(&b"HTTP/1.0 200 OK\r\n"[..])],
        input in proptest::collection::vec(any::<u8>(), 0..400),
        head in any::<bool>(),
    ) {
        let mut buf = BytesMut::from(prefix);
        buf.extend_from_slice(&input);
        let before = buf.len();
        let method = if head { Method::HEAD } else { Method::GET };
        match parse_head(&mut buf, &method, &mut Vec::new()) {
            // A head is consumed from the buffer, whatever follows stays.
            Ok(Some(_)) => prop_assert!(buf.len() < before),
            Ok(None) | Err(_) => prop_assert_eq!(buf.len(), before),
        }
    }

    #[test]
    fn a_valid_head_parses_the_same_however_it_is_split(
        status in 200u16..600,
        fields in proptest::collection::vec(trailer(), 0..10),
        length in proptest::option::of(0u64..1_000_000),
        cut in any::<Index>(),
    ) {
        let mut wire = format!("HTTP/1.1 {status} Whatever\r\n");
        for (n, v) in &fields {
            wire.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(n) = length {
            wire.push_str(&format!("content-length: {n}\r\n"));
        }
        wire.push_str("\r\nBODY");
        let wire = wire.into_bytes();
        let head_len = wire.len() - 4;
        let cut = cut.index(head_len);
        let mut buf = BytesMut::from(&wire[..cut]);
        // Any proper prefix of a head asks for more.
        prop_assert!(parse_head(&mut buf, &Method::GET, &mut Vec::new()).unwrap().is_none());
        buf.extend_from_slice(&wire[cut..]);
        let h = parse_head(&mut buf, &Method::GET, &mut Vec::new()).unwrap().expect("complete");
        prop_assert_eq!(h.status.as_u16(), status);
        for (n, v) in &fields {
            prop_assert!(h.headers.get_all(n.as_str()).iter().any(|x| x == v.as_str()));
        }
        let want = if status == 204 || status == 304 {
            Framing::Empty
        } else {
            length.map_or(Framing::Close, Framing::Length)
        };
        prop_assert_eq!(h.framing, want);
        prop_assert_eq!(&buf[..], b"BODY");
    }
}
