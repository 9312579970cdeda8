//! Config flow, policy state: a file an auth policy reads (API keys, htpasswd, a JWKS or secret
//! file), parsed when the config is loaded and again whenever it changes. A file that breaks
//! later keeps the last good contents in use and is reported; the first load's error refuses the
//! config. The watch runs on the control runtime and stops with the last snapshot that uses it.

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Read again this often even without a file event (file systems that send none).
const REREAD: Duration = Duration::from_secs(30);

/// The parsed contents of a watched file.
pub(crate) struct Watched<T> {
    current: ArcSwap<T>,
    path: PathBuf,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and parses `path` now (its error refuses the config), then watches it.
    pub(crate) fn load(
        path: &Path,
        parse: fn(&Path, &str) -> Result<T, String>,
    ) -> Result<Arc<Self>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let w = Arc::new(Watched {
            current: ArcSwap::from_pointee(parse(path, &text)?),
            path: path.to_path_buf(),
            task: std::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&w);
        let task = crate::runtime::control().spawn(follow(weak, path.to_path_buf(), parse));
        *w.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(w)
    }

    /// The contents in force.
    pub(crate) fn get(&self) -> arc_swap::Guard<Arc<T>> {
        self.current.load()
    }

    /// The contents in force, to keep across an await.
    pub(crate) fn get_full(&self) -> Arc<T> {
        self.current.load_full()
    }
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

/// Reads the file again after each change (settled for `reload::DEBOUNCE`) until the watched
/// value is gone.
async fn follow<T: Send + Sync + 'static>(
    weak: Weak<Watched<T>>,
    path: PathBuf,
    parse: fn(&Path, &str) -> Result<T, String>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _watcher = crate::discovery::file::watch(&path, tx);
    let mut last = std::fs::read_to_string(&path).ok();
    loop {
        match tokio::time::timeout(REREAD, rx.recv()).await {
            Ok(None) => return,
            Ok(Some(())) => {
                while let Ok(Some(())) =
                    tokio::time::timeout(crate::reload::DEBOUNCE, rx.recv()).await
                {}
            }
            Err(_) => {}
        }
        let Some(w) = weak.upgrade() else { return };
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; keeping its last contents",
                    path.display()
                );
                continue;
            }
        };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        match parse(&path, &text) {
            Ok(v) => {
                w.current.store(Arc::new(v));
                tracing::info!("reloaded {}", w.path.display());
            }
            Err(e) => tracing::warn!("{e}; keeping the last good contents"),
        }
        last = Some(text);
    }
}
