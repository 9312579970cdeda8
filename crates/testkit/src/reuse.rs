//! Test fixture (config flow, reloads): which compiled rules a snapshot build took over from the
//! live snapshot, for the tests of diff-based reloads.

use gatehouse_gateway::snapshot::Snapshot;
use std::collections::HashMap;
use std::sync::Arc;

/// The routes of `new` whose compiled rules are not the ones of `old` (sorted), and how many
/// rules were taken over (the same `Arc`: not compiled again).
pub fn rebuilt_routes(old: &Snapshot, new: &Snapshot) -> (Vec<String>, usize) {
    let old_entries: HashMap<(String, usize), _> = (old.router.entries())
        .map(|e| ((e.route.to_string(), e.index), e.clone()))
        .collect();
    let (mut kept, mut rebuilt) = (0, Vec::new());
    for e in new.router.entries() {
        match old_entries.get(&(e.route.to_string(), e.index)) {
            Some(prev) if Arc::ptr_eq(prev, e) => kept += 1,
            _ => rebuilt.push(e.route.to_string()),
        }
    }
    rebuilt.sort();
    (rebuilt, kept)
}
