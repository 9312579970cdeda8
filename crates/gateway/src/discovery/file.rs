//! Discovery from a file (`discovery: {file: {path}}`): a YAML or JSON list written like a
//! backend's `endpoints`, read with the config crate's parser (so errors carry file:line:col) and
//! read again whenever it changes.
//!
//! A broken or missing file keeps the last good set in use and is reported once; fixing it reports
//! the set again.

use super::{Discovered, Reporter, Sink};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Editors write a file in several steps (truncate, write, rename): changes closer together than
/// this are read once. The same value as the config watcher.
const DEBOUNCE: Duration = crate::reload::DEBOUNCE;

/// The file is read again this often even without an event: a safety net for file systems that
/// send none (network mounts, some container volumes).
const REREAD: Duration = Duration::from_secs(30);

/// How often the file is read when it cannot be watched at all.
const POLL: Duration = Duration::from_secs(1);

/// Runs until aborted: reads `path`, reports, waits for a change.
pub(crate) async fn run(path: PathBuf, sink: Arc<dyn Sink>) {
    let mut reporter = Reporter::new(sink);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = watch(&path, tx);
    let wait = if watcher.is_some() { REREAD } else { POLL };
    loop {
        read(&path, &mut reporter).await;
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(None) => return,
            Ok(Some(())) => loop {
                // Settle: read once no event arrived for DEBOUNCE.
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            },
            Err(_) => {}
        }
    }
}

async fn read(path: &Path, reporter: &mut Reporter) {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => return reporter.failed(format!("cannot read {}: {e}", path.display())),
    };
    match gatehouse_config::parse_endpoints_file(&path.display().to_string(), &text) {
        Ok(list) => reporter.update(
            list.into_iter()
                .map(|(address, weight)| Discovered { address, weight })
                .collect(),
        ),
        Err(errors) => reporter.failed(errors.to_string()),
    }
}

/// Watches the file's folder (editors replace files by renaming, which a watch on the file itself
/// would lose) and sends a tick for each event about the file. `None` when watching is unavailable.
pub(crate) fn watch(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let name = path.file_name()?.to_os_string();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        let ours = !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| p.file_name() == Some(&name));
        if ours {
            let _ = tx.send(());
        }
    };
    let mut watcher = notify::recommended_watcher(handler)
        .map_err(|e| tracing::warn!("cannot watch {}: {e}; polling it", path.display()))
        .ok()?;
    watcher
        .watch(&folder, RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!("cannot watch {}: {e}; polling it", folder.display()))
        .ok()?;
    Some(watcher)
}
