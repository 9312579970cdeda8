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
/// How often the file is read when it cannot be watched at all.
const POLL: Duration = Duration::from_secs(1);

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
        // Watched from here, before the task runs: a change made right after loading is seen.
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = crate::discovery::file::watch(path, tx);
        let weak = Arc::downgrade(&w);
        let follow = follow(weak, (watcher, rx), path.to_path_buf(), text, parse);
        let task = crate::runtime::control().spawn(follow);
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
    (watcher, mut rx): (
        Option<notify::RecommendedWatcher>,
        mpsc::UnboundedReceiver<()>,
    ),
    path: PathBuf,
    first: String,
    parse: fn(&Path, &str) -> Result<T, String>,
) {
    let mut last = Some(first);
    loop {
        if watcher.is_some() {
            if let Ok(Some(())) = tokio::time::timeout(REREAD, rx.recv()).await {
                // Settle: read once no event arrived for DEBOUNCE.
                while let Ok(Some(())) =
                    tokio::time::timeout(crate::reload::DEBOUNCE, rx.recv()).await
                {}
            }
        } else {
            tokio::time::sleep(POLL).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(_: &Path, text: &str) -> Result<String, String> {
        match text.starts_with("bad") {
            true => Err("bad contents".into()),
            false => Ok(text.to_string()),
        }
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let w = Watched::load(&path, parse).unwrap();
        assert_eq!(**w.get(), "one");
        let tmp = dir.path().join("f.tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        gatehouse_testkit::wait_for("the new contents", || {
            std::future::ready(**w.get() == "two")
        })
        .await;
        // A broken file, then a good one: the good one is read, the broken one never served.
        std::fs::write(&tmp, "bad").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        std::fs::write(&tmp, "three").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        gatehouse_testkit::wait_for("the contents after the broken ones", || {
            let now = w.get();
            assert_ne!(**now, "bad");
            std::future::ready(**now == "three")
        })
        .await;
    }
}
