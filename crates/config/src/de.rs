//! Config flow, step 2: a serde deserializer over the marked YAML tree.
//!
//! Unlike a stock YAML deserializer it knows where it is: every error carries the field path and the
//! position of the offending node, and unknown fields and duplicate keys are collected (with a "did
//! you mean") instead of stopping at the first, so `gatehouse check` reports them all at once.
//!
//! A hard error (a wrong type, a missing field) stops serde's derived code, which would hide every
//! problem after it. So `from_node` recovers: it notes the error, skips the node it was raised at,
//! and deserializes again, until a pass gets through. Errors that only follow from a skip (the
//! `missing field` of a skipped entry) are not reported.

use crate::error::hint;
use crate::yaml::{Mark, Node, Value};
use path::FieldPath;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

mod path;

/// Passes `from_node` makes at most; each one skips one more node. A document with more hard
/// errors than this reports the first ones.
const MAX_PASSES: usize = 64;

/// A deserialization problem at one place of the tree.
#[derive(Debug, Clone)]
pub struct DeError {
    /// Where; filled in by the innermost node that saw the error.
    pub mark: Option<Mark>,
    /// Field path; filled in with `mark`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The node it was raised at (its address), which the next pass skips.
    node: Option<usize>,
    /// Raised only because a node was skipped after an earlier error: not reported.
    consequence: bool,
}

/// What deserialization collects besides its result: the errors it went on after, and the nodes
/// skipped so far.
#[derive(Debug, Default)]
pub struct Collected {
    /// Every error not returned as the hard error, in the order found.
    pub errors: Vec<DeError>,
    skip: HashSet<usize>,
}

fn addr(node: &Node) -> usize {
    node as *const Node as usize
}

fn same(a: &DeError, b: &DeError) -> bool {
    a.mark == b.mark && a.path == b.path && a.message == b.message
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            mark: None,
            path: String::new(),
            message: msg.to_string(),
            node: None,
            consequence: false,
        }
    }
}

/// Deserializes `T` from `node`, whose field path is `path`. Unknown fields, duplicate keys and
/// every hard error after the first are pushed to `soft`; the returned error, if any, is the first
/// hard error.
pub fn from_node<'de, T: de::Deserialize<'de>>(
    node: &'de Node<'de>,
    path: &str,
    soft: &'de RefCell<Collected>,
) -> Result<T, DeError> {
    let found_before = {
        let mut c = soft.borrow_mut();
        c.skip.clear();
        c.errors.len()
    };
    let mut hard: Vec<DeError> = Vec::new();
    for _ in 0..MAX_PASSES {
        let result = T::deserialize(NodeDe {
            node,
            path: FieldPath::root(path),
            soft,
        });
        match result {
            Ok(v) if hard.is_empty() => return Ok(v),
            Ok(_) => break,
            Err(e) => {
                let at = e.node;
                if !e.consequence && !hard.iter().any(|h| same(h, &e)) {
                    hard.push(e);
                }
                // The root cannot be skipped: there is nothing left to deserialize without it.
                let skippable = at.filter(|a| *a != addr(node));
                if !skippable.is_some_and(|a| soft.borrow_mut().skip.insert(a)) {
                    break;
                }
            }
        }
    }
    let mut c = soft.borrow_mut();
    c.skip.clear();
    // Every pass finds the same unknown fields again: keep each once.
    let mut kept: Vec<DeError> = Vec::new();
    for e in c.errors.drain(found_before..) {
        if !kept.iter().any(|k| same(k, &e)) {
            kept.push(e);
        }
    }
    c.errors.extend(kept);
    let mut hard = hard.into_iter();
    let first = hard.next().unwrap_or_else(|| DeError {
        mark: Some(node.mark),
        path: path.to_string(),
        message: "invalid value".into(),
        node: None,
        consequence: false,
    });
    c.errors.extend(hard);
    Err(first)
}

/// Deserializes one node; `'p` is the life of the stack frames its path is made of.
struct NodeDe<'a, 'p> {
    node: &'a Node<'a>,
    path: FieldPath<'p>,
    soft: &'a RefCell<Collected>,
}

impl<'a, 'p> NodeDe<'a, 'p> {
    fn locate(&self, e: DeError) -> DeError {
        at_if_unplaced(e, self.node, &self.path)
    }

    fn err(&self, message: String) -> DeError {
        DeError {
            mark: Some(self.node.mark),
            path: self.path.to_string(),
            message,
            node: Some(addr(self.node)),
            consequence: false,
        }
    }

    fn skipped(&self, node: &Node) -> bool {
        self.soft.borrow().skip.contains(&addr(node))
    }

    fn scalar(&self, what: &str) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Scalar(s, _) => Ok(s.as_ref()),
            _ => Err(self.err(format!("expected {what}, found {}", self.node.kind_name()))),
        }
    }

    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        let s = self.scalar(what)?;
        s.trim()
            .parse()
            .map_err(|_| self.err(format!("expected {what}, found `{s}`")))
    }

    fn child<'q>(&self, node: &'a Node<'a>, path: FieldPath<'q>) -> NodeDe<'a, 'q> {
        NodeDe {
            node,
            path,
            soft: self.soft,
        }
    }
}

macro_rules! parse_number {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v: $ty = self.parse($what)?;
            visitor.$visit(v).map_err(|e| self.locate(e))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            _ if self.node.is_null() => visitor.visit_unit(),
            Value::Scalar(s, true) => visitor.visit_str(s),
            Value::Scalar(s, false) => match &**s {
                "true" | "True" | "TRUE" => visitor.visit_bool(true),
                "false" | "False" | "FALSE" => visitor.visit_bool(false),
                _ => {
                    if let Ok(i) = s.parse::<i64>() {
                        visitor.visit_i64(i)
                    } else if let Ok(f) = s.parse::<f64>() {
                        visitor.visit_f64(f)
                    } else {
                        visitor.visit_str(s)
                    }
                }
            },
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                de: &self,
                items: items.iter(),
                index: 0,
            }),
            Value::Map(_) => return self.map(None, visitor),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = self.scalar("true or false")?;
        let b = match s {
            "true" | "True" | "TRUE" => true,
            "false" | "False" | "FALSE" => false,
            _ => return Err(self.err(format!("expected true or false, found `{s}`"))),
        };
        visitor.visit_bool(b).map_err(|e| self.locate(e))
    }

    parse_number! {
        deserialize_i8 visit_i8 i8, "an integer";
        deserialize_i16 visit_i16 i16, "an integer";
        deserialize_i32 visit_i32 i32, "an integer";
        deserialize_i64 visit_i64 i64, "an integer";
        deserialize_u8 visit_u8 u8, "an integer from 0 to 255";
        deserialize_u16 visit_u16 u16, "an integer from 0 to 65535";
        deserialize_u32 visit_u32 u32, "a non-negative integer";
        deserialize_u64 visit_u64 u64, "a non-negative integer";
        deserialize_f32 visit_f32 f32, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let s = self.scalar("a string")?;
        visitor.visit_str(s).map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor
                .visit_seq(SeqAccess {
                    de: &self,
                    items: items.iter(),
                    index: 0,
                })
                .map_err(|e| self.locate(e)),
            _ if self.node.is_null() => visitor
                .visit_seq(SeqAccess {
                    de: &self,
                    items: [].iter(),
                    index: 0,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.err(format!("expected a list, found {}", self.node.kind_name()))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.map(None, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.map(Some(fields), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Only unit variants written as plain strings are used in manifests.
        let s = self.scalar("a string")?;
        if !variants.contains(&s) {
            return Err(self.err(format!(
                "unknown value `{s}`, expected one of {}{}",
                list(variants),
                hint(s, variants.iter().copied())
            )));
        }
        visitor
            .visit_enum(s.into_deserializer())
            .map_err(|e: DeError| self.locate(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

fn list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> NodeDe<'a, '_> {
    fn map<V: Visitor<'a>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        const EMPTY: &[(Node, Node)] = &[];
        let entries = match &self.node.value {
            Value::Map(entries) => entries.as_slice(),
            _ if self.node.is_null() => EMPTY,
            _ => {
                return Err(self.err(format!(
                    "expected a mapping, found {}",
                    self.node.kind_name()
                )));
            }
        };
        let skipped_any = std::cell::Cell::new(false);
        visitor
            .visit_map(MapAccess {
                de: &self,
                entries: entries.iter(),
                fields,
                value: None,
                seen: Vec::with_capacity(entries.len()),
                skipped_any: &skipped_any,
            })
            .map_err(|mut e| {
                // A field reported missing after its entry was skipped was reported already.
                if e.mark.is_none() && skipped_any.get() && e.message.starts_with("missing field") {
                    e.consequence = true;
                }
                self.locate(e)
            })
    }
}

fn at_if_unplaced(mut e: DeError, node: &Node, path: &FieldPath) -> DeError {
    if e.mark.is_none() {
        e.mark = Some(node.mark);
        e.path = path.to_string();
        e.node = Some(addr(node));
    }
    e
}

struct SeqAccess<'a, 'b> {
    de: &'b NodeDe<'a, 'b>,
    items: std::slice::Iter<'a, Node<'a>>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de, '_> {
    type Error = DeError;

    /// What is left, so that a `Vec` is allocated once at its size instead of grown (an upper
    /// bound: a skipped element yields nothing).
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        // Elements skipped after an error keep their index, so later paths stay true.
        let node = loop {
            let Some(node) = self.items.next() else {
                return Ok(None);
            };
            self.index += 1;
            if !self.de.skipped(node) {
                break node;
            }
        };
        let path = self.de.path.index(self.index - 1);
        // Errors raised by a type's own `Deserialize` (not by this deserializer) carry no position:
        // they belong to the element they were raised for.
        seed.deserialize(self.de.child(node, path))
            .map(Some)
            .map_err(|e| at_if_unplaced(e, node, &path))
    }
}

struct MapAccess<'a, 'b> {
    de: &'b NodeDe<'a, 'b>,
    entries: std::slice::Iter<'a, (Node<'a>, Node<'a>)>,
    fields: Option<&'static [&'static str]>,
    /// The value to deserialize next, and its key.
    value: Option<(&'a Node<'a>, &'a str)>,
    /// Keys so far, to report a duplicate where it is written rather than at the mapping.
    seen: Vec<(&'a str, Mark)>,
    skipped_any: &'b std::cell::Cell<bool>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.entries.by_ref() {
            if self.de.skipped(key) || self.de.skipped(value) {
                self.skipped_any.set(true);
                continue;
            }
            let key_de = self.de.child(key, self.de.path);
            let name = key_de.scalar("a field name")?;
            let path = || self.de.path.key(name).to_string();
            if let Some((_, first)) = self.seen.iter().find(|(k, _)| *k == name) {
                let message = format!(
                    "duplicate key `{name}`, first written at line {} column {}",
                    first.line, first.col
                );
                self.de.soft.borrow_mut().errors.push(DeError {
                    mark: Some(key.mark),
                    path: path(),
                    message,
                    node: Some(addr(key)),
                    consequence: false,
                });
                continue;
            }
            self.seen.push((name, key.mark));
            if let Some(fields) = self.fields {
                if !fields.contains(&name) {
                    self.de.soft.borrow_mut().errors.push(DeError {
                        mark: Some(key.mark),
                        path: path(),
                        message: format!(
                            "unknown field `{name}`{}",
                            hint(name, fields.iter().copied())
                        ),
                        node: Some(addr(key)),
                        consequence: false,
                    });
                    continue;
                }
            }
            self.value = Some((value, name));
            return seed.deserialize(key_de).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, name) = self.value.take().expect("value follows key");
        let path = self.de.path.key(name);
        seed.deserialize(self.de.child(node, path))
            .map_err(|e| at_if_unplaced(e, node, &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;
    use serde::Deserialize;

    // Fields exist to be deserialized; the test reads only the errors.
    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct T {
        name: String,
        count: u32,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, Debug)]
    struct Inner {
        address: String,
    }

    #[test]
    fn collects_unknown_fields_and_locates_type_errors() {
        let docs =
            parse_documents("name: x\nextra: 1\ncount: 3\nitems:\n  - {adress: a}\n").unwrap();
        let soft = RefCell::new(Collected::default());
        let err = from_node::<T>(&docs[0], "spec", &soft).unwrap_err();
        assert_eq!(err.message, "missing field `address`");
        assert_eq!(err.path, "spec.items[0]");
        let soft = soft.into_inner().errors;
        assert_eq!(soft.len(), 2);
        assert_eq!(soft[0].path, "spec.extra");
        assert_eq!(soft[1].path, "spec.items[0].adress");
        assert!(soft[1].message.contains("did you mean `address`"));

        let docs = parse_documents("name: x\ncount: many\n").unwrap();
        let err =
            from_node::<T>(&docs[0], "spec", &RefCell::new(Collected::default())).unwrap_err();
        assert_eq!(err.path, "spec.count");
        assert_eq!(err.mark, Some(Mark { line: 2, col: 8 }));
    }
}
