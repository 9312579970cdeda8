//! Config flow, beside the listeners: watches an HTTPS listener's certificate and key files and
//! calls back once their folder has settled, so renewed certificates (certbot, cert-manager) are
//! served without a config reload or a restart.

use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc;

/// A renewal writes the certificate and the key one after the other (and editors truncate, write,
/// rename): the files are read once no event arrived for this long, so the usual rotation is one
/// reload, not a failed one in between. The same value as the config watcher.
const DEBOUNCE: std::time::Duration = crate::reload::DEBOUNCE;

/// Watches the folders of `files` and runs `reload` on a thread of its own after each settled
/// burst of changes. The folders are watched rather than the files: editors and Kubernetes
/// secret volumes replace files by renaming (a `..data` symlink swap), which a watch on the file
/// would lose; any change in the folder is a reason to read the files again, which is cheap.
/// The thread ends when the returned watcher is dropped. `None` (logged) where watching is
/// unavailable: the certificates are then read again only by a config reload.
pub(crate) fn watch(
    files: impl IntoIterator<Item = PathBuf>,
    mut reload: impl FnMut() + Send + 'static,
) -> Option<notify::RecommendedWatcher> {
    let folders: BTreeSet<PathBuf> = files
        .into_iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    let (tx, rx) = mpsc::channel::<()>();
    let handler = move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|ev| !matches!(ev.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    };
    let mut watcher = notify::recommended_watcher(handler)
        .map_err(|e| tracing::warn!("cannot watch certificate files: {e}"))
        .ok()?;
    for folder in &folders {
        if let Err(e) = watcher.watch(folder, RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch {}: {e}", folder.display());
            return None;
        }
    }
    let spawned = std::thread::Builder::new()
        .name("gatehouse-tls-watch".into())
        .spawn(move || {
            // Ends when the watcher, and with it the sender, is dropped.
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(DEBOUNCE) {
                        Ok(()) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                reload();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the certificate watch: {e}");
        return None;
    }
    Some(watcher)
}
