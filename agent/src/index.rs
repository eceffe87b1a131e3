//! The `-listdir.json` indexes. An index names the entries of a directory and is written only once
//! every file it names is in the bucket at its current version; files it finds missing are queued.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::agent::Ctx;
use crate::error::Result;
use crate::meta::ObjectMeta;
use crate::queue::Version;
use crate::store::Source;

/// Messages to the index writer.
#[derive(Debug)]
pub enum IndexMsg {
    /// The data file at this path is in the bucket: write its index.
    Want(PathBuf),
    /// A file of this directory reached the bucket: parked indexes may now be complete.
    Shipped(PathBuf),
    /// Answer once every earlier message has been handled (shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// `Some` for a regular file (its version); `None` for anything else (subdirectories).
    pub file: Option<Version>,
}

/// The JSON body of an index, formatted as Python's `json.dumps({dir: names})`.
pub fn body(dir: &Path, names: &[String]) -> String {
    let mut s = String::from("{");
    s.push_str(&py_json_str(&dir.to_string_lossy()));
    s.push_str(": [");
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&py_json_str(n));
    }
    s.push_str("]}");
    s
}

/// A JSON string as Python writes it by default (non-ASCII escaped as \uXXXX).
fn py_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in serde_json::to_string(s).expect("strings serialise").chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Reads a directory: its entries whose full path the filter accepts, sorted by name.
pub fn read_entries(dir: &Path, accepts: impl Fn(&str) -> bool) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if !accepts(&path.to_string_lossy()) {
            continue;
        }
        let file = match vanished_is_none(std::fs::symlink_metadata(&path))? {
            Some(m) if m.is_file() => Some(Version::of(&m)),
            Some(_) => None,
            // Deleted since the listing (compacted away): not an entry any more.
            None => continue,
        };
        out.push(Entry {
            name: e.file_name().to_string_lossy().into_owned(),
            file,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The names an index lists: the directory's entries, and with `--delete-on-backup` also the
/// files shipped from it and deleted since (`deleted`), which the directory held as much as the
/// ones still there; sorted, each once.
pub fn listing(
    entries: &[Entry],
    deleted: Option<Vec<String>>,
    accepts: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut names: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
    names.extend(deleted.into_iter().flatten().filter(|n| accepts(n)));
    names.into_iter().collect()
}

/// The files of `entries` that are not in the bucket at their current version.
pub fn missing(
    dir: &Path,
    entries: &[Entry],
    in_bucket: impl Fn(&Path, &Version) -> bool,
) -> Vec<PathBuf> {
    entries
        .iter()
        .filter_map(|e| {
            let v = e.file.as_ref()?;
            let p = dir.join(&e.name);
            (!in_bucket(&p, v)).then_some(p)
        })
        .collect()
}

/// The index writer task: parks index requests until their directory is complete in the bucket.
pub async fn run(
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<IndexMsg>,
    retry_tx: mpsc::Sender<IndexMsg>,
) {
    let mut parked: HashMap<PathBuf, BTreeSet<PathBuf>> = HashMap::new();
    let mut listed: HashSet<PathBuf> = HashSet::new();
    let mut attempts: HashMap<PathBuf, u32> = HashMap::new();
    while let Some(msg) = rx.recv().await {
        let dir = match msg {
            IndexMsg::Want(p) => {
                let dir = p.parent().expect("files have a parent").to_path_buf();
                parked.entry(dir.clone()).or_default().insert(p);
                dir
            }
            IndexMsg::Shipped(dir) => dir,
            IndexMsg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let Some(triggers) = parked.get(&dir) else {
            continue;
        };
        match settle(&ctx, &dir, triggers, &mut listed).await {
            Ok(true) => {
                parked.remove(&dir);
                attempts.remove(&dir);
            }
            Ok(false) => {}
            Err(e) => {
                let n = failed_attempt(&mut attempts, &dir);
                // Backs off further with each failure of the same directory.
                let delay = crate::retry::delay(n, crate::retry::CAP);
                tracing::warn!(dir = %dir.display(), error = %e, retry_in = ?delay, "index not written yet");
                let tx = retry_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(IndexMsg::Shipped(dir)).await;
                });
            }
        }
    }
}

/// Writes the parked indexes of `dir` if every file it holds is in the bucket; otherwise queues the
/// missing files and returns `Ok(false)`.
async fn settle(
    ctx: &Arc<Ctx>,
    dir: &Path,
    triggers: &BTreeSet<PathBuf>,
    listed: &mut HashSet<PathBuf>,
) -> Result<bool> {
    let entries = read_dir(ctx, dir).await?;
    let mut miss = missing(dir, &entries, |p, v| ctx.shipped.has(p, v));
    // With --delete-on-backup the directory's earlier files are gone from disk but not from the
    // index: what was shipped before this run is learnt from the bucket too.
    if (!miss.is_empty() || ctx.cfg.delete_on_backup) && listed.insert(dir.to_path_buf()) {
        // Files from before this run may be in the bucket already: one LIST tells.
        let prefix = ctx.cfg.keys.dir_prefix(dir);
        for o in ctx.store.list(&prefix).await? {
            let Some(name) = o.key.strip_prefix(&prefix) else {
                continue;
            };
            if name.contains('/') || name.ends_with(crate::key::INDEX_SUFFIX) {
                continue;
            }
            ctx.shipped.insert_listed(dir.join(name), o.size, o.etag);
        }
        miss = missing(dir, &entries, |p, v| ctx.shipped.has(p, v));
    }
    if !miss.is_empty() {
        tracing::debug!(dir = %dir.display(), missing = miss.len(), "index waits for files");
        for p in miss {
            if !ctx.queue.contains(&crate::queue::Work::File(p.clone())) {
                let ctx = ctx.clone();
                tokio::spawn(async move { ctx.enqueue(p).await });
            }
        }
        return Ok(false);
    }
    let names = listing(
        &entries,
        ctx.cfg.delete_on_backup.then(|| ctx.shipped.names_in(dir)),
        |n| ctx.cfg.filter.accepts(&dir.join(n).to_string_lossy()),
    );
    let body = Bytes::from(body(dir, &names));
    for trigger in triggers {
        // A data file compacted away before its index: newer indexes describe the directory.
        if !entries.iter().any(|e| dir.join(&e.name) == *trigger) {
            continue;
        }
        let key = ctx.cfg.keys.index_key(trigger);
        ctx.store
            .put(
                &key,
                Source::Memory(body.clone()),
                &ObjectMeta::json(),
                None,
            )
            .await?;
        ctx.stats.index_written();
        tracing::info!(key, entries = names.len(), "index written");
        if ctx.cfg.delete_on_backup {
            crate::upload::delete_local(trigger.clone()).await;
        }
    }
    Ok(true)
}

async fn read_dir(ctx: &Arc<Ctx>, dir: &Path) -> Result<Vec<Entry>> {
    let c = ctx.clone();
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || read_entries(&d, |p| c.cfg.filter.accepts(p)))
        .await
        .expect("listing task panicked")
        .map_err(|e| crate::error::Error::io(dir, e))
}

/// Counts a failed attempt to write `dir`'s indexes; returns how many have failed so far.
fn failed_attempt(attempts: &mut HashMap<PathBuf, u32>, dir: &Path) -> u32 {
    let n = attempts.entry(dir.to_path_buf()).or_insert(0);
    *n += 1;
    *n
}

/// A file deleted between listing its directory and reading it is no error: `Ok(None)`.
fn vanished_is_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_python_json() {
        let b = body(
            Path::new("/d/ks/t-1"),
            &["a-Data.db".into(), "backups".into()],
        );
        assert_eq!(b, r#"{"/d/ks/t-1": ["a-Data.db", "backups"]}"#);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["/d/ks/t-1"][1], "backups");
        assert_eq!(body(Path::new("/é"), &[]), r#"{"/\u00e9": []}"#);
    }

    #[test]
    fn missing_lists_unshipped_files_only() {
        let v = Version {
            size: 1,
            mtime: Some((1, 1)),
        };
        let entries = vec![
            Entry {
                name: "a".into(),
                file: Some(v),
            },
            Entry {
                name: "b".into(),
                file: Some(v),
            },
            Entry {
                name: "backups".into(),
                file: None,
            },
        ];
        let m = missing(Path::new("/d"), &entries, |p, _| p == Path::new("/d/a"));
        assert_eq!(m, vec![PathBuf::from("/d/b")]);
    }

    /// Issue 13 (mutation testing): the listing is the entries and, with --delete-on-backup,
    /// the accepted names deleted since, sorted and each once.
    #[test]
    fn listing_merges_deleted_names() {
        let v = Version {
            size: 1,
            mtime: Some((1, 1)),
        };
        let entries = vec![
            Entry {
                name: "a".into(),
                file: Some(v),
            },
            Entry {
                name: "c".into(),
                file: None,
            },
        ];
        let deleted = Some(vec!["b".into(), "a".into(), "x-tmp".into()]);
        assert_eq!(
            listing(&entries, deleted, |n| !n.contains("-tmp")),
            vec!["a", "b", "c"]
        );
        assert_eq!(listing(&entries, None, |_| true), vec!["a", "c"]);
    }

    /// Issue 13 (mutation testing): only a file that vanished is skipped; other errors stay.
    #[test]
    fn only_vanished_files_are_skipped() {
        use std::io::{Error, ErrorKind};
        assert_eq!(vanished_is_none(Ok(3)).unwrap(), Some(3));
        let gone: std::io::Result<u8> = Err(Error::from(ErrorKind::NotFound));
        assert_eq!(vanished_is_none(gone).unwrap(), None);
        let denied: std::io::Result<u8> = Err(Error::from(ErrorKind::PermissionDenied));
        assert_eq!(
            vanished_is_none(denied).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
    }

    /// Issue 13 (mutation testing): failures are counted per directory, so the backoff grows.
    #[test]
    fn failed_attempts_count_per_directory() {
        let mut a = HashMap::new();
        let (d, e) = (Path::new("/d"), Path::new("/e"));
        assert_eq!(failed_attempt(&mut a, d), 1);
        assert_eq!(failed_attempt(&mut a, d), 2);
        assert_eq!(failed_attempt(&mut a, e), 1);
        assert_eq!(failed_attempt(&mut a, d), 3);
    }

    #[test]
    fn read_entries_filters_and_sorts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b-Data.db"), b"x").unwrap();
        std::fs::write(d.path().join("a-tmp-Data.db"), b"x").unwrap();
        std::fs::write(d.path().join("a-Index.db"), b"xy").unwrap();
        std::fs::create_dir(d.path().join("backups")).unwrap();
        let e = read_entries(d.path(), |p| !p.contains("-tmp")).unwrap();
        let names: Vec<_> = e
            .iter()
            .map(|e| (e.name.as_str(), e.file.map(|v| v.size)))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a-Index.db", Some(2)),
                ("b-Data.db", Some(1)),
                ("backups", None)
            ]
        );
    }
}
