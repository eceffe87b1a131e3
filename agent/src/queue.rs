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

/// A unit of work for the uploader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// Ship this file (generic mode).
    File(PathBuf),
    /// Look at this directory and ship what is ready in it (cassandra mode).
    Dir(PathBuf),
}

impl Work {
    /// The path the work is about.
    pub fn path(&self) -> &Path {
        match self {
            Work::File(p) | Work::Dir(p) => p,
        }
    }
}

impl From<PathBuf> for Work {
    fn from(p: PathBuf) -> Self {
        Work::File(p)
    }
}

/// A bounded queue of work, holding each unit at most once.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<Work>,
    pending: Mutex<HashSet<Work>>,
    closed: AtomicBool,
}

impl Queue {
    /// A queue and the receiving end for the dispatcher.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Work>) {
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

    /// Queues `work` unless it is already waiting; waits for room.
    pub async fn push(&self, work: impl Into<Work>) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let work = work.into();
        if self.pending.lock().expect("poisoned").insert(work.clone()) {
            // The receiver lives as long as the agent; a send error means we are shutting down.
            let _ = self.tx.send(work).await;
        }
    }

    /// Marks `work` as taken by a worker, so that a later event queues it again.
    pub fn taken(&self, work: &Work) {
        self.pending.lock().expect("poisoned").remove(work);
    }

    /// Paths waiting.
    pub fn len(&self) -> usize {
        self.pending.lock().expect("poisoned").len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `work` waits.
    pub fn contains(&self, work: &Work) -> bool {
        self.pending.lock().expect("poisoned").contains(work)
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

/// What is known to be in the bucket, by local path: the version shipped, and the object's ETag
/// when it was found by listing.
#[derive(Debug, Default)]
pub struct Shipped(Mutex<HashMap<PathBuf, (Version, Option<String>)>>);

impl Shipped {
    /// Records that `path` at `v` is in the bucket (we uploaded it).
    pub fn insert(&self, path: PathBuf, v: Version) {
        self.0.lock().expect("poisoned").insert(path, (v, None));
    }

    /// Records an object found by listing: known by size (and ETag) only. An exact record of our
    /// own is not replaced.
    pub fn insert_listed(&self, path: PathBuf, size: u64, etag: Option<String>) {
        let mut m = self.0.lock().expect("poisoned");
        match m.get(&path) {
            Some((v, _)) if v.mtime.is_some() && v.size == size => {}
            _ => {
                m.insert(path, (Version { size, mtime: None }, etag));
            }
        }
    }

    /// Whether `path` at `disk` is in the bucket, by the Python rule (same size is enough for an
    /// object found by listing).
    pub fn has(&self, path: &Path, disk: &Version) -> bool {
        self.0
            .lock()
            .expect("poisoned")
            .get(path)
            .is_some_and(|(v, _)| v.matches(disk))
    }

    /// Whether exactly this version of `path` was shipped by us.
    pub fn has_exact(&self, path: &Path, disk: &Version) -> bool {
        self.0
            .lock()
            .expect("poisoned")
            .get(path)
            .is_some_and(|(v, _)| v == disk)
    }

    /// The listed object's ETag, when `path` is known by listing only and has `size`.
    pub fn listed_etag(&self, path: &Path, size: u64) -> Option<String> {
        match self.0.lock().expect("poisoned").get(path) {
            Some((v, Some(etag))) if v.mtime.is_none() && v.size == size => Some(etag.clone()),
            _ => None,
        }
    }

    /// Names of the files of `dir` (directly in it) known to be in the bucket.
    pub fn names_in(&self, dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .lock()
            .expect("poisoned")
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        v.sort();
        v
    }

    /// Forgets every file below `root` that `listed` (a fresh LIST of the bucket) does not hold:
    /// an object deleted behind the agent's back must be shipped again.
    pub fn forget_unlisted(&self, root: &Path, listed: &HashSet<PathBuf>) {
        self.0
            .lock()
            .expect("poisoned")
            .retain(|p, _| !p.starts_with(root) || listed.contains(p));
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
        q.push(PathBuf::from("/a")).await;
        q.push(PathBuf::from("/a")).await;
        q.push(PathBuf::from("/b")).await;
        assert_eq!(q.len(), 2);
        assert_eq!(rx.recv().await.unwrap(), Work::File("/a".into()));
        q.taken(&Work::File("/a".into()));
        q.push(PathBuf::from("/a")).await; // a new event while /a uploads queues it again
        // `try_recv`: a push has sent when it returns, and a missing unit fails instead of hanging.
        assert_eq!(rx.try_recv().unwrap(), Work::File("/b".into()));
        assert_eq!(rx.try_recv().unwrap(), Work::File("/a".into()));
        q.push(Work::Dir("/a".into())).await; // another kind of work on the same path
        assert_eq!(rx.try_recv().unwrap(), Work::Dir("/a".into()));
        q.close();
        q.push(PathBuf::from("/c")).await;
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn listed_objects_match_by_size_but_not_exactly() {
        let s = Shipped::default();
        let disk = Version {
            size: 3,
            mtime: Some((1, 2)),
        };
        s.insert_listed("/d/a".into(), 3, Some("etag".into()));
        assert!(s.has(Path::new("/d/a"), &disk));
        assert!(!s.has_exact(Path::new("/d/a"), &disk));
        assert_eq!(s.listed_etag(Path::new("/d/a"), 3).as_deref(), Some("etag"));
        s.insert("/d/a".into(), disk);
        assert!(s.has_exact(Path::new("/d/a"), &disk));
        s.insert_listed("/d/a".into(), 3, None); // our exact record stays
        assert!(s.has_exact(Path::new("/d/a"), &disk));
        s.insert("/d/sub/b".into(), disk);
        assert_eq!(s.names_in(Path::new("/d")), vec!["a"]);
    }

    /// Issue 13 (mutation testing): what waits, as the index writer asks (`contains`) and the
    /// health check counts (`is_empty`), and the path of either kind of work.
    #[tokio::test]
    async fn what_waits_is_known_until_taken() {
        let (q, _rx) = Queue::new(8);
        assert!(q.is_empty());
        let a = Work::File("/d/a".into());
        assert!(!q.contains(&a));
        q.push(a.clone()).await;
        assert!(q.contains(&a));
        assert!(!q.contains(&Work::Dir("/d/a".into())));
        assert!(!q.is_empty());
        q.taken(&a);
        assert!(!q.contains(&a));
        assert!(q.is_empty());
        assert_eq!(a.path(), Path::new("/d/a"));
        assert_eq!(Work::Dir("/d".into()).path(), Path::new("/d"));
    }

    /// Issue 13 (mutation testing): a listed object of another size replaces our exact record
    /// (the file changed since), a listed ETag is only given for that size and for an object known
    /// by listing, and a fresh LIST forgets below its root only what it does not hold.
    #[test]
    fn shipped_records_follow_the_bucket() {
        let s = Shipped::default();
        assert!(s.is_empty());
        let disk = Version {
            size: 3,
            mtime: Some((1, 2)),
        };
        s.insert("/d/a".into(), disk);
        assert_eq!(
            s.listed_etag(Path::new("/d/a"), 3),
            None,
            "ours, not listed"
        );
        s.insert_listed("/d/a".into(), 4, Some("e4".into()));
        assert!(
            !s.has_exact(Path::new("/d/a"), &disk),
            "replaced by the listing"
        );
        assert_eq!(s.listed_etag(Path::new("/d/a"), 4).as_deref(), Some("e4"));
        assert_eq!(s.listed_etag(Path::new("/d/a"), 3), None, "another size");
        assert!(!s.has(Path::new("/d/zz"), &disk));
        s.insert("/d/b".into(), disk);
        s.insert("/e/c".into(), disk);
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!(s.names_in(Path::new("/d")), vec!["a", "b"]);
        s.forget_unlisted(Path::new("/d"), &HashSet::from([PathBuf::from("/d/b")]));
        assert_eq!(s.names_in(Path::new("/d")), vec!["b"], "/d/a not listed");
        assert!(s.has(Path::new("/e/c"), &disk), "outside the root: kept");
        s.remove(Path::new("/d/b"));
        assert_eq!(s.len(), 1);
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
