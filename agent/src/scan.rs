//! Comparing the disk with the bucket: at start with `-B`, after an inotify overflow and every
//! `--rescan-interval`. The bucket
//! side is one LIST of each watched root's key prefix (a request per 1,000 keys), never a request
//! per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::agent::Ctx;
use crate::checksum::{ChecksumKind, Expected, hash_path, is_plain_md5};
use crate::error::{Error, Result};
use crate::index::IndexMsg;
use crate::key::{INDEX_SUFFIX, wants_index};
use crate::queue::Version;
use crate::store::{Listed, RequestKind};

/// What a scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    /// Local files considered.
    pub files: usize,
    /// Already in the bucket.
    pub present: usize,
    /// Queued for upload.
    pub queued: usize,
    /// LIST requests made.
    pub list_requests: u64,
}

/// Lists the regular files below `root` (only its own files unless `recursive`), skipping
/// directories named in `skip`.
pub fn walk(root: &Path, recursive: bool, skip: &[PathBuf]) -> Vec<(PathBuf, Version)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.is_dir() {
                if recursive && !skip.contains(&path) {
                    dirs.push(path);
                }
            } else if m.is_file() {
                out.push((path, Version::of(&m)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The directories below `root` (itself included; only itself unless `recursive`), skipping `skip`.
pub fn dirs(root: &Path, recursive: bool, skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut todo = vec![root.to_path_buf()];
    while recursive && let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) && !skip.contains(&p) {
                out.push(p.clone());
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Cassandra mode: learns what the bucket holds below `root` (one LIST of its prefix), then
/// queues every directory, whose job ships what is complete and missing.
pub async fn reconcile_dirs(ctx: &Arc<Ctx>, root: &Path, recursive: bool) -> Result<ScanStats> {
    let prefix = ctx.cfg.keys.dir_prefix(root);
    let lists_before = ctx.store.requests().get(RequestKind::List);
    let listed = ctx.store.list(&prefix).await?;
    let mut stats = ScanStats {
        list_requests: ctx.store.requests().get(RequestKind::List) - lists_before,
        ..ScanStats::default()
    };
    let mut present = std::collections::HashSet::new();
    for o in listed {
        if o.key.ends_with(INDEX_SUFFIX) {
            continue;
        }
        if let Some(path) = ctx.cfg.keys.path_of(&o.key) {
            present.insert(path.clone());
            ctx.shipped.insert_listed(path, o.size, o.etag);
            stats.present += 1;
        }
    }
    // What we shipped once and the bucket no longer holds goes again.
    ctx.shipped.forget_unlisted(root, &present);
    let (r, skip) = (root.to_path_buf(), ctx.skip_dirs());
    let dirs = tokio::task::spawn_blocking(move || dirs(&r, recursive, &skip))
        .await
        .expect("walk panicked");
    for d in dirs {
        // The listing above covers every directory below the root.
        ctx.first_visit(&d);
        if let Some(work) = crate::cassandra::work_for(&d, true) {
            stats.queued += 1;
            ctx.enqueue_work(work).await;
        }
    }
    Ok(stats)
}

/// Compares one watched root with the bucket and queues what is missing or different.
pub async fn reconcile(ctx: &Arc<Ctx>, root: &Path, recursive: bool) -> Result<ScanStats> {
    let r = root.to_path_buf();
    let skip = ctx.skip_dirs();
    let files = tokio::task::spawn_blocking(move || walk(&r, recursive, &skip))
        .await
        .expect("walk panicked");
    let prefix = ctx.cfg.keys.dir_prefix(root);
    let lists_before = ctx.store.requests().get(RequestKind::List);
    let listed: HashMap<String, Listed> = ctx
        .store
        .list(&prefix)
        .await?
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect();
    let mut stats = ScanStats {
        list_requests: ctx.store.requests().get(RequestKind::List) - lists_before,
        ..ScanStats::default()
    };

    for (path, disk) in files {
        if !ctx.cfg.filter.accepts(&path.to_string_lossy()) {
            continue;
        }
        stats.files += 1;
        let key = ctx.cfg.keys.data_key(&path);
        let present = match listed.get(&key) {
            Some(o) if o.size == disk.size => {
                !ctx.cfg.md5_on_start || same_content(ctx, &path, o).await?
            }
            _ => false,
        };
        if present {
            stats.present += 1;
            ctx.shipped.insert(
                path.clone(),
                Version {
                    size: disk.size,
                    mtime: None,
                },
            );
            // A data file whose index never made it (a crash in between) gets it now.
            if ctx.cfg.with_index
                && wants_index(&path)
                && !listed.contains_key(&format!("{key}{INDEX_SUFFIX}"))
            {
                let _ = ctx.index_tx.send(IndexMsg::Want(path)).await;
            }
        } else {
            // Missing from the bucket (lost, or deleted behind our back) even if we shipped it
            // once: forget that, or the upload would be skipped as already done.
            ctx.shipped.remove(&path);
            stats.queued += 1;
            ctx.enqueue(path).await;
        }
    }
    Ok(stats)
}

/// `--md5-on-start`: the file against the object's checksum. With `--checksum md5` a plain-MD5
/// ETag (a single PUT) needs no request; otherwise a HEAD says what the object records, and its
/// CRC64NVME is preferred to its MD5 (cheaper to compute).
async fn same_content(ctx: &Arc<Ctx>, path: &Path, o: &Listed) -> Result<bool> {
    let etag_md5 = o.etag.as_deref().filter(|e| is_plain_md5(e));
    let want = match (ctx.cfg.checksum, etag_md5) {
        (ChecksumKind::Md5, Some(e)) => Some(Expected::Md5(e.to_ascii_lowercase())),
        _ => ctx.store.head(&o.key).await?.and_then(|h| Expected::of(&h)),
    };
    let Some(want) = want else {
        tracing::warn!(path = %path.display(), key = o.key, "the bucket's copy records no checksum; uploading the local file");
        return Ok(false);
    };
    let local = match hash_path(path, None, want.kind()).await {
        Ok(d) => d,
        Err(Error::Vanished(_)) => return Ok(true),
        Err(e) => return Err(e),
    };
    let same = want.matches(&local);
    if !same {
        tracing::warn!(path = %path.display(), key = o.key, bucket = %want, local = %local, "checksum differs from the bucket's copy; uploading the local file");
    }
    Ok(same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_respects_recursion_and_skips() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("ks/t")).unwrap();
        std::fs::create_dir_all(d.path().join("staging")).unwrap();
        std::fs::write(d.path().join("top"), b"1").unwrap();
        std::fs::write(d.path().join("ks/t/deep"), b"22").unwrap();
        std::fs::write(d.path().join("staging/x"), b"3").unwrap();
        let flat = walk(d.path(), false, &[]);
        assert_eq!(flat.len(), 1);
        let all = walk(d.path(), true, &[d.path().join("staging")]);
        let names: Vec<_> = all
            .iter()
            .map(|(p, v)| (p.strip_prefix(d.path()).unwrap().to_owned(), v.size))
            .collect();
        assert_eq!(
            names,
            vec![(PathBuf::from("ks/t/deep"), 2), (PathBuf::from("top"), 1)]
        );
    }

    /// Issue 13 (mutation testing): the directories a cassandra-mode scan queues: the root and,
    /// when recursive, every directory below it but the skipped ones (and what is below those),
    /// never a file.
    #[test]
    fn dirs_respect_recursion_and_skips() {
        let d = tempfile::tempdir().unwrap();
        for p in ["ks/t-1/snapshots/s", "ks/t-2", "staging/u"] {
            std::fs::create_dir_all(d.path().join(p)).unwrap();
        }
        std::fs::write(d.path().join("ks/t-1/nb-1-big-Data.db"), b"1").unwrap();
        assert_eq!(dirs(d.path(), false, &[]), vec![d.path().to_path_buf()]);
        let all: Vec<_> = dirs(d.path(), true, &[d.path().join("staging")])
            .iter()
            .map(|p| {
                p.strip_prefix(d.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            all,
            [
                "",
                "ks",
                "ks/t-1",
                "ks/t-1/snapshots",
                "ks/t-1/snapshots/s",
                "ks/t-2"
            ]
        );
    }
}
