//! Connection flow of a `TLS` (passthrough) listener, first step: the server name a client asks
//! for, read from its ClientHello before any byte goes upstream. A small parser over the bytes
//! received so far; it never terminates TLS, and it says when it needs more bytes, so a
//! ClientHello split over several reads or several TLS records (RFC 8446 §5.1) is read whole.

/// The largest ClientHello read: TLS records carry at most 16 KiB, and a hello that needs more
/// than one full record (huge post-quantum key shares, padding) is still accepted up to this.
pub(crate) const MAX_HELLO: usize = 32 * 1024;

/// What the bytes received so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hello {
    /// The ClientHello is not complete yet: read more.
    Incomplete,
    /// A complete ClientHello, with its `server_name` (lowercase, no trailing dot) if it has one.
    Complete(Option<String>),
    /// Not a TLS ClientHello, or a malformed one.
    Invalid(&'static str),
}

/// Parses the start of a TLS connection.
pub(crate) fn parse(bytes: &[u8]) -> Hello {
    let handshake = match reassemble(bytes) {
        Ok(h) => h,
        Err(h) => return h,
    };
    match client_hello_sni(&handshake) {
        Some(Ok(name)) => Hello::Complete(name),
        Some(Err(why)) => Hello::Invalid(why),
        None => Hello::Invalid("ClientHello shorter than its length says"),
    }
}

/// The ClientHello handshake message (its body), gathered from as many handshake records as it
/// spans; `Err` when incomplete or not a handshake.
fn reassemble(bytes: &[u8]) -> Result<Vec<u8>, Hello> {
    let mut payload = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.len() < 5 {
            return Err(Hello::Incomplete);
        }
        if rest[0] != 22 {
            return Err(Hello::Invalid("not a TLS handshake record"));
        }
        if rest[1] != 3 {
            return Err(Hello::Invalid("unknown TLS record version"));
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        // RFC 8446 §5.1: zero-length handshake fragments are forbidden; 2^14 is the maximum.
        if len == 0 || len > 16384 {
            return Err(Hello::Invalid("bad TLS record length"));
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return Err(Hello::Incomplete);
        };
        payload.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        if payload.len() >= 4 {
            if payload[0] != 1 {
                return Err(Hello::Invalid(
                    "first handshake message is not a ClientHello",
                ));
            }
            let body = usize::from(payload[1]) << 16
                | usize::from(payload[2]) << 8
                | usize::from(payload[3]);
            if body + 4 > MAX_HELLO {
                return Err(Hello::Invalid("ClientHello too large"));
            }
            if payload.len() >= body + 4 {
                payload.truncate(body + 4);
                payload.drain(..4);
                return Ok(payload);
            }
        }
    }
}

/// A cursor over big-endian fields; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Option<Reader<'a>> {
        let n = self.u8()?;
        self.take(n).map(Reader)
    }
    fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = self.u16()?;
        self.take(n).map(Reader)
    }
}

/// The `server_name` of a ClientHello body: `None` when a length runs past the end.
fn client_hello_sni(body: &[u8]) -> Option<Result<Option<String>, &'static str>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(Ok(None)); // no extensions at all (old clients)
    }
    let mut exts = r.vec16()?;
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let mut data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        // RFC 6066 §3: a list of names, at most one of type host_name (0).
        let mut list = data.vec16()?;
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?.0;
            if name_type == 0 {
                return Some(host_name(name).map(Some));
            }
        }
        return Some(Ok(None));
    }
    Some(Ok(None))
}

/// A host name as routes match it: ASCII letters, digits, `-`, `_` and dots, lowercased.
fn host_name(raw: &[u8]) -> Result<String, &'static str> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let valid = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if raw.is_empty() || raw.len() > 253 || !raw.iter().all(valid) {
        return Err("server name is not a valid host name");
    }
    Ok(raw.iter().map(|b| b.to_ascii_lowercase() as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello with `sni` (if any) and `pad` bytes of an unknown extension, in one record.
    fn hello(sni: Option<&str>, pad: usize) -> Vec<u8> {
        let mut exts = Vec::new();
        exts.extend_from_slice(&[0xff, 0x01]);
        exts.extend_from_slice(&(pad as u16).to_be_bytes());
        exts.extend(std::iter::repeat_n(0xab, pad));
        if let Some(name) = sni {
            let n = name.len() as u16;
            exts.extend_from_slice(&[0, 0]);
            exts.extend_from_slice(&(n + 5).to_be_bytes());
            exts.extend_from_slice(&(n + 3).to_be_bytes());
            exts.push(0);
            exts.extend_from_slice(&n.to_be_bytes());
            exts.extend_from_slice(name.as_bytes());
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        records(&hs, 16384)
    }

    /// `handshake` cut into records of at most `size` bytes.
    fn records(handshake: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in handshake.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn finds_the_server_name_at_every_read_boundary() {
        let bytes = hello(Some("API.Example.com."), 40);
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Hello::Incomplete, "cut at {cut}");
        }
        assert_eq!(
            parse(&bytes),
            Hello::Complete(Some("api.example.com".into()))
        );
    }

    #[test]
    fn a_hello_fragmented_over_many_records_is_reassembled() {
        let one = hello(Some("b.test"), 3000);
        let handshake = &one[5..];
        for size in [1, 7, 100, 2999] {
            let bytes = records(handshake, size);
            assert_eq!(
                parse(&bytes),
                Hello::Complete(Some("b.test".into())),
                "{size}"
            );
        }
    }

    #[test]
    fn a_hello_without_sni_is_complete_with_no_name() {
        assert_eq!(parse(&hello(None, 10)), Hello::Complete(None));
    }

    #[test]
    fn plain_http_and_garbage_are_invalid() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Hello::Invalid(_)));
        assert!(matches!(parse(&[22, 3, 1, 0, 0]), Hello::Invalid(_)));
        assert!(matches!(
            parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Hello::Invalid(_)
        ));
        let bad = hello(Some("evil/name"), 0);
        assert!(matches!(parse(&bad), Hello::Invalid(_)));
    }

    /// Random bytes and random corruptions of a valid hello never panic and never claim a name
    /// the bytes do not hold.
    #[test]
    fn fuzzed_input_never_panics() {
        let good = hello(Some("fuzz.test"), 64);
        for seed in 0..20_000u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut bytes = if seed % 2 == 0 {
                good.clone()
            } else {
                let n = rng.usize(0..600);
                let mut v: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                if n > 3 {
                    v[0] = 22;
                    v[1] = 3;
                }
                v
            };
            for _ in 0..rng.usize(1..4) {
                if !bytes.is_empty() {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = rng.u8(..);
                }
            }
            if let Hello::Complete(Some(name)) = parse(&bytes) {
                assert!(name
                    .bytes()
                    .all(|b| b.is_ascii() && !b.is_ascii_uppercase()));
            }
        }
    }
}
