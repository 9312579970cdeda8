//! Connection flow, HTTP/1.1, as request heads are read (inside `parse_error.rs`'s wrapper, before
//! hyper parses them): refuses a head whose message length is ambiguous, which hyper would accept.
//!
//! hyper reads a head with both `Content-Length` and `Transfer-Encoding` by RFC 9112 §6.3's
//! second choice (the coding wins, the length is dropped, the connection closes after the
//! response) and collapses repeated equal `Content-Length` lines into one, so the gateway never
//! sees either. Issue 10 asks for RFC 9112 §6.3's first choice: a 400. This guard looks at the
//! bytes of each request head as hyper reads them and, on a second `Content-Length` line or on
//! both framings in one head, turns a byte of that head into a NUL, so hyper's parser refuses the
//! head with its bare 400 and closes; `parse_error.rs` then writes the gateway's JSON 400 in its
//! place. Everything else hyper already refuses by itself (a list or sign in the length, an
//! obs-fold, a space before a colon, control characters in a value, `Transfer-Encoding` in
//! HTTP/1.0): the guard only counts the two field names, case-insensitively, at line starts.
//!
//! What is covered, exactly: the guard follows the connection's framing from its first byte, as
//! RFC 9112 §6.3 frames requests. After a head without a body it reads the next bytes as the next
//! head; after a head with one valid `Content-Length` it skips that many body bytes, and after a
//! chunked one it skips the chunks and trailers, then reads on as a head: bodies are never scanned,
//! and pipelined heads, or heads hyper reads ahead while a response is in flight, are. After a
//! head it cannot frame (`Upgrade`, `CONNECT`, a length hyper refuses), it waits until that request
//! was dispatched and its response finished, and resumes with the next read. What that leaves to
//! hyper's own RFC 9112 §6.3 reading (the coding wins, the length is removed, the connection
//! closes after the response — never a smuggled request): a head that arrived before such a
//! response finished. A body malformed for hyper ends the connection (hyper's 400), so the guard's
//! lenient reading of it never meets a next head. Cost: a 16-byte compare per 16 head bytes, a byte
//! compare per line start (`lf.rs`); for bodies, a subtraction per read (plus a few per chunk).

use super::handler::ConnInfo;
use std::sync::atomic::Ordering;

/// How much of a line's start is kept when a read ends inside it: a field name and a length.
const CARRY: usize = 48;

/// What the guard knows about the connection's framing.
pub(crate) struct FramingGuard {
    state: State,
    facts: Facts,
    /// The start of the line a read ended inside.
    carry: [u8; CARRY],
    carry_len: usize,
    /// The carried line is longer than `carry` keeps.
    truncated: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Reading a head: every line start is looked at.
    Head,
    /// Skipping the rest of a body of one valid `Content-Length`.
    Body(u64),
    /// Skipping a chunked body (RFC 9112 §7.1), at this point of it.
    Chunked(Chunk),
    /// After a head not framed by counting (an upgrade, `CONNECT`, a length hyper refuses):
    /// resumes once more than this many requests of the connection were dispatched and none is
    /// in flight.
    Wait(u64),
    /// A chunk size past `u64`: hyper refuses that body and closes.
    Lost,
    /// An ambiguous head was refused: hyper answers 400 and closes.
    Refused,
}

/// Where a chunked body is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Chunk {
    /// In a chunk size, this much so far.
    Size(u64),
    /// In the rest of a size line (extensions, CR), after this size.
    SizeLine(u64),
    /// In chunk data, this much left.
    Data(u64),
    /// In the CRLF after chunk data.
    DataEnd,
    /// In the trailer section; `true`: at the start of a line (or past a CR there).
    Trailer(bool),
}

/// What the lines of the current head said so far.
#[derive(Clone, Copy, Default)]
struct Facts {
    request_line: bool,
    length: Option<Option<u64>>,
    coded: bool,
    not_counted: bool,
}

/// What one line of a head is.
enum Line {
    Field,
    Ambiguous,
    End,
}

impl FramingGuard {
    /// A guard for a new connection, whose first bytes are a head.
    pub(crate) fn new() -> Self {
        FramingGuard {
            state: State::Head,
            facts: Facts::default(),
            carry: [0; CARRY],
            carry_len: 0,
            truncated: false,
        }
    }

    /// Whether the guard refused a head (the 400 that follows is its doing).
    pub(crate) fn refused(&self) -> bool {
        self.state == State::Refused
    }

    /// Looks at `data`, the bytes just read, and spoils an ambiguous head in place.
    pub(crate) fn scan(&mut self, data: &mut [u8], info: &ConnInfo) {
        if let State::Wait(seen) = self.state {
            if info.requests.load(Ordering::Relaxed) <= seen
                || info.in_flight.load(Ordering::Relaxed) != 0
            {
                return;
            }
            self.state = State::Head;
        }
        let mut pos = 0;
        while pos < data.len() {
            match self.state {
                State::Head => match self.head_lines(data, pos, info) {
                    Some(next) => pos = next,
                    None => return,
                },
                State::Body(left) => {
                    let rest = (data.len() - pos) as u64;
                    if rest < left {
                        self.state = State::Body(left - rest);
                        return;
                    }
                    // `left <= rest`, a `usize`.
                    pos += left as usize;
                    self.state = State::Head;
                }
                State::Chunked(chunk) => (self.state, pos) = skip_chunked(chunk, data, pos),
                State::Wait(_) | State::Lost | State::Refused => return,
            }
        }
    }

    /// Reads head lines from `data[pos..]`: where the next message starts when the head ended in
    /// `data`, `None` when `data` ended first or the head was refused.
    fn head_lines(&mut self, data: &mut [u8], mut pos: usize, info: &ConnInfo) -> Option<usize> {
        let mut spoil = None;
        for end in lf::Lfs::new(data, pos) {
            let carried = self.carry_len > 0 || self.truncated;
            // The common lines are told apart here, without a call: most fields cannot matter
            // (a name that starts with none of `c`, `t`, `u`), and the end of the head.
            let blank = end == pos || (end - pos == 1 && data[pos] == b'\r');
            if !carried && self.facts.request_line {
                if blank {
                    self.state = self.after_head(info);
                    return Some(end + 1);
                }
                if !matches!(data[pos] | 0x20, b'c' | b't' | b'u') {
                    pos = end + 1;
                    continue;
                }
            }
            let line = if carried {
                self.keep(&data[pos..end]);
                let (carry, len, truncated) = (self.carry, self.carry_len, self.truncated);
                self.carry_len = 0;
                self.truncated = false;
                self.line(&carry[..len], truncated)
            } else {
                self.line(&data[pos..end], false)
            };
            match line {
                Line::Field => pos = end + 1,
                Line::Ambiguous => {
                    spoil = Some(end);
                    break;
                }
                Line::End => {
                    self.state = self.after_head(info);
                    return Some(end + 1);
                }
            }
        }
        if let Some(end) = spoil {
            // Within the head, which hyper has not parsed yet (its end is further on): a NUL is
            // refused wherever it falls in a head.
            data[end] = 0;
            self.state = State::Refused;
            return None;
        }
        self.keep(&data[pos..]);
        None
    }

    /// Adds `bytes` to the carried start of the current line.
    fn keep(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(CARRY - self.carry_len);
        self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&bytes[..take]);
        self.carry_len += take;
        self.truncated |= take < bytes.len();
    }

    /// Takes in one head line (without its LF); `truncated`: only its start is there.
    fn line(&mut self, line: &[u8], truncated: bool) -> Line {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let f = &mut self.facts;
        if !f.request_line {
            // Empty lines before a request line are ignored (RFC 9112 §2.2), as hyper does.
            if !line.is_empty() {
                f.request_line = true;
                f.not_counted = line.starts_with(b"CONNECT ");
            }
            return Line::Field;
        }
        let Some(first) = line.first() else {
            return Line::End;
        };
        match first | 0x20 {
            b'c' if is_field(line, b"content-length:") => {
                if f.coded || f.length.is_some() {
                    return Line::Ambiguous;
                }
                let value = (!truncated).then(|| &line[15..]);
                f.length = Some(value.and_then(parse_length));
            }
            b't' if is_field(line, b"transfer-encoding:") => {
                if f.length.is_some() {
                    return Line::Ambiguous;
                }
                f.coded = true;
            }
            b'u' if is_field(line, b"upgrade:") => f.not_counted = true,
            _ => {}
        }
        Line::Field
    }

    /// Where the guard goes once a head is complete.
    fn after_head(&mut self, info: &ConnInfo) -> State {
        let facts = std::mem::take(&mut self.facts);
        match facts.length {
            _ if facts.not_counted => State::Wait(info.requests.load(Ordering::Relaxed)),
            // A coding other than `chunked` alone is refused by hyper, which then closes.
            _ if facts.coded => State::Chunked(Chunk::Size(0)),
            None | Some(Some(0)) => State::Head,
            Some(Some(n)) => State::Body(n),
            Some(None) => State::Wait(info.requests.load(Ordering::Relaxed)),
        }
    }
}

/// Skips chunked body bytes from `data[pos..]`: the state after them, and where the next message
/// starts when the body ended in `data`. Lenient where hyper is strict (a malformed chunk is
/// hyper's 400 and the connection's end, so nothing after it is read).
fn skip_chunked(mut chunk: Chunk, data: &[u8], mut pos: usize) -> (State, usize) {
    let size_end = |n: u64| {
        if n == 0 {
            Chunk::Trailer(true)
        } else {
            Chunk::Data(n)
        }
    };
    while pos < data.len() {
        chunk = match chunk {
            Chunk::Size(n) => {
                let b = data[pos];
                pos += 1;
                match (b as char).to_digit(16) {
                    Some(d) => match n.checked_mul(16) {
                        Some(n) => Chunk::Size(n + u64::from(d)),
                        None => return (State::Lost, data.len()),
                    },
                    None if b == b'\n' => size_end(n),
                    None => Chunk::SizeLine(n),
                }
            }
            Chunk::SizeLine(n) => match memchr::memchr(b'\n', &data[pos..]) {
                Some(i) => {
                    pos += i + 1;
                    size_end(n)
                }
                None => return (State::Chunked(chunk), data.len()),
            },
            Chunk::Data(n) => {
                let rest = (data.len() - pos) as u64;
                if rest < n {
                    return (State::Chunked(Chunk::Data(n - rest)), data.len());
                }
                // `n <= rest`, a `usize`.
                pos += n as usize;
                Chunk::DataEnd
            }
            Chunk::DataEnd => match memchr::memchr(b'\n', &data[pos..]) {
                Some(i) => {
                    pos += i + 1;
                    Chunk::Size(0)
                }
                None => return (State::Chunked(chunk), data.len()),
            },
            Chunk::Trailer(at_start) => {
                let b = data[pos];
                pos += 1;
                match b {
                    b'\n' if at_start => return (State::Head, pos),
                    b'\n' => Chunk::Trailer(true),
                    b'\r' => Chunk::Trailer(at_start),
                    _ => Chunk::Trailer(false),
                }
            }
        };
    }
    (State::Chunked(chunk), pos)
}

/// Whether `line` is a field named `name` (lower case, with its colon).
fn is_field(line: &[u8], name: &[u8]) -> bool {
    line.get(..name.len())
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// A `Content-Length` value as hyper accepts it: one decimal number between optional whitespace.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

mod lf;

#[cfg(test)]
mod tests;
