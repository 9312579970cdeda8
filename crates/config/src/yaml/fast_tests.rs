//! Differential tests of the fast reader: wherever it accepts a text, its tree (values, order,
//! marks) must equal the one built from saphyr's events.

use super::{fast, parse_with_saphyr, Node, Value};

/// The fast reader's answer, checked against saphyr's; whether it accepted the text.
fn same_as_saphyr(text: &str) -> bool {
    let Some(fast) = fast::parse(text) else {
        return false;
    };
    let mut slow = parse_with_saphyr(text)
        .unwrap_or_else(|e| panic!("fast reader accepted what saphyr rejects ({e:?}):\n{text}"));
    slow.retain(|d| !d.is_null());
    assert_eq!(fast, slow, "trees differ for:\n{text}");
    true
}

/// Texts the subset covers: each must be accepted and read exactly as saphyr does.
const ACCEPTED: &[&str] = &[
    "a: 1\n",
    "a: 1\nb: two words  # comment\n",
    "# head\n\na:\n  b: c\n  d:\n    - x\n    - y\ne: f\n",
    "a:\n- x\n- y\nb: z\n",
    "- a\n- b: 1\n  c: 2\n- [x, y]\n",
    "-   a: 1\n    b: 2\n-\n  c: 3\n",
    "a: {b: c, d: [1, 2, {e: f}], 'g h': \"i j\"}\n",
    "a: []\nb: {}\nc: [ ]\n",
    "a: 'it''s'\nb: \"x # not a comment\"\nc: x#y\n",
    "url: http://example.com:8080/x\nflow: {u: http://e.com/a, v: a:b}\n",
    "a: -1\nb: -x\nc: 1.5e3\nd: ~\ne: null\n",
    "---\na: 1\n---\nb: 2\n",
    "---\n---\na: 1\n--- # c\nb: 2\n",
    "a: 1\n---\n\n# only a comment\n",
    "plain scalar document\n",
    "\"quoted\": key\n'single': key\n",
    "a:\n  - b:\n      c: d\n    e: f\n  - g\n",
    "key with spaces: value with spaces\n",
    "a: \u{e9}t\u{e9}\nb: {\u{e9}: [\u{e0}, x]}\n",
    "metadata: {name: r1}\nspec:\n  hosts: [\"api.example.com\"]\n  rules:\n    - match: {path: {prefix: \"/svc1\"}}\n      backends: [{backend: up}]\n",
    "  indented: root\n  next: 1\n",
];

/// Texts outside the subset (or invalid): the fast reader must leave them to saphyr.
const DECLINED: &[&str] = &[
    "a: &x 1\nb: *x\n",
    "a: !!str 1\n",
    "a: |\n  text\n",
    "a: >\n  text\n",
    "a: multi\n  line\n",
    "a:\nb: 1\n",
    "a: \"esc\\n\"\n",
    "a: \"two\n  lines\"\n",
    "a: [1, 2,\n  3]\n",
    "a: [1, 2,]\n",
    "a:\tb\n",
    "a: 1\r\n",
    "? complex\n: key\n",
    "a: [b: c]\n",
    "{a: }\n",
    "a: b: c\n",
    "a: 1\n  b: 2\n",
    "- - x\n",
    "-\n- x\n",
    "a: [1, 2\nb: c\n",
    "%YAML 1.2\n---\na: 1\n",
    "--- {a: 1}\n",
    "a: 1\n...\n",
    "a: @x\n",
    "a: 'open\n",
    "{\n  \"json\": 1\n}\n",
];

#[test]
fn subset_texts_read_as_saphyr_reads_them() {
    for text in ACCEPTED {
        assert!(same_as_saphyr(text), "fast reader declined:\n{text}");
    }
}

#[test]
fn texts_outside_the_subset_are_left_to_saphyr() {
    for text in DECLINED {
        assert!(fast::parse(text).is_none(), "fast reader accepted:\n{text}");
    }
}

#[test]
fn the_repository_manifests_read_as_saphyr_reads_them() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let mut accepted = 0;
    let mut files = vec![std::path::PathBuf::from(root).join("quickstart.yaml")];
    let mut dirs = vec![std::path::PathBuf::from(root).join("tests/golden")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if crate::loader::is_manifest_file(&p) {
                files.push(p);
            }
        }
    }
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        accepted += usize::from(same_as_saphyr(&text));
    }
    // Most manifests are in the subset: a reader that declines everything fails here.
    assert!(accepted * 2 > files.len(), "{accepted} of {}", files.len());
}

/// A bench-like route manifest (bench/scale.py's shapes), read by the fast reader.
#[test]
fn generated_route_manifests_take_the_fast_reader() {
    let mut text = String::from("apiVersion: gatehouse.dev/v1alpha1\nkind: Backend\n");
    text.push_str("metadata: {name: up}\nspec: {endpoints: [\"127.0.0.1:1\"]}\n");
    for i in 0..200 {
        let (kind, path) = if i % 20 == 7 {
            ("regex", format!("/re{i}/[0-9]+"))
        } else {
            ("prefix", format!("/svc{i}"))
        };
        text.push_str(&format!(
            "---\napiVersion: gatehouse.dev/v1alpha1\nkind: Route\nmetadata: {{name: r{i}}}\n\
             spec:\n  hosts: [\"h{i}.example.com\"]\n  rules:\n    - match: {{path: {{{kind}: \"{path}\"}}}}\n      \
             backends: [{{backend: up}}]\n"
        ));
    }
    assert!(same_as_saphyr(&text));
}

/// Random trees written in block and flow style, with comments and blank lines: whatever the
/// fast reader accepts, it reads as saphyr does.
#[test]
fn random_documents_read_as_saphyr_reads_them() {
    let mut rng = fastrand_like(0x5eed);
    let mut accepted = 0;
    for _ in 0..3000 {
        let node = random_node(&mut rng, 0);
        let mut text = String::new();
        write_block(&node, 0, &mut text, &mut rng);
        accepted += usize::from(same_as_saphyr(&text));
    }
    assert!(accepted > 1000, "only {accepted} accepted");
}

/// A small xorshift generator (the crate has no random-number dependency).
fn fastrand_like(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut s = seed;
    move |n| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s % n
    }
}

const WORDS: &[&str] = &[
    "a",
    "b c",
    "x:y",
    "http://h:1/p",
    "-1",
    "1.5",
    "~",
    "null",
    "it's",
    "# no",
    "a #b",
    "{x}",
    "[y]",
    "k: v",
    "\u{e9}t\u{e9}",
    "",
    " lead",
    "trail ",
    "\"q\"",
    "a,b",
    "--",
    "?x",
    "&a",
];

fn random_node(rng: &mut dyn FnMut(u64) -> u64, depth: u32) -> Value<'static> {
    match if depth > 3 { 0 } else { rng(4) } {
        0 | 1 => Value::Scalar(WORDS[rng(WORDS.len() as u64) as usize].into(), rng(3) == 0),
        2 => Value::Seq(
            (0..rng(4))
                .map(|_| node(random_node(rng, depth + 1)))
                .collect(),
        ),
        _ => Value::Map(
            (0..1 + rng(3))
                .map(|i| {
                    let k = Value::Scalar(
                        format!("k{i}{}", WORDS[rng(6) as usize]).into(),
                        rng(4) == 0,
                    );
                    (node(k), node(random_node(rng, depth + 1)))
                })
                .collect(),
        ),
    }
}

fn node(value: Value<'static>) -> Node<'static> {
    Node {
        value,
        mark: Default::default(),
    }
}

fn scalar(s: &str, quoted: bool, out: &mut String) {
    if quoted {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        out.push_str(s);
    }
}

fn write_flow(v: &Value, out: &mut String) {
    match v {
        Value::Scalar(s, q) => scalar(s, *q, out),
        Value::Seq(items) => {
            out.push('[');
            for (i, n) in items.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { "" });
                write_flow(&n.value, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, n)) in entries.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { "" });
                write_flow(&k.value, out);
                out.push_str(": ");
                write_flow(&n.value, out);
            }
            out.push('}');
        }
    }
}

fn write_block(v: &Value, indent: usize, out: &mut String, rng: &mut dyn FnMut(u64) -> u64) {
    let pad = " ".repeat(indent);
    let nested = |n: &Node, out: &mut String, rng: &mut dyn FnMut(u64) -> u64| match &n.value {
        Value::Scalar(..) => {
            out.push(' ');
            write_flow(&n.value, out);
            out.push_str(if rng(5) == 0 { "  # c\n" } else { "\n" });
        }
        _ if rng(3) == 0 => {
            out.push(' ');
            write_flow(&n.value, out);
            out.push('\n');
        }
        other => {
            out.push_str(if rng(6) == 0 { "\n\n# c\n" } else { "\n" });
            write_block(other, indent + 2, out, rng);
        }
    };
    match v {
        Value::Seq(items) if !items.is_empty() => {
            for n in items {
                out.push_str(&pad);
                out.push('-');
                nested(n, out, rng);
            }
        }
        Value::Map(entries) if !entries.is_empty() => {
            for (k, n) in entries {
                out.push_str(&pad);
                write_flow(&k.value, out);
                out.push(':');
                nested(n, out, rng);
            }
        }
        other => {
            out.push_str(&pad);
            write_flow(other, out);
            out.push('\n');
        }
    }
}

/// Every document `for_each_document` hands over, collected.
fn streamed(text: &str) -> Result<Vec<Node<'_>>, super::SyntaxError> {
    let mut docs = Vec::new();
    super::for_each_document(text, |d| docs.push(d))?;
    Ok(docs)
}

/// Streaming gives the documents `parse_documents` returns, in order: on the fast path, where
/// the fast reader gives up part-way (the documents before it are not given twice), where it
/// declines the whole text, and for every text of the differential lists.
#[test]
fn streamed_documents_are_the_parsed_ones() {
    let part_way = "a: 1\n---\nb: 2\n---\nc: &x 3\nd: *x\n---\ne: 4\n";
    assert!(fast::parse(part_way).is_none());
    let docs = streamed(part_way).unwrap();
    let keys: Vec<&str> = docs
        .iter()
        .map(|d| match &d.value {
            Value::Map(e) => e[0].0.as_str().unwrap(),
            _ => panic!("{d:?}"),
        })
        .collect();
    assert_eq!(keys, ["a", "b", "c", "e"]);
    for text in ACCEPTED
        .iter()
        .chain(DECLINED)
        .chain([&part_way, &"a:\tb\n---\nc: d\n"])
    {
        match (streamed(text), super::parse_documents(text)) {
            (Ok(s), Ok(p)) => assert_eq!(s, p, "for:\n{text}"),
            (Err(s), Err(p)) => assert_eq!((s.mark, s.message), (p.mark, p.message)),
            (s, p) => panic!("streamed {s:?}, parsed {p:?}, for:\n{text}"),
        }
    }
}

/// A syntax error after documents the fast reader gave is still the error saphyr reports.
#[test]
fn a_syntax_error_late_in_a_stream_is_reported() {
    let text = "a: 1\n---\nb: [1, 2\nc: d\n";
    let err = streamed(text).unwrap_err();
    let parsed = super::parse_documents(text).unwrap_err();
    assert_eq!((err.mark, err.message), (parsed.mark, parsed.message));
}
