//! Developer portal, changelog: the public-API diff (`gatehouse_contract::diff`) of each of the
//! last reloads, kept in memory by the control plane. A reload computes it off the request path,
//! beside building the new snapshot.

use std::collections::VecDeque;

/// How many reloads the changelog remembers.
pub(crate) const KEEP: usize = 20;

/// One reload's changes.
#[derive(Clone)]
pub(crate) struct Entry {
    /// When, RFC 3339.
    pub at: String,
    /// Config version before.
    pub from: String,
    /// Config version after.
    pub to: String,
    /// Changes, breaking first (as the diff orders them).
    pub changes: Vec<Row>,
}

/// One change, as text.
#[derive(Clone)]
pub(crate) struct Row {
    /// `breaking`, `non-breaking` or `informational`.
    pub class: String,
    pub operation: String,
    pub reason: String,
}

/// The last [`KEEP`] entries, newest first.
#[derive(Default)]
pub(crate) struct Changelog(VecDeque<Entry>);

impl Changelog {
    /// The entry for a reload from `old` to `new`. Reloads that leave the files as they were
    /// (same version: a touch, a SIGHUP) are not worth one.
    pub(crate) fn entry(
        old: &gatehouse_config::Config,
        new: &gatehouse_config::Config,
    ) -> Option<Entry> {
        if old.version == new.version {
            return None;
        }
        let report = gatehouse_contract::diff(old, new);
        let changes = report
            .changes
            .iter()
            .map(|c| Row {
                class: c.class.to_string(),
                operation: c.operation.clone(),
                reason: c.reason.clone(),
            })
            .collect();
        Some(Entry {
            at: crate::gateway::now(),
            from: old.version.clone(),
            to: new.version.clone(),
            changes,
        })
    }

    /// Keeps `entry` as the newest, forgetting the oldest past [`KEEP`]. Called once the reload
    /// it describes has been swapped in.
    pub(crate) fn push(&mut self, entry: Entry) {
        self.0.push_front(entry);
        self.0.truncate(KEEP);
    }

    /// The entries, newest first, with `pending` (a reload being applied) in front.
    pub(crate) fn entries(&self, pending: Option<&Entry>) -> Vec<Entry> {
        pending
            .into_iter()
            .chain(self.0.iter())
            .take(KEEP)
            .cloned()
            .collect()
    }
}
