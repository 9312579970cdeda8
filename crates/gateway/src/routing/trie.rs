//! Route lookup, path step: a segment trie of one host class's prefix rules, so finding the
//! longest matching prefix costs one hash probe per path segment, whatever the number of rules.

use std::collections::HashMap;

/// A node: the rules whose prefix ends here, and the next segments.
struct Node {
    /// Parent node; the root is its own parent and is never holding rules.
    parent: u32,
    /// Children by segment text.
    children: HashMap<Box<str>, u32>,
    /// Indices of the rules (into the host table) ending here, in precedence order.
    rules: Vec<u32>,
}

/// Prefix rules of one host class, by segments (`/v1/tasks` is `""`, `"v1"`, `"tasks"`).
///
/// A prefix `p` matches a path when the path is `p` or starts with `p/`, which is exactly "the
/// segments of `p` are the first segments of the path": the trie walk is the segment-aware
/// comparison, and a deeper node is a longer prefix, so walking back up from the deepest node
/// visits matching prefixes longest first, the documented order.
pub(crate) struct PrefixTrie {
    nodes: Vec<Node>,
}

impl PrefixTrie {
    /// An empty trie; it allocates nothing until a first prefix (most host classes at scale
    /// have none beside `/`).
    pub(crate) fn new() -> Self {
        PrefixTrie { nodes: Vec::new() }
    }

    /// Makes room for `prefixes` prefixes in an empty trie: every prefix starts with `/`, so
    /// its first segment is the empty one, and the node of that segment is the parent of up to
    /// `prefixes` children. Made now at that size, 10,000 flat prefixes such as `/svc1`, `/svc2`
    /// neither grow the node list nor rehash that node's children 14 times (`shrink` gives back
    /// what deeper prefixes leave unused).
    pub(crate) fn reserve(&mut self, prefixes: usize) {
        if prefixes == 0 || !self.nodes.is_empty() {
            return;
        }
        self.nodes.reserve(prefixes + 2);
        self.nodes.push(Node {
            parent: 0,
            children: HashMap::from_iter([("".into(), 1)]),
            rules: Vec::new(),
        });
        self.nodes.push(Node {
            parent: 0,
            children: HashMap::with_capacity(prefixes),
            rules: Vec::new(),
        });
    }

    /// Adds rule `index` under `prefix`; callers add rules in precedence order.
    pub(crate) fn insert(&mut self, prefix: &str, index: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node {
                parent: 0,
                children: HashMap::new(),
                rules: Vec::new(),
            });
        }
        let mut at = 0u32;
        for seg in prefix.split('/') {
            let next = self.nodes.len() as u32;
            let child = *self.nodes[at as usize]
                .children
                .entry(seg.into())
                .or_insert(next);
            if child == next {
                self.nodes.push(Node {
                    parent: at,
                    children: HashMap::new(),
                    rules: Vec::new(),
                });
            }
            at = child;
        }
        let rules = &mut self.nodes[at as usize].rules;
        // Most prefixes end in a node of their own: one slot, nothing for `shrink` to give back.
        if rules.capacity() == 0 {
            rules.reserve_exact(1);
        }
        rules.push(index);
    }

    /// Drops spare capacity after building: tables live as long as their snapshot.
    pub(crate) fn shrink(&mut self) {
        self.nodes.shrink_to_fit();
        for n in &mut self.nodes {
            n.children.shrink_to_fit();
            n.rules.shrink_to_fit();
        }
    }

    /// The first rule, longest prefix first, for which `accept` holds.
    pub(crate) fn find(&self, path: &str, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        // No prefix: no nodes (or, never after an insert, the root alone).
        if self.nodes.len() <= 1 {
            return None;
        }
        let mut at = 0u32;
        for seg in path.split('/') {
            match self.nodes[at as usize].children.get(seg) {
                Some(&child) => at = child,
                None => break,
            }
        }
        while at != 0 {
            let node = &self.nodes[at as usize];
            if let Some(&i) = node.rules.iter().find(|&&i| accept(i)) {
                return Some(i);
            }
            at = node.parent;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(prefixes: &[&str]) -> PrefixTrie {
        let mut t = PrefixTrie::new();
        for (i, p) in prefixes.iter().enumerate() {
            t.insert(p, i as u32);
        }
        t
    }

    /// As a table builds it: room made for the prefixes first, spare room given back after.
    fn reserved(prefixes: &[&str]) -> PrefixTrie {
        let mut t = PrefixTrie::new();
        t.reserve(prefixes.len());
        for (i, p) in prefixes.iter().enumerate() {
            t.insert(p, i as u32);
        }
        t.shrink();
        t
    }

    #[test]
    fn a_reserved_trie_finds_what_a_grown_one_does() {
        let prefixes = ["/v1/tasks", "/v1", "/v2", "/v1", "/a//b"];
        let (grown, reserved) = (trie(&prefixes), reserved(&prefixes));
        for path in [
            "/v1/tasks/7",
            "/v1",
            "/v10",
            "/v2/x",
            "/a//b/c",
            "/a/b",
            "*",
            "/",
        ] {
            for skip in [None, Some(0), Some(1)] {
                let accept = |i: u32| Some(i) != skip;
                assert_eq!(
                    grown.find(path, accept),
                    reserved.find(path, accept),
                    "{path}"
                );
            }
        }
        assert_eq!(reserved.find("/v1/x", |_| true), Some(1));
        assert_eq!(reserved.find("/v1/x", |i| i != 1), Some(3));
        assert_eq!(PrefixTrie::new().find("/v1", |_| true), None);
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let t = trie(&["/v1", "/v1/tasks", "/v2"]);
        assert_eq!(t.find("/v1/tasks/7", |_| true), Some(1));
        assert_eq!(t.find("/v1/tasks", |_| true), Some(1));
        assert_eq!(t.find("/v1/tasks7", |_| true), Some(0));
        assert_eq!(t.find("/v10", |_| true), None);
        assert_eq!(t.find("/v1/tasks/7", |i| i != 1), Some(0));
        assert_eq!(t.find("*", |_| true), None);
    }

    #[test]
    fn empty_segments_are_segments() {
        let t = trie(&["/a//b"]);
        assert_eq!(t.find("/a//b/c", |_| true), Some(0));
        assert_eq!(t.find("/a/b", |_| true), None);
    }
}
