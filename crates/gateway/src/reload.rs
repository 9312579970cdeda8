//! Config flow, step 0: what triggers a reload — file changes (debounced), SIGHUP — and SIGTERM
//! or SIGINT, which drain (a second one exits at once). The admin trigger lives in `admin.rs`.

use crate::gateway::{ConfigSource, Gateway};
use notify::{RecursiveMode, Watcher};
use std::sync::Arc;
use std::time::Duration;

/// Editors write files in several steps; changes closer together than this make one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches the config path and reloads after changes settle. Returns the watcher, which must be
/// kept alive for as long as watching should go on.
pub fn watch_files(gw: Arc<Gateway>, source: &ConfigSource) -> Option<notify::RecommendedWatcher> {
    let ConfigSource::Path(path) = source else {
        return None;
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let single_file = path.is_file().then(|| path.clone());
    let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let relevant = !matches!(ev.kind, notify::EventKind::Access(_))
                && ev
                    .paths
                    .iter()
                    .any(|p| is_manifest(p, single_file.as_deref()));
            if relevant {
                let _ = tx.send(());
            }
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("file watching unavailable ({e}); use SIGHUP or POST /reload");
            return None;
        }
    };
    // Watching the parent of a single file catches editors that replace the file by renaming.
    let target = if path.is_file() {
        path.parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| path.clone())
    } else {
        path.clone()
    };
    let mode = if path.is_file() {
        RecursiveMode::NonRecursive
    } else {
        RecursiveMode::Recursive
    };
    if let Err(e) = watcher.watch(&target, mode) {
        tracing::warn!(
            "cannot watch {}: {e}; use SIGHUP or POST /reload",
            target.display()
        );
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event arrived for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = gw.reload("file").await;
        }
    });
    Some(watcher)
}

/// Whether a changed path can affect the config: the config file itself, or any manifest
/// (`*.yaml`, `*.yml`, `*.json`, not hidden) under a config directory. Other files in the same
/// directory — an access log, an editor's swap file — must not trigger reloads.
fn is_manifest(changed: &std::path::Path, single_file: Option<&std::path::Path>) -> bool {
    if let Some(file) = single_file {
        return changed.file_name() == file.file_name();
    }
    let hidden = changed
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && gatehouse_config::is_manifest_file(changed)
}

/// The process's signal handlers. Installed before the gateway announces it is listening: until a
/// handler exists, SIGTERM and SIGHUP keep their default action, which kills the process.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP.
    pub fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: Some(signal(SignalKind::hangup())?),
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Reloads `gw` on every SIGHUP, in the background.
    pub fn reload_on_sighup(&mut self, gw: Arc<Gateway>) {
        #[cfg(unix)]
        if let Some(mut hup) = self.hup.take() {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = gw.reload("signal").await;
                }
            });
        }
    }

    /// Resolves on SIGTERM or SIGINT, with the signal's name.
    pub async fn terminated(&mut self) -> &'static str {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_manifest;
    use std::path::Path;

    #[test]
    fn only_manifest_changes_trigger_reloads() {
        assert!(is_manifest(Path::new("/c/routes/a.yaml"), None));
        assert!(is_manifest(Path::new("/c/routes/a.YAML"), None));
        assert!(is_manifest(Path::new("/c/b.json"), None));
        assert!(!is_manifest(Path::new("/c/access.log"), None));
        assert!(!is_manifest(Path::new("/c/.a.yaml.swp"), None));
        assert!(!is_manifest(Path::new("/c/.config.yaml.tmp"), None));
        let file = Some(Path::new("/c/gatehouse.yaml"));
        assert!(is_manifest(Path::new("/c/gatehouse.yaml"), file));
        assert!(!is_manifest(Path::new("/c/other.yaml"), file));
        assert!(!is_manifest(Path::new("/c/access.log"), file));
    }
}
