//! `tablechop`: delete what no kept index references. [`args`] validates the command line,
//! [`mark`] decides (pure); [`run`] lists by prefix, reads the kept indexes in parallel and deletes
//! in batches of up to 1,000 keys.

pub mod args;
pub mod mark;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use futures::StreamExt;

use self::args::ChopConfig;
use crate::error::{Error, Result};
use crate::key::INDEX_SUFFIX;
use crate::store::{Store, StoreOptions};

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Objects listed.
    pub listed: usize,
    /// Indexes listed.
    pub indexes: usize,
    /// Directories with indexes.
    pub directories: usize,
    /// Indexes kept.
    pub kept_indexes: usize,
    /// Files kept because a kept index lists them.
    pub kept_files: usize,
    /// Deleted (or, in a dry run, to delete).
    pub deleted: usize,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Spared because younger than the grace period.
    pub protected: usize,
    /// Commit log segments kept (with --commitlog-archive) or left alone (without it).
    pub segments_kept: usize,
    /// Commit log segments deleted (or, in a dry run, to delete).
    pub segments_deleted: usize,
    /// Keys the store refused to delete.
    pub failed: Vec<String>,
    /// Requests made, by kind.
    pub requests: String,
    /// Total requests.
    pub total_requests: u64,
    /// Dry run.
    pub dry_run: bool,
    /// Seconds taken.
    pub seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tablechop: {} objects, {} indexes in {} directories; kept {} indexes and {} files they list; {} {} objects ({} bytes, {} of them commit log segments); {} commit log segments kept; {} younger than the grace period spared; {} failed; requests: {} total={}; {:.1}s",
            self.listed,
            self.indexes,
            self.directories,
            self.kept_indexes,
            self.kept_files,
            if self.dry_run {
                "would delete"
            } else {
                "deleted"
            },
            self.deleted,
            self.deleted_bytes,
            self.segments_deleted,
            self.segments_kept,
            self.protected,
            self.failed.len(),
            self.requests,
            self.total_requests,
            self.seconds
        )
    }
}

/// Runs one mark and sweep. Nothing is deleted unless every kept index could be read.
pub async fn run(cfg: ChopConfig) -> Result<Summary> {
    let started = Instant::now();
    let store = Store::open(
        &cfg.store,
        StoreOptions {
            sizing: crate::config::UploadSizing {
                max_single_put: 5 << 30,
                part_size: 8 << 20,
            },
            write: Default::default(),
            max_parts_in_flight: cfg.jobs,
        },
    )
    .await?;
    let listed = store.list(&cfg.list_prefix).await?;
    let kept = mark::kept_indexes(&listed, &cfg.rule);

    // Read the kept indexes in parallel; any failure stops before deleting anything.
    let keys = &cfg.keys;
    let read = futures::stream::iter(kept.iter().map(|idx| {
        let store = &store;
        async move {
            let body = store.get_bytes(&idx.key).await?;
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                Error::Integrity(format!(
                    "index {}: not JSON ({e}); nothing deleted",
                    idx.key
                ))
            })?;
            let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                Error::Integrity(format!(
                    "index {}: expected a JSON object with exactly one directory; nothing deleted",
                    idx.key
                ))
            })?;
            let (dir, names) = obj.iter().next().expect("one entry");
            let names = names.as_array().ok_or_else(|| {
                Error::Integrity(format!(
                    "index {}: the value of {dir:?} is not a list; nothing deleted",
                    idx.key
                ))
            })?;
            let dir = Path::new(dir);
            Ok::<_, Error>(
                names
                    .iter()
                    .filter_map(|n| n.as_str())
                    .map(|n| keys.data_key(&dir.join(n)))
                    .collect::<Vec<_>>(),
            )
        }
    }))
    .buffer_unordered(cfg.jobs)
    .collect::<Vec<_>>()
    .await;
    let mut kept_files = HashSet::new();
    for r in read {
        kept_files.extend(r?);
    }

    let (mut doomed, protected) = mark::to_delete(&listed, &kept, &kept_files, &cfg.rule);
    let segments_under_path = listed.iter().filter(|o| mark::is_segment(&o.key)).count();
    let (mut segments_kept, mut segments_deleted) = (segments_under_path, 0);
    let seg_listed;
    if let Some(prefix) = &cfg.commitlog_prefix {
        seg_listed = store
            .list(prefix)
            .await?
            .into_iter()
            .filter(|o| crate::restore::plan::dir_of(&o.key) == prefix.as_str())
            .filter(|o| mark::is_segment(&o.key))
            .collect::<Vec<_>>();
        let heads = futures::stream::iter(seg_listed.iter().map(|o| {
            let store = &store;
            async move { Ok::<_, Error>((o, store.head(&o.key).await?)) }
        }))
        .buffer_unordered(cfg.jobs)
        .collect::<Vec<_>>()
        .await;
        let mut segs = Vec::new();
        let mut unknown = 0;
        for h in heads {
            let (o, head) = h?;
            let Some(head) = head else { continue };
            match crate::segment::SegmentMeta::from_user(&head.meta.user) {
                Some(meta) => segs.push((
                    crate::segment::Archived {
                        key: o.key.clone(),
                        size: o.size,
                        meta,
                    },
                    o.modified,
                )),
                None => unknown += 1,
            }
        }
        let oldest_point = kept.iter().filter_map(|i| i.modified).min();
        if oldest_point.is_none() {
            tracing::warn!("no kept index below the path: every commit log segment is kept");
        }
        if unknown > 0 {
            tracing::warn!(
                segments = unknown,
                "segments without tablesnap's commit log metadata are kept"
            );
        }
        let gone: HashSet<&str> = mark::segments_to_delete(&segs, oldest_point, &cfg.rule)
            .into_iter()
            .map(|a| a.key.as_str())
            .collect();
        // Segments below the path too are decided here, not twice.
        let under_path: HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        segments_deleted = gone.len();
        segments_kept = seg_listed.len() - gone.len()
            + listed
                .iter()
                .filter(|o| mark::is_segment(&o.key) && !seg_listed.iter().any(|s| s.key == o.key))
                .count();
        doomed.extend(
            seg_listed
                .iter()
                .filter(|o| gone.contains(o.key.as_str()) && !under_path.contains(o.key.as_str())),
        );
        doomed.extend(listed.iter().filter(|o| gone.contains(o.key.as_str())));
    } else if segments_under_path > 0 {
        tracing::warn!(
            segments = segments_under_path,
            "commit log segments below the path are never deleted by the index rule; give --commitlog-archive DIR to apply retention to them"
        );
    }
    let listed_keys: HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    let mut sum = Summary {
        listed: listed.len(),
        indexes: listed
            .iter()
            .filter(|o| o.key.ends_with(INDEX_SUFFIX))
            .count(),
        directories: listed
            .iter()
            .filter(|o| o.key.ends_with(INDEX_SUFFIX))
            .map(|o| crate::restore::plan::dir_of(&o.key))
            .collect::<HashSet<_>>()
            .len(),
        kept_indexes: kept.len(),
        kept_files: kept_files
            .iter()
            .filter(|k| listed_keys.contains(k.as_str()))
            .count(),
        deleted: doomed.len(),
        deleted_bytes: doomed.iter().map(|o| o.size).sum(),
        protected,
        segments_kept,
        segments_deleted,
        dry_run: cfg.dry_run,
        ..Summary::default()
    };
    if cfg.list_deletes {
        for o in &doomed {
            println!(
                "{} {}",
                if cfg.dry_run {
                    "would delete"
                } else {
                    "delete"
                },
                o.key
            );
        }
    }
    if !cfg.dry_run && !doomed.is_empty() {
        let keys: Vec<String> = doomed.iter().map(|o| o.key.clone()).collect();
        sum.failed = store.delete_many(&keys).await?;
        for k in &sum.failed {
            tracing::error!(key = %k, "the store refused to delete the object");
        }
        sum.deleted -= sum.failed.len();
    }
    sum.requests = store.requests().to_string();
    sum.total_requests = store.requests().total();
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}
