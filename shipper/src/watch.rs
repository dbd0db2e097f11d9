//! Wake-ups for the tailer: delivery reports from librdkafka, and file-system change hints from
//! inotify (through `notify`).
//!
//! The hints only make the tailer look sooner — a new file is found at once instead of at the
//! next scan, and new bytes are read without waiting for the poll interval. They are never the
//! source of truth: events can be lost (inotify queue overflow, a directory created later, a
//! file system without inotify), so the periodic rescan and the polling of open files stay, and
//! a watcher that cannot start only costs latency.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::kafka::Report;

/// Why the tailer's loop woke up.
#[derive(Debug)]
pub enum Wake {
    /// A delivery report.
    Delivery(Report),
    /// Something changed in a watched directory; `rescan` when files may have appeared,
    /// disappeared or been renamed (not just written to).
    Files {
        /// Whether the globs should be expanded again now.
        rescan: bool,
    },
}

/// Watches the directories of the input globs while it lives.
#[derive(Debug)]
pub struct Watcher {
    _inner: Option<notify::RecommendedWatcher>,
    /// The directories watched.
    pub dirs: Vec<PathBuf>,
    /// Set when a data hint was sent and the tailer has not read since: a file nginx writes a
    /// line at a time sends one hint per read, not one per line.
    data_hinted: Arc<AtomicBool>,
}

impl Watcher {
    /// Called as the tailer starts reading: the next write sends a hint again.
    pub fn rearm(&self) {
        self.data_hinted.store(false, Ordering::SeqCst);
    }
}

/// Starts watching the directories that hold the files matched by `patterns` (glob strings).
/// Directories that do not exist, or a watcher that cannot start, are logged and skipped.
pub fn watch<'a>(patterns: impl IntoIterator<Item = &'a str>, wake: Sender<Wake>) -> Watcher {
    let mut dirs: Vec<PathBuf> = patterns.into_iter().map(static_dir).collect();
    dirs.sort();
    dirs.dedup();
    let data_hinted = Arc::new(AtomicBool::new(false));
    let hinted = Arc::clone(&data_hinted);
    let handler = move |event: notify::Result<notify::Event>| {
        let rescan = match event {
            Ok(event) => !matches!(
                event.kind,
                EventKind::Modify(notify::event::ModifyKind::Data(_)) | EventKind::Access(_)
            ),
            // An overflowed queue or a watch error: look at everything again.
            Err(_) => true,
        };
        if rescan || !hinted.swap(true, Ordering::SeqCst) {
            // The receiver is gone only when the tailer stops.
            let _ = wake.send(Wake::Files { rescan });
        }
    };
    let mut inner = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(error) => {
            tracing::warn!(%error, "no file-system notifications; relying on scans and polling");
            return Watcher {
                _inner: None,
                dirs: Vec::new(),
                data_hinted,
            };
        }
    };
    dirs.retain(|dir| match inner.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => true,
        Err(error) => {
            tracing::info!(dir = %dir.display(), %error,
                "not watching this directory; files in it are found by the periodic scan");
            false
        }
    });
    tracing::debug!(?dirs, "watching for file-system changes");
    Watcher {
        _inner: Some(inner),
        dirs,
        data_hinted,
    }
}

/// The directory part of a glob before its first wildcard component:
/// `/var/log/nginx/tracker*.log` → `/var/log/nginx`, `/logs/*/access.log` → `/logs`.
fn static_dir(pattern: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    let path = Path::new(pattern);
    let components: Vec<_> = path.components().collect();
    for (i, component) in components.iter().enumerate() {
        let text = component.as_os_str().to_string_lossy();
        if i == components.len() - 1 || text.contains(['*', '?', '[', '{']) {
            break;
        }
        dir.push(component);
    }
    if dir.as_os_str().is_empty() {
        dir.push(".");
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn static_dir_stops_at_the_first_wildcard() {
        assert_eq!(
            static_dir("/var/log/nginx/tracker*.log"),
            Path::new("/var/log/nginx")
        );
        assert_eq!(static_dir("/logs/*/access.log"), Path::new("/logs"));
        assert_eq!(static_dir("/logs/app[0-9]/a.log"), Path::new("/logs"));
        assert_eq!(static_dir("access.log"), Path::new("."));
        assert_eq!(static_dir("/a/b/c.log"), Path::new("/a/b"));
    }

    #[test]
    fn a_new_file_wakes_with_a_rescan() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}/*.log", dir.path().display());
        let (tx, rx) = mpsc::channel();
        let watcher = watch([pattern.as_str()], tx);
        assert_eq!(watcher.dirs, [dir.path()]);
        std::fs::write(dir.path().join("a.log"), "line\n").unwrap();
        let mut rescan = false;
        while let Ok(Wake::Files { rescan: r }) = rx.recv_timeout(Duration::from_secs(5)) {
            rescan |= r;
            if rescan {
                break;
            }
        }
        assert!(rescan, "no rescan hint for a created file");
    }

    #[test]
    fn writes_send_one_data_hint_until_the_tailer_reads() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "").unwrap();
        let pattern = format!("{}/*.log", dir.path().display());
        let (tx, rx) = mpsc::channel();
        let watcher = watch([pattern.as_str()], tx);
        let data_hints = |rx: &mpsc::Receiver<Wake>| {
            std::iter::from_fn(|| rx.recv_timeout(Duration::from_millis(500)).ok())
                .filter(|wake| matches!(wake, Wake::Files { rescan: false }))
                .count()
        };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for _ in 0..50 {
            file.write_all(b"line\n").unwrap();
        }
        assert_eq!(data_hints(&rx), 1, "50 writes before a read: one hint");
        watcher.rearm();
        file.write_all(b"line\n").unwrap();
        assert_eq!(data_hints(&rx), 1, "a write after the read: a hint again");
    }

    #[test]
    fn a_missing_directory_is_skipped() {
        let (tx, _rx) = mpsc::channel();
        let watcher = watch(["/nonexistent-plowline-dir/*.log"], tx);
        assert!(watcher.dirs.is_empty());
    }
}
