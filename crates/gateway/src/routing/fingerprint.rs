//! Config flow, snapshot building on a reload: a rule's content hash, so the build can tell an
//! unchanged rule from a changed one. The rule is written through its `Serialize` form (the
//! same data `GET /config` and the route tables show, every field included) into a compact
//! binary encoding and hashed in one piece: no text formatting, no escaping, no field names.

use serde::ser::{self, Serialize};
use std::cell::RefCell;

/// A content hash of `value`: equal hashes mean equal serialized forms (up to collisions).
pub(crate) fn hash<T: Serialize + ?Sized>(value: &T) -> u64 {
    thread_local! {
        /// The encoded value, reused from rule to rule.
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        // The encoder never fails; a custom `Serialize` that does leaves a shorter buffer,
        // which still hashes every byte it wrote.
        let _ = value.serialize(&mut Encoder(buf, 0));
        // Not a map key an attacker picks: a fast non-keyed hash serves (SipHash was a third
        // of a fingerprint's cost).
        xxhash_rust::xxh3::xxh3_64(buf)
    })
}

/// Writes values as tagged bytes: every variable-length part (string, sequence, map, option,
/// enum variant) says its length or ends with a marker, so two different values of one type
/// never encode alike.
/// The second field is the depth of compound values open around the current one: the value
/// being hashed is at depth 1.
struct Encoder<'a>(&'a mut Vec<u8>, usize);

/// The encoding buffer as a `fmt::Write` target, for texts a value writes through `Display`.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The encoder's error: only a `Serialize` impl can raise one.
#[derive(Debug)]
pub(crate) struct Error;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("serialization failed")
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Error
    }
}

impl Encoder<'_> {
    /// A length as LEB128 (7 bits a byte, high bit set on all but the last): one byte for the
    /// short names and strings a rule is made of, and, being prefix-free, as unambiguous as
    /// a fixed width. (A rule's encoding is mostly field names; eight-byte lengths made it
    /// twice as long to write and to hash.)
    fn len(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.0.push(n as u8 | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    /// Sequences and maps of unknown length: a marker before each element and at the end.
    fn open(&mut self, len: Option<usize>) {
        match len {
            Some(n) => {
                self.0.push(1);
                self.len(n);
            }
            None => self.0.push(0),
        }
    }
}

/// Primitive numbers as their little-endian bytes.
macro_rules! numbers {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'b> ser::Serializer for &mut Encoder<'b> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    numbers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128, serialize_f32: f32, serialize_f64: f64);

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.0.push(u8::from(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_u32(u32::from(v))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.bytes(v.as_bytes());
        Ok(())
    }
    /// As [`serialize_str`](Self::serialize_str) would write `v.to_string()`, without the
    /// `String` (names such as `ObjectId` serialize this way).
    fn collect_str<T: std::fmt::Display + ?Sized>(self, v: &T) -> Result<(), Error> {
        // Written in place after a one-byte length; a longer text moves behind its longer
        // length (rare: names are short).
        let at = self.0.len();
        self.0.push(0);
        std::fmt::write(&mut Text(self.0), format_args!("{v}")).map_err(|_| Error)?;
        let n = self.0.len() - at - 1;
        if n < 0x80 {
            self.0[at] = n as u8;
        } else {
            let text = self.0.split_off(at + 1);
            self.0.truncate(at);
            self.len(n);
            self.0.extend_from_slice(&text);
        }
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.bytes(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.0.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        self.0.push(1);
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, i: u32, _: &'static str) -> Result<(), Error> {
        self.serialize_u32(i)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        i: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        self.serialize_u32(i)?;
        v.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Error> {
        self.open(len);
        self.1 += 1;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        self.1 += 1;
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        self.1 += 1;
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        i: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.serialize_u32(i)?;
        self.1 += 1;
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Error> {
        self.open(len);
        self.1 += 1;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        self.1 += 1;
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        i: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.serialize_u32(i)?;
        self.1 += 1;
        Ok(self)
    }
}

/// Elements of a sequence or map: the marker of an unknown-length one before each; sequences
/// and maps end with a 0 either way (harmless after a known length).
macro_rules! compound {
    ($($tr:ident { $($f:ident),* } $(end: $e:ident)?;)*) => {$(
        impl<'b> ser::$tr for &mut Encoder<'b> {
            type Ok = ();
            type Error = Error;
            $(fn $f<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                self.0.push(2);
                v.serialize(&mut **self)
            })*
            fn end(self) -> Result<(), Error> {
                self.0.push(0);
                self.1 -= 1;
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq { serialize_element };
    SerializeTuple { serialize_element };
    SerializeTupleStruct { serialize_field };
    SerializeTupleVariant { serialize_field };
}

impl<'b> ser::SerializeMap for &mut Encoder<'b> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Error> {
        self.0.push(2);
        k.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        self.0.push(2);
        v.serialize(&mut **self)
    }
    /// A rule is a map (its `release` is flattened into it): its `source` entry's value is left
    /// out as a struct's `source` field is (`SOURCE_KEY`).
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        k: &K,
        v: &V,
    ) -> Result<(), Error> {
        let at = self.0.len() + 1;
        self.serialize_key(k)?;
        if self.1 == 1 && self.0[at..] == *SOURCE_KEY {
            self.0.push(3);
            return Ok(());
        }
        self.serialize_value(v)
    }
    fn end(self) -> Result<(), Error> {
        self.0.push(0);
        self.1 -= 1;
        Ok(())
    }
}

/// `"source"` as the encoder writes a string: its length, then its bytes.
///
/// The hashed value's own `source` (a top-level field or entry) is left out of the hash: a
/// rule's definition site is where it is, not what it does, so an edit that adds a line above a
/// rule must not rebuild it. Nothing at runtime reads a kept entry's copy of it (positions shown
/// to people come from the config). Only the top level's: a `source` deeper in (a header named
/// so, say) is content.
const SOURCE_KEY: &[u8; 7] = b"\x06source";

/// Struct fields: a fixed list per type, so their names need not be written; a skipped field
/// is marked so that skipping one cannot look like a neighbour's value.
macro_rules! fields {
    ($($tr:ident),*) => {$(
        impl<'b> ser::$tr for &mut Encoder<'b> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Error> {
                // The hashed value's own definition site (`source`: file and line) is where
                // it is, not what it does: see `SOURCE_KEY`.
                if self.1 == 1 && key == "source" {
                    self.0.push(3);
                    return Ok(());
                }
                self.0.push(2);
                v.serialize(&mut **self)
            }
            fn skip_field(&mut self, _: &'static str) -> Result<(), Error> {
                self.0.push(3);
                Ok(())
            }
            fn end(self) -> Result<(), Error> {
                self.0.push(0);
                self.1 -= 1;
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::hash;
    use serde::Serialize;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Inner {
        a: Option<String>,
        b: Vec<u32>,
    }

    #[derive(Serialize)]
    enum Kind {
        Unit,
        One(String),
        Two { x: u8 },
    }

    #[derive(Serialize)]
    struct Outer {
        name: String,
        inner: Inner,
        kind: Kind,
        #[serde(flatten)]
        extra: BTreeMap<String, f64>,
    }

    fn outer(name: &str, a: Option<&str>, b: &[u32], kind: Kind, extra: &[(&str, f64)]) -> u64 {
        hash(&Outer {
            name: name.into(),
            inner: Inner {
                a: a.map(Into::into),
                b: b.to_vec(),
            },
            kind,
            extra: extra.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        })
    }

    #[test]
    fn every_field_changes_the_hash_and_equal_values_hash_alike() {
        let base = || {
            outer(
                "r",
                Some("x"),
                &[1, 2],
                Kind::One("k".into()),
                &[("w", 0.5)],
            )
        };
        assert_eq!(base(), base());
        let variants = [
            outer(
                "r2",
                Some("x"),
                &[1, 2],
                Kind::One("k".into()),
                &[("w", 0.5)],
            ),
            outer("r", None, &[1, 2], Kind::One("k".into()), &[("w", 0.5)]),
            outer("r", Some(""), &[1, 2], Kind::One("k".into()), &[("w", 0.5)]),
            outer("r", Some("x"), &[1], Kind::One("k".into()), &[("w", 0.5)]),
            outer(
                "r",
                Some("x"),
                &[1, 2, 0],
                Kind::One("k".into()),
                &[("w", 0.5)],
            ),
            outer("r", Some("x"), &[1, 2], Kind::Unit, &[("w", 0.5)]),
            outer(
                "r",
                Some("x"),
                &[1, 2],
                Kind::One("k2".into()),
                &[("w", 0.5)],
            ),
            outer("r", Some("x"), &[1, 2], Kind::Two { x: 0 }, &[("w", 0.5)]),
            outer(
                "r",
                Some("x"),
                &[1, 2],
                Kind::One("k".into()),
                &[("w", 0.25)],
            ),
            outer("r", Some("x"), &[1, 2], Kind::One("k".into()), &[]),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base(), "variant {i}");
        }
        // A name written with `collect_str` encodes as the same text written as a string.
        let id = gatehouse_config::ObjectId {
            namespace: "ns".into(),
            name: "a".into(),
        };
        assert_eq!(hash(&id), hash("ns/a"));
        assert_ne!(hash(&id), hash("ns/b"));
        // Also past the one-byte length (the text moves behind a longer one).
        let long = gatehouse_config::ObjectId {
            namespace: "ns".into(),
            name: "n".repeat(300),
        };
        assert_eq!(hash(&long), hash(&format!("ns/{}", "n".repeat(300))));
        assert_ne!(hash(&long), hash(&format!("ns/{}", "n".repeat(301))));
        // Moving bytes from one string to its neighbour is a change too.
        assert_ne!(
            hash(&("ab".to_string(), "c".to_string())),
            hash(&("a".to_string(), "bc".to_string()))
        );
    }

    #[test]
    fn the_top_level_source_is_left_out_and_a_deeper_one_is_not() {
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct At {
            line: usize,
        }
        #[derive(Serialize)]
        struct Rule {
            path: &'static str,
            headers: BTreeMap<&'static str, &'static str>,
            source: At,
        }
        #[derive(Serialize)]
        struct Flat {
            path: &'static str,
            #[serde(flatten)]
            more: BTreeMap<&'static str, &'static str>,
            source: At,
        }
        let rule = |line, header| Rule {
            path: "/a",
            headers: BTreeMap::from([("source", header)]),
            source: At { line },
        };
        assert_eq!(hash(&rule(1, "x")), hash(&rule(9, "x")));
        assert_ne!(hash(&rule(1, "x")), hash(&rule(1, "y")));
        let flat = |line, path| Flat {
            path,
            more: BTreeMap::from([("k", "v")]),
            source: At { line },
        };
        assert_eq!(hash(&flat(1, "/a")), hash(&flat(9, "/a")));
        assert_ne!(hash(&flat(1, "/a")), hash(&flat(1, "/b")));
    }
}
