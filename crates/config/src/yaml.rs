//! Config flow, step 1: YAML text -> a tree of nodes that remember their line and column.
//!
//! The parser is saphyr's event parser; this module only assembles its events into a tree so that every
//! later error (type errors, unknown fields, dangling references) can point at the exact place.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::borrow::Cow;
use std::collections::HashMap;

mod fast;
#[cfg(test)]
mod fast_tests;

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// A YAML value with its position. `'a` is the source text's: scalars written without escapes are
/// slices of it, so reading a manifest allocates only the tree's vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    /// The value.
    pub value: Value<'a>,
    /// Where the value starts.
    pub mark: Mark,
}

/// The shape of a YAML value. Scalars keep their text; typing happens when deserializing.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// A scalar: its text (borrowed from the source unless unescaping changed it), and whether it
    /// was quoted (quoted scalars are always strings).
    Scalar(Cow<'a, str>, bool),
    /// A sequence.
    Seq(Vec<Node<'a>>),
    /// A mapping, in source order.
    Map(Vec<(Node<'a>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// True for `~`, `null`, `Null`, `NULL` or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s, false) if matches!(&**s, "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value under `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Scalar(s, _) if *s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar(..) if self.is_null() => "null",
            Value::Scalar(..) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub mark: Mark,
    /// What it said.
    pub message: String,
}

fn mark(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// Parses every document of a YAML stream. JSON parses too, being a subset of YAML 1.2.
///
/// Manifests written in the common subset take the fast reader ([`fast`]); everything else, and
/// every syntax error, goes through saphyr, whose trees and errors the fast reader reproduces.
pub fn parse_documents(text: &str) -> Result<Vec<Node<'_>>, SyntaxError> {
    let mut docs = Vec::new();
    for_each_document(text, |doc| docs.push(doc))?;
    Ok(docs)
}

/// Gives every document of a YAML stream to `each`, in order, as [`parse_documents`] would
/// return them, one at a time: a caller that is done with a tree when `each` returns keeps no
/// more than one document's nodes alive (a 10,000-route file's trees were ~15 MB).
///
/// On the fast reader's path a tree is built only when the one before it was handed over; a
/// text it gives up on part-way is parsed again by saphyr, and only the documents after those
/// already given are handed over.
pub fn for_each_document<'a>(
    text: &'a str,
    mut each: impl FnMut(Node<'a>),
) -> Result<(), SyntaxError> {
    let mut given = 0;
    if let Some(mut docs) = fast::Documents::new(text) {
        loop {
            match docs.next_doc() {
                fast::Step::Doc(doc) => {
                    given += 1;
                    each(doc);
                }
                fast::Step::End => return Ok(()),
                fast::Step::GiveUp => break,
            }
        }
    }
    parse_with_saphyr(text)?
        .into_iter()
        .skip(given)
        .for_each(each);
    Ok(())
}

/// Parses with saphyr's event parser, assembling its events into a tree.
fn parse_with_saphyr(text: &str) -> Result<Vec<Node<'_>>, SyntaxError> {
    let mut docs = Vec::new();
    // Open containers: the node being built, and for maps a pending key.
    let mut stack: Vec<(Node, Option<Node>)> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut anchor_of: Vec<usize> = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| SyntaxError {
            mark: Mark {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let complete = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let node = Node {
                    value: Value::Scalar(text, quoted),
                    mark: mark(&span),
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => Some(anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                mark: mark(&span),
                message: "alias to an unknown anchor".into(),
            })?),
            Event::SequenceStart(anchor, _) => {
                anchor_of.push(anchor);
                stack.push((
                    Node {
                        value: Value::Seq(Vec::new()),
                        mark: mark(&span),
                    },
                    None,
                ));
                None
            }
            Event::MappingStart(anchor, _) => {
                anchor_of.push(anchor);
                stack.push((
                    Node {
                        value: Value::Map(Vec::new()),
                        mark: mark(&span),
                    },
                    None,
                ));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, _) = stack.pop().expect("parser balances containers");
                let anchor = anchor_of.pop().unwrap_or(0);
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::DocumentEnd => {
                anchors.clear();
                None
            }
            _ => None,
        };
        if let Some(node) = complete {
            match stack.last_mut() {
                None => docs.push(node),
                Some((parent, pending)) => match &mut parent.value {
                    Value::Seq(items) => items.push(node),
                    Value::Map(entries) => match pending.take() {
                        None => *pending = Some(node),
                        Some(key) => entries.push((key, node)),
                    },
                    Value::Scalar(..) => unreachable!("scalars hold no children"),
                },
            }
        }
    }
    // An empty document (`---` with nothing after it) arrives as a null scalar: drop those.
    docs.retain(|d| !d.is_null());
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_point_at_values() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - {c: d}\n---\ne: f\n").unwrap();
        assert_eq!(docs.len(), 2);
        let b = docs[0].get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!()
        };
        assert_eq!(items[1].get("c").unwrap().mark, Mark { line: 4, col: 9 });
        assert_eq!(docs[1].get("e").unwrap().as_str(), Some("f"));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse_documents("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.mark.line >= 1, "{err:?}");
    }

    #[test]
    fn aliases_resolve() {
        let docs = parse_documents("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(
            docs[0].get("b").unwrap().get("k").unwrap().as_str(),
            Some("v")
        );
    }
}
