//! The upload queue (bounded, deduplicated) and the record of what is already in the bucket.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

/// Capacity of the queue; producers wait for room (inotify then buffers, and overflows are
/// repaired by a rescan).
pub const CAPACITY: usize = 4096;

/// A bounded queue of paths to ship, holding each path at most once.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<PathBuf>,
    pending: Mutex<HashSet<PathBuf>>,
    closed: AtomicBool,
}

impl Queue {
    /// A queue and the receiving end for the dispatcher.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<PathBuf>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                pending: Mutex::default(),
                closed: AtomicBool::new(false),
            },
            rx,
        )
    }

    /// Queues `path` unless it is already waiting; waits for room.
    pub async fn push(&self, path: PathBuf) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if self.pending.lock().expect("poisoned").insert(path.clone()) {
            // The receiver lives as long as the agent; a send error means we are shutting down.
            let _ = self.tx.send(path).await;
        }
    }

    /// Marks `path` as taken by a worker, so that a later event queues it again.
    pub fn taken(&self, path: &Path) {
        self.pending.lock().expect("poisoned").remove(path);
    }

    /// Paths waiting.
    pub fn len(&self) -> usize {
        self.pending.lock().expect("poisoned").len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `path` waits.
    pub fn contains(&self, path: &Path) -> bool {
        self.pending.lock().expect("poisoned").contains(path)
    }

    /// Refuses new work (shutdown).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// The version of a file that is in the bucket: its size, and its mtime when we uploaded it
/// ourselves (a file found by listing is known by size only, as in the Python tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds), when known.
    pub mtime: Option<(i64, i64)>,
}

impl Version {
    /// The version of a file on disk.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime: Some((meta.mtime(), meta.mtime_nsec())),
        }
    }

    /// Whether a file at `disk` is the one recorded as `self` in the bucket.
    pub fn matches(&self, disk: &Version) -> bool {
        self.size == disk.size && (self.mtime.is_none() || self.mtime == disk.mtime)
    }
}

/// What is known to be in the bucket, by local path.
#[derive(Debug, Default)]
pub struct Shipped(Mutex<HashMap<PathBuf, Version>>);

impl Shipped {
    /// Records that `path` at `v` is in the bucket.
    pub fn insert(&self, path: PathBuf, v: Version) {
        self.0.lock().expect("poisoned").insert(path, v);
    }

    /// Whether `path` at `disk` is in the bucket.
    pub fn has(&self, path: &Path, disk: &Version) -> bool {
        self.0
            .lock()
            .expect("poisoned")
            .get(path)
            .is_some_and(|v| v.matches(disk))
    }

    /// Forgets `path` (deleted locally).
    pub fn remove(&self, path: &Path) {
        self.0.lock().expect("poisoned").remove(path);
    }

    /// Number of files recorded.
    pub fn len(&self) -> usize {
        self.0.lock().expect("poisoned").len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_path_waits_once() {
        let (q, mut rx) = Queue::new(8);
        q.push("/a".into()).await;
        q.push("/a".into()).await;
        q.push("/b".into()).await;
        assert_eq!(q.len(), 2);
        assert_eq!(rx.recv().await.unwrap(), PathBuf::from("/a"));
        q.taken(Path::new("/a"));
        q.push("/a".into()).await; // a new event while /a uploads queues it again
        assert_eq!(rx.recv().await.unwrap(), PathBuf::from("/b"));
        assert_eq!(rx.recv().await.unwrap(), PathBuf::from("/a"));
        q.close();
        q.push("/c".into()).await;
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn version_known_by_size_only_matches_any_mtime() {
        let listed = Version {
            size: 3,
            mtime: None,
        };
        assert!(listed.matches(&Version {
            size: 3,
            mtime: Some((1, 2))
        }));
        assert!(!listed.matches(&Version {
            size: 4,
            mtime: Some((1, 2))
        }));
        let ours = Version {
            size: 3,
            mtime: Some((1, 2)),
        };
        assert!(!ours.matches(&Version {
            size: 3,
            mtime: Some((1, 3))
        }));
    }
}
