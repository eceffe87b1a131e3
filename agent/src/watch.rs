//! inotify on the watched directories: adds watches (recursively when asked), turns kernel events
//! into [`WatchEvent`]s and keeps the watch-descriptor map current.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};

use crate::classify::Happened;
use crate::error::{Error, Result};

/// Something seen in a watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A name in a watched directory.
    Fs {
        /// The full path.
        path: PathBuf,
        /// What happened to it.
        what: Happened,
        /// Whether it is a directory.
        is_dir: bool,
    },
    /// The kernel dropped events: everything must be rescanned.
    Overflow,
}

/// The inotify instance and its watches.
pub struct Watcher {
    watches: Watches,
    dirs: HashMap<WatchDescriptor, PathBuf>,
    stream: EventStream<Vec<u8>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("dirs", &self.dirs.len())
            .finish()
    }
}

fn mask() -> WatchMask {
    WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE | WatchMask::ONLYDIR
}

impl Watcher {
    /// A new inotify instance with no watches.
    pub fn new() -> Result<Self> {
        let inotify = Inotify::init().map_err(|e| Error::io("inotify", e))?;
        let watches = inotify.watches();
        let stream = inotify
            .into_event_stream(vec![0u8; 64 * 1024])
            .map_err(|e| Error::io("inotify", e))?;
        Ok(Self {
            watches,
            dirs: HashMap::new(),
            stream,
        })
    }

    /// Watches `dir`, and every directory below it when `recursive`, skipping `skip`.
    /// Returns the directories now watched. Directories that vanish meanwhile are passed over.
    pub fn add_tree(
        &mut self,
        dir: &Path,
        recursive: bool,
        skip: &[PathBuf],
    ) -> Result<Vec<PathBuf>> {
        let mut added = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            match self.watches.add(&d, mask()) {
                Ok(wd) => {
                    self.dirs.insert(wd, d.clone());
                }
                Err(e) if d != dir && matches!(e.kind(), std::io::ErrorKind::NotFound) => continue,
                Err(e) if e.raw_os_error() == Some(28) => {
                    return Err(Error::InvalidConfig(format!(
                        "path {:?}: cannot add an inotify watch: the limit fs.inotify.max_user_watches is reached",
                        d.display().to_string()
                    )));
                }
                Err(e) => return Err(Error::io(&d, e)),
            }
            added.push(d.clone());
            if recursive && let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let p = e.path();
                    if e.file_type().is_ok_and(|t| t.is_dir()) && !skip.contains(&p) {
                        todo.push(p);
                    }
                }
            }
        }
        Ok(added)
    }

    /// Number of watched directories.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The next event; `None` when the inotify stream ends.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            let ev = match self.stream.next().await? {
                Ok(ev) => ev,
                Err(e) => return Some(Err(Error::io("inotify", e))),
            };
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                return Some(Ok(WatchEvent::Overflow));
            }
            if ev.mask.contains(EventMask::IGNORED) {
                self.dirs.remove(&ev.wd);
                continue;
            }
            let Some(dir) = self.dirs.get(&ev.wd) else {
                continue;
            };
            let Some(name): Option<OsString> = ev.name else {
                continue;
            };
            let what = if ev.mask.contains(EventMask::MOVED_TO) {
                Happened::MovedTo
            } else if ev.mask.contains(EventMask::CLOSE_WRITE) {
                Happened::ClosedWrite
            } else if ev.mask.contains(EventMask::CREATE) {
                Happened::Created
            } else {
                continue;
            };
            return Some(Ok(WatchEvent::Fs {
                path: dir.join(name),
                what,
                is_dir: ev.mask.contains(EventMask::ISDIR),
            }));
        }
    }
}
