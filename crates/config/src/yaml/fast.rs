//! Config flow, step 1 (fast path): the common subset of YAML that manifests are written in, read
//! straight into [`Node`]s in one pass over the bytes.
//!
//! saphyr's scanner costs ~260 instructions per input byte (44 % of `gatehouse check` at 10,000
//! routes); this reader costs a few. It accepts only what it is sure of — block mappings and
//! sequences, one-line flow collections, one-line plain and quoted scalars without escapes,
//! comments, `---` separators — and gives up (`None`) on anything else: anchors, tags, block
//! scalars, multi-line scalars, escapes, empty values, tabs, errors. The caller then parses with
//! saphyr, so every tree and every error stays exactly saphyr's (the differential tests in
//! `yaml.rs` compare both on the same inputs).

use super::{Mark, Node, Value};
use std::borrow::Cow;

/// What starts the next line that holds something.
enum Next {
    /// End of input.
    Eof,
    /// A `---` or `...` line.
    Marker,
    /// Content at this indentation.
    Indent(usize),
}

/// The reader: a position in the text and the line it is on.
struct Reader<'a> {
    b: &'a [u8],
    text: &'a str,
    pos: usize,
    /// 1-based line of `pos`.
    line: usize,
    /// Byte offset where that line starts.
    line_start: usize,
    /// Entries of the mappings and items of the sequences being read, innermost last: a
    /// collection is pushed here and moved out into a `Vec` of exactly its length when it ends,
    /// so no `Vec` of the tree is ever grown (growing is a reallocation and a copy, and most
    /// mappings of a manifest hold one to three entries).
    entries: Vec<(Node<'a>, Node<'a>)>,
    items: Vec<Node<'a>>,
}

/// Parses `text` if it is within the subset; `None` means "ask saphyr" (the differential tests'
/// entry; the loader streams with [`Documents`]).
#[cfg(test)]
pub(super) fn parse(text: &str) -> Option<Vec<Node<'_>>> {
    let mut stream = Documents::new(text)?;
    let mut docs = Vec::new();
    loop {
        match stream.next_doc() {
            Step::Doc(doc) => docs.push(doc),
            Step::End => return Some(docs),
            Step::GiveUp => return None,
        }
    }
}

/// What [`Documents::next_doc`] found.
pub(super) enum Step<'a> {
    /// The next document.
    Doc(Node<'a>),
    /// The end of the input.
    End,
    /// Something outside the subset: the whole text is saphyr's to parse (the documents given
    /// so far are the same as saphyr's first ones).
    GiveUp,
}

/// The documents of a text one at a time, so that a caller can drop each tree before the next
/// is read.
pub(super) struct Documents<'a> {
    r: Reader<'a>,
}

impl<'a> Documents<'a> {
    /// `None` when the text cannot be in the subset at all.
    pub(super) fn new(text: &'a str) -> Option<Self> {
        let b = text.as_bytes();
        // Tabs and carriage returns change indentation and line rules; a BOM or NUL is rare.
        if b.iter().any(|&c| matches!(c, b'\t' | b'\r' | 0)) || text.starts_with('\u{feff}') {
            return None;
        }
        let r = Reader {
            b,
            text,
            pos: 0,
            line: 1,
            line_start: 0,
            entries: Vec::new(),
            items: Vec::new(),
        };
        Some(Documents { r })
    }

    /// The next non-null document.
    pub(super) fn next_doc(&mut self) -> Step<'a> {
        let r = &mut self.r;
        loop {
            match r.next_line() {
                Next::Eof => return Step::End,
                Next::Marker => {
                    if !r.b[r.pos..].starts_with(b"---") {
                        return Step::GiveUp;
                    }
                    r.pos += 3;
                    if r.end_line().is_none() {
                        return Step::GiveUp;
                    }
                }
                Next::Indent(i) => {
                    let Some(doc) = r.block_node(-1, i) else {
                        return Step::GiveUp;
                    };
                    // A document ends at the end of the input or at a marker.
                    if let Next::Indent(_) = r.next_line() {
                        return Step::GiveUp;
                    }
                    // As from saphyr: a null document (`~`) is no document.
                    if !doc.is_null() {
                        return Step::Doc(doc);
                    }
                }
            }
        }
    }
}

/// Bytes that may end a plain scalar (or, for a space, its trimmed text); see [`Reader::plain`].
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let stops = b"\n :#,[]{}";
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether `c` ends a plain scalar's `:`/`-` indicator check: space, end of line or input.
fn blank(c: Option<&u8>) -> bool {
    matches!(c, None | Some(b' ' | b'\n'))
}

/// Flow indicators, which end a plain scalar inside `{}`/`[]`.
fn flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// The position of byte offset `at` on the current line; columns count characters, as saphyr's.
    fn mark(&self, at: usize) -> Mark {
        let before = &self.b[self.line_start..at];
        let col = if before.is_ascii() {
            before.len()
        } else {
            before.iter().filter(|&&c| c & 0xC0 != 0x80).count()
        };
        Mark {
            line: self.line,
            col: col + 1,
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Moves past the `\n` at `pos`, or to the end of input.
    fn next_line_start(&mut self) {
        match self.b[self.pos..].iter().position(|&c| c == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                self.line += 1;
                self.line_start = self.pos;
            }
            None => self.pos = self.b.len(),
        }
    }

    /// After a token: spaces, an optional comment, the end of the line (consumed). Anything else
    /// gives up.
    fn end_line(&mut self) -> Option<()> {
        let before = self.pos;
        self.skip_spaces();
        match self.peek() {
            None | Some(b'\n') => {}
            // A comment needs a space before it (or the line start).
            Some(b'#') if self.pos > before || self.pos == self.line_start => {}
            _ => return None,
        }
        self.next_line_start();
        Some(())
    }

    /// From a line start, skips blank and comment lines; leaves `pos` at the start of the next
    /// line with content (calling it again there changes nothing).
    fn next_line(&mut self) -> Next {
        loop {
            let rest = &self.b[self.pos..];
            let indent = rest.iter().take_while(|&&c| c == b' ').count();
            match rest.get(indent) {
                None => {
                    self.pos = self.b.len();
                    return Next::Eof;
                }
                Some(b'\n' | b'#') => self.next_line_start(),
                Some(_) => {
                    let marker = rest.starts_with(b"---") || rest.starts_with(b"...");
                    return if indent == 0 && marker && blank(rest.get(3)) {
                        Next::Marker
                    } else {
                        Next::Indent(indent)
                    };
                }
            }
        }
    }

    /// Whether a block sequence item (`-` then a space or the line end) starts at `pos`.
    fn at_item(&self) -> bool {
        self.peek() == Some(b'-') && blank(self.b.get(self.pos + 1))
    }

    /// The node whose first line starts at indentation `indent` (greater than `parent`).
    fn block_node(&mut self, parent: isize, indent: usize) -> Option<Node<'a>> {
        if indent as isize <= parent {
            return None;
        }
        self.pos = self.line_start + indent;
        if self.at_item() {
            return self.block_seq(indent, false);
        }
        if let Some(key) = self.key() {
            return self.block_map(indent, key);
        }
        let node = self.inline_value()?;
        self.end_line()?;
        Some(node)
    }

    /// A key and its `:` at `pos`, or `None` (and `pos` unchanged) when `pos` holds no key.
    fn key(&mut self) -> Option<Node<'a>> {
        let start = (self.pos, self.line, self.line_start);
        let key = match self.peek()? {
            b'"' | b'\'' => self.quoted(),
            _ => self.plain(false),
        };
        if let Some(key) = key {
            self.skip_spaces();
            if self.peek() == Some(b':') && blank(self.b.get(self.pos + 1)) {
                self.pos += 1;
                return Some(key);
            }
        }
        (self.pos, self.line, self.line_start) = start;
        None
    }

    /// [`Self::key`], with the key's offset on its line.
    fn key_at(&mut self) -> Option<(Node<'a>, usize)> {
        let at = self.pos - self.line_start;
        self.key().map(|k| (k, at))
    }

    /// A block mapping at `indent` whose first key (and its `:`) was just read.
    fn block_map(&mut self, indent: usize, first: Node<'a>) -> Option<Node<'a>> {
        let mark = first.mark;
        let start = self.entries.len();
        let mut key = first;
        loop {
            let value = self.map_value(indent)?;
            self.entries.push((key, value));
            match self.next_line() {
                Next::Indent(i) if i == indent => {
                    self.pos = self.line_start + i;
                    key = self.key()?;
                }
                Next::Indent(i) if i > indent => return None,
                _ => break,
            }
        }
        Some(Node {
            value: Value::Map(self.entries.drain(start..).collect()),
            mark,
        })
    }

    /// The value after a block mapping's `key:`, on the same line or below it.
    fn map_value(&mut self, indent: usize) -> Option<Node<'a>> {
        self.skip_spaces();
        if !matches!(self.peek(), None | Some(b'\n' | b'#')) {
            if self.at_item() {
                return None;
            }
            let node = self.inline_value()?;
            self.end_line()?;
            return Some(node);
        }
        self.end_line()?;
        match self.next_line() {
            Next::Indent(i) if i > indent => self.block_node(indent as isize, i),
            Next::Indent(i) if i == indent => {
                // A sequence may sit at its key's own indentation.
                self.pos = self.line_start + i;
                if self.at_item() {
                    self.block_seq(i, true)
                } else {
                    None
                }
            }
            // An empty value: saphyr places its null; not worth copying.
            _ => None,
        }
    }

    /// A block sequence whose first `-` is at `pos`, at indentation `indent`; `indentless` when
    /// it sits at its mapping key's indentation (saphyr then marks it at its first item).
    fn block_seq(&mut self, indent: usize, indentless: bool) -> Option<Node<'a>> {
        let mut mark = self.mark(self.pos);
        let start = self.items.len();
        loop {
            self.pos += 1;
            self.skip_spaces();
            let empty = matches!(self.peek(), None | Some(b'\n' | b'#'));
            if indentless && self.items.len() == start {
                if empty {
                    return None;
                }
                mark = self.mark(self.pos);
            }
            let item = if empty {
                self.end_line()?;
                match self.next_line() {
                    Next::Indent(i) if i > indent => self.block_node(indent as isize, i)?,
                    _ => return None,
                }
            } else if self.at_item() {
                return None;
            } else if let Some(key) = self.key_at() {
                // Only spaces and `-` precede the key: its byte offset is its indentation.
                self.block_map(key.1, key.0)?
            } else {
                let node = self.inline_value()?;
                self.end_line()?;
                node
            };
            self.items.push(item);
            match self.next_line() {
                Next::Indent(i) if i == indent => {
                    self.pos = self.line_start + i;
                    if !self.at_item() {
                        self.pos = self.line_start;
                        break;
                    }
                }
                Next::Indent(i) if i > indent => return None,
                _ => break,
            }
        }
        Some(Node {
            value: Value::Seq(self.items.drain(start..).collect()),
            mark,
        })
    }

    /// A value that starts and ends on this line: a flow collection or a scalar.
    fn inline_value(&mut self) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => self.flow_map(),
            b'[' => self.flow_seq(),
            b'"' | b'\'' => self.quoted(),
            _ => self.plain(false),
        }
    }

    /// A value inside a flow collection.
    fn flow_value(&mut self) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => self.flow_map(),
            b'[' => self.flow_seq(),
            b'"' | b'\'' => self.quoted(),
            _ => self.plain(true),
        }
    }

    /// `{k: v, ...}` on one line.
    fn flow_map(&mut self) -> Option<Node<'a>> {
        let mark = self.mark(self.pos);
        self.pos += 1;
        self.skip_spaces();
        let start = self.entries.len();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let key = match self.peek()? {
                    b'"' | b'\'' => self.quoted()?,
                    _ => self.plain(true)?,
                };
                self.skip_spaces();
                if self.peek() != Some(b':') || self.b.get(self.pos + 1) != Some(&b' ') {
                    return None;
                }
                self.pos += 1;
                self.skip_spaces();
                let value = self.flow_value()?;
                self.entries.push((key, value));
                if self.flow_next(b'}')? {
                    break;
                }
            }
        }
        Some(Node {
            value: Value::Map(self.entries.drain(start..).collect()),
            mark,
        })
    }

    /// `[a, b, ...]` on one line.
    fn flow_seq(&mut self) -> Option<Node<'a>> {
        let mark = self.mark(self.pos);
        self.pos += 1;
        self.skip_spaces();
        let start = self.items.len();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                let item = self.flow_value()?;
                self.items.push(item);
                // `[a: b]` is a mapping inside the sequence: not in the subset.
                if self.flow_next(b']')? {
                    break;
                }
            }
        }
        Some(Node {
            value: Value::Seq(self.items.drain(start..).collect()),
            mark,
        })
    }

    /// After a flow entry: `,` then another entry (`false`), or the closing `close` (`true`).
    fn flow_next(&mut self, close: u8) -> Option<bool> {
        self.skip_spaces();
        match self.peek()? {
            b',' => {
                self.pos += 1;
                self.skip_spaces();
                // A trailing comma is valid YAML, but rare: leave it to saphyr.
                (self.peek()? != close).then_some(false)
            }
            c if c == close => {
                self.pos += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// A one-line quoted scalar without escapes (`''` in single quotes is the one allowed).
    fn quoted(&mut self) -> Option<Node<'a>> {
        let mark = self.mark(self.pos);
        let q = self.b[self.pos];
        let start = self.pos + 1;
        let mut i = start;
        let mut doubled = false;
        loop {
            match *self.b.get(i)? {
                b'\n' => return None,
                b'\\' if q == b'"' => return None,
                c if c == q => {
                    if q == b'\'' && self.b.get(i + 1) == Some(&b'\'') {
                        doubled = true;
                        i += 2;
                        continue;
                    }
                    break;
                }
                _ => i += 1,
            }
        }
        let raw = &self.text[start..i];
        self.pos = i + 1;
        let text = if doubled {
            Cow::Owned(raw.replace("''", "'"))
        } else {
            Cow::Borrowed(raw)
        };
        Some(Node {
            value: Value::Scalar(text, true),
            mark,
        })
    }

    /// A one-line plain scalar; `flow` inside `{}`/`[]`, where flow indicators end it too.
    fn plain(&mut self, flow: bool) -> Option<Node<'a>> {
        let start = self.pos;
        let first = self.peek()?;
        // Indicators that cannot start a plain scalar, or that start what the subset leaves out.
        if b"-?:,[]{}#&*!|>'\"%@`".contains(&first)
            && !(first == b'-' && !blank(self.b.get(start + 1)) && !flow)
        {
            return None;
        }
        let mut i = start;
        let mut end = start;
        loop {
            // Ordinary bytes in one tight loop; the table marks the few that may end the scalar.
            let from = i;
            while self.b.get(i).is_some_and(|&c| !STOPS[c as usize]) {
                i += 1;
            }
            if i > from {
                end = i;
            }
            let Some(&c) = self.b.get(i) else { break };
            match c {
                b'\n' => break,
                b':' => {
                    let next = self.b.get(i + 1);
                    if blank(next) || (flow && next.is_some_and(|&n| flow_indicator(n))) {
                        break;
                    }
                }
                b'#' if self.b[i - 1] == b' ' => break,
                c if flow && flow_indicator(c) => break,
                _ => {}
            }
            i += 1;
            if c != b' ' {
                end = i;
            }
        }
        if end == start {
            return None;
        }
        self.pos = end;
        Some(Node {
            value: Value::Scalar(Cow::Borrowed(&self.text[start..end]), false),
            mark: self.mark(start),
        })
    }
}
