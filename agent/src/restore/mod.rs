//! `tableslurp`: restore a directory (or a tree, or commit logs) as of an index.
//! [`args`] validates the command line, [`plan`] picks indexes and reads them, [`fetch`] downloads
//! and verifies each file; [`run`] wires them and returns a [`Summary`].

pub mod args;
pub mod fetch;
pub mod plan;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use self::args::{Ownership, Selection, SlurpConfig};
use self::fetch::{Fetcher, Job, Outcome};
use crate::error::{Error, Result};
use crate::key::INDEX_SUFFIX;
use crate::store::{Listed, Store, StoreOptions};

/// Names Cassandra gives to subdirectories of a table directory: an index entry with one of
/// these names and no object is a directory, not a missing file.
const KNOWN_DIRS: &[&str] = &["backups", "snapshots"];

/// One index chosen for restore, and where its files go.
#[derive(Debug, Clone)]
pub struct FileSet {
    /// The index key (`None` for commit logs, which have no index).
    pub index: Option<String>,
    /// Its LastModified, unix seconds.
    pub modified: Option<i64>,
    /// The local directory its files go to.
    pub target: PathBuf,
    /// The files: key and destination.
    pub jobs: Vec<Job>,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files the chosen indexes list (directory entries excluded).
    pub files: usize,
    /// Downloaded and verified.
    pub downloaded: usize,
    /// Of those, checked by size only (no checksum was stored).
    pub size_only: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Already there with the right size.
    pub kept: usize,
    /// Directory entries skipped.
    pub directories: usize,
    /// Dry run: would download.
    pub planned: usize,
    /// Failed files: key and why.
    pub failed: Vec<(String, Error)>,
    /// Requests made.
    pub requests: String,
    /// Seconds taken.
    pub seconds: f64,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Point-in-time restore: the `commitlog_archiving.properties` lines for Cassandra.
    pub properties: Option<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dry_run {
            write!(
                f,
                "tableslurp: dry run: {} files, would download {} ({} bytes), {} already there",
                self.files, self.planned, self.bytes, self.kept
            )?;
        } else {
            write!(
                f,
                "tableslurp: {} files: {} downloaded ({} bytes, {} checked by size only), {} already there, {} failed",
                self.files,
                self.downloaded,
                self.bytes,
                self.size_only,
                self.kept,
                self.failed.len()
            )?;
        }
        write!(
            f,
            "; {} directory entries skipped; requests: {}; {:.1}s",
            self.directories, self.requests, self.seconds
        )
    }
}

/// Restores as `cfg` says. Per-file failures are in the summary; an error means nothing could be
/// planned (no index, unreadable index, store unreachable).
pub async fn run(cfg: SlurpConfig) -> Result<Summary> {
    let started = Instant::now();
    let store = Store::open(
        &cfg.store,
        StoreOptions {
            sizing: crate::config::UploadSizing {
                max_single_put: 5 << 30,
                part_size: cfg.part_size,
            },
            write: Default::default(),
            max_parts_in_flight: cfg.threads,
        },
    )
    .await?;
    let mut sets = plan_sets(&store, &cfg).await?;
    let properties = match &cfg.point_in_time {
        Some(pit) => {
            let (set, text) = plan_point_in_time(&store, &cfg, pit, &sets).await?;
            sets.push(set);
            Some(text)
        }
        None => None,
    };
    for s in &sets {
        match &s.index {
            Some(k) => tracing::info!(
                index = %k,
                last_modified = %s.modified.map(crate::when::rfc3339).unwrap_or_default(),
                files = s.jobs.len(),
                target = %s.target.display(),
                "restoring index"
            ),
            None => tracing::info!(
                files = s.jobs.len(),
                target = %s.target.display(),
                "restoring commit log segments"
            ),
        }
    }
    if !cfg.dry_run {
        for s in &sets {
            create_dir(&s.target, &cfg.ownership)?;
        }
    }
    let jobs: Vec<Job> = sets.into_iter().flat_map(|s| s.jobs).collect();

    let progress = progress_bar(&jobs, cfg.dry_run);
    let fetcher = Arc::new(Fetcher {
        store: store.clone(),
        gets: tokio::sync::Semaphore::new(cfg.threads),
        threads: cfg.threads,
        part_size: cfg.part_size,
        force: cfg.force,
        dry_run: cfg.dry_run,
        ownership: cfg.ownership.clone(),
    });
    let results: Vec<(Job, Result<Outcome>)> = futures::stream::iter(jobs.into_iter().map(|job| {
        let fetcher = fetcher.clone();
        let progress = progress.clone();
        async move {
            let on_bytes = |n: u64| progress.inc(n);
            let r = fetcher.fetch(&job, &on_bytes).await;
            (job, r)
        }
    }))
    .buffer_unordered(cfg.threads)
    .collect()
    .await;
    progress.finish_and_clear();

    let mut sum = Summary {
        dry_run: cfg.dry_run,
        ..Summary::default()
    };
    for (job, r) in results {
        match r {
            Ok(Outcome::Directory) => {
                sum.directories += 1;
                tracing::debug!(key = %job.key, "directory entry skipped");
            }
            Ok(o) => {
                sum.files += 1;
                match o {
                    Outcome::Downloaded { bytes, verified } => {
                        sum.downloaded += 1;
                        sum.bytes += bytes;
                        if !verified {
                            sum.size_only += 1;
                            tracing::warn!(key = %job.key, "no checksum stored with the object: checked its size only");
                        }
                    }
                    Outcome::Kept => sum.kept += 1,
                    Outcome::Planned(bytes) => {
                        sum.planned += 1;
                        sum.bytes += bytes;
                        println!(
                            "would download {} -> {} ({bytes} bytes)",
                            job.key,
                            job.dest.display()
                        );
                    }
                    Outcome::Directory => unreachable!(),
                }
            }
            Err(e) => {
                sum.files += 1;
                tracing::error!(key = %job.key, error = %e, "file not restored");
                sum.failed.push((job.key, e));
            }
        }
    }
    if let (Some(text), Some(pit)) = (&properties, &cfg.point_in_time)
        && let Some(file) = &pit.properties
        && !cfg.dry_run
        && sum.failed.is_empty()
    {
        write_atomically(file, text.as_bytes())?;
        tracing::info!(file = %file.display(), "commitlog_archiving.properties written");
    }
    sum.properties = properties;
    sum.requests = store.requests().to_string();
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

/// Writes `bytes` to `file` through a temporary file beside it: never half-written.
fn write_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = file.with_file_name(format!(".{name}.tableslurp-tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, file).map_err(|e| Error::io(file, e))
}

/// The commit log segments a restore to `--as-of` needs after the SSTables of `sets`, and the
/// `commitlog_archiving.properties` lines that replay them. Refuses (an error naming why) a moment
/// the archive cannot reach.
pub async fn plan_point_in_time(
    store: &Store,
    cfg: &SlurpConfig,
    pit: &self::args::PointInTime,
    sets: &[FileSet],
) -> Result<(FileSet, String)> {
    let t = cfg.as_of.expect("--point-in-time requires --as-of") * 1000;
    let when = crate::when::rfc3339(t / 1000);
    let refuse = |why: String| Error::NotFound(format!("--point-in-time to {when}: {why}"));
    // The SSTables' restore point: the oldest index restored (LastModified, whole seconds, is at
    // or before the moment the index was written).
    let restore_point = sets
        .iter()
        .filter_map(|s| s.modified)
        .min()
        .ok_or_else(|| refuse("no index to restore the SSTables from".into()))?
        * 1000;
    let prefix = cfg.keys.dir_prefix(Path::new(&pit.archive));
    let listed: Vec<Listed> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter(|o| plan::dir_of(&o.key) == prefix)
        .filter(|o| crate::segment::parse_name(&o.key[prefix.len()..]).is_some())
        .collect();
    let heads = futures::stream::iter(listed.into_iter().map(|o| async move {
        let head = store.head(&o.key).await?;
        Ok::<_, Error>((o, head))
    }))
    .buffer_unordered(cfg.threads)
    .collect::<Vec<_>>()
    .await;
    let mut archived = Vec::new();
    for h in heads {
        let (o, head) = h?;
        let Some(head) = head else { continue };
        let meta = crate::segment::SegmentMeta::from_user(&head.meta.user).ok_or_else(|| {
            refuse(format!(
                "segment {} has no commit log metadata (not shipped by tablesnap --commitlog-archive); restore it with --commitlogs",
                o.key
            ))
        })?;
        archived.push(crate::segment::Archived {
            key: o.key,
            size: head.size,
            meta,
        });
    }
    let needed =
        crate::segment::needed(&archived, restore_point, t).map_err(|r| refuse(r.to_string()))?;
    let (first, last) = (needed[0], needed[needed.len() - 1]);
    tracing::info!(
        restore_point = %crate::when::rfc3339(restore_point / 1000),
        point_in_time = %when,
        segments = needed.len(),
        first = first.meta.id,
        last = last.meta.id,
        "commit log segments to replay"
    );
    let jobs = needed
        .iter()
        .map(|s| Job {
            dest: pit.segments_to.join(&s.key[prefix.len()..]),
            key: s.key.clone(),
            may_be_dir: false,
        })
        .collect();
    let text = crate::segment::restore_properties(&pit.segments_to.display().to_string(), t);
    Ok((
        FileSet {
            index: None,
            modified: None,
            target: pit.segments_to.clone(),
            jobs,
        },
        text,
    ))
}

/// Chooses the index(es) and reads them into file sets.
pub async fn plan_sets(store: &Store, cfg: &SlurpConfig) -> Result<Vec<FileSet>> {
    let origin_prefix = cfg.keys.dir_prefix(Path::new(&cfg.origin));
    let as_of_text = cfg
        .as_of
        .map(|t| format!(" not later than {}", crate::when::rfc3339(t)))
        .unwrap_or_default();
    match &cfg.selection {
        Selection::File(f) => {
            let key = format!("{origin_prefix}{f}{INDEX_SUFFIX}");
            let body = store.get_bytes(&key).await.map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "index {key}: no such object (is -f the name of a Data.db file in {}?)",
                    cfg.origin
                )),
                e => e,
            })?;
            let names = plan::parse_index(&key, &body, &cfg.origin)?;
            Ok(vec![file_set(
                Some(key),
                None,
                &origin_prefix,
                names,
                cfg.target.clone(),
                None,
            )])
        }
        Selection::Newest => {
            let listed = store.list(&origin_prefix).await?;
            let idx = plan::newest(plan::indexes_in(&listed, &origin_prefix), cfg.as_of)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "no index in {origin_prefix}{as_of_text}: nothing to restore (check -n/--name, --prefix and ORIGIN)"
                    ))
                })?;
            let body = store.get_bytes(&idx.key).await?;
            let names = plan::parse_index(&idx.key, &body, &cfg.origin)?;
            Ok(vec![file_set(
                Some(idx.key.clone()),
                idx.modified,
                &origin_prefix,
                names,
                cfg.target.clone(),
                Some(&listed),
            )])
        }
        Selection::Recursive => {
            let listed = store.list(&origin_prefix).await?;
            let chosen = plan::newest_per_dir(&listed, &origin_prefix, cfg.as_of);
            if chosen.is_empty() {
                return Err(Error::NotFound(format!(
                    "no index below {origin_prefix}{as_of_text}: nothing to restore (check -n/--name, --prefix and ORIGIN)"
                )));
            }
            let (origin_prefix, listed) = (&origin_prefix, &listed);
            let bodies = futures::stream::iter(chosen.iter().map(|(dir, idx)| async move {
                let body = store.get_bytes(&idx.key).await?;
                let rel = dir[origin_prefix.len()..].trim_end_matches('/');
                let local = if rel.is_empty() {
                    cfg.origin.clone()
                } else if cfg.origin == "/" {
                    format!("/{rel}")
                } else {
                    format!("{}/{rel}", cfg.origin)
                };
                let names = plan::parse_index(&idx.key, &body, &local)?;
                Ok::<_, Error>(file_set(
                    Some(idx.key.clone()),
                    idx.modified,
                    dir,
                    names,
                    cfg.target.join(rel),
                    Some(listed),
                ))
            }))
            .buffer_unordered(cfg.threads)
            .collect::<Vec<_>>()
            .await;
            let mut sets = bodies.into_iter().collect::<Result<Vec<_>>>()?;
            sets.sort_by(|a, b| a.target.cmp(&b.target));
            Ok(sets)
        }
        Selection::Commitlogs(path) => {
            let listed = store.list(&origin_prefix).await?;
            let point = plan::newest(listed.iter(), cfg.as_of);
            let since = match point {
                Some(i) => {
                    tracing::info!(
                        index = %i.key,
                        last_modified = %i.modified.map(crate::when::rfc3339).unwrap_or_default(),
                        "restore point: segments archived from this time on"
                    );
                    i.modified
                }
                None => {
                    tracing::warn!(
                        prefix = %origin_prefix,
                        "no index below ORIGIN{as_of_text}: restoring every segment"
                    );
                    None
                }
            };
            let cl_prefix = cfg.keys.dir_prefix(Path::new(path));
            let segs = store.list(&cl_prefix).await?;
            let direct: Vec<Listed> = segs
                .into_iter()
                .filter(|o| plan::dir_of(&o.key) == cl_prefix)
                .collect();
            let chosen = plan::commitlog_segments(&direct, since, cfg.as_of);
            let jobs = chosen
                .into_iter()
                .map(|o| Job {
                    dest: cfg.target.join(&o.key[cl_prefix.len()..]),
                    key: o.key.clone(),
                    may_be_dir: false,
                })
                .collect();
            Ok(vec![FileSet {
                index: None,
                modified: since,
                target: cfg.target.clone(),
                jobs,
            }])
        }
    }
}

fn file_set(
    index: Option<String>,
    modified: Option<i64>,
    dir_prefix: &str,
    names: Vec<String>,
    target: PathBuf,
    listed: Option<&[Listed]>,
) -> FileSet {
    // Entries with objects below them are directories (the Python tool lists them too).
    let dirs: Option<HashSet<&str>> = listed.map(|l| {
        l.iter()
            .filter_map(|o| o.key.strip_prefix(dir_prefix))
            .filter_map(|rest| rest.split_once('/').map(|(d, _)| d))
            .collect()
    });
    let jobs = names
        .into_iter()
        .map(|n| Job {
            key: format!("{dir_prefix}{n}"),
            dest: target.join(&n),
            may_be_dir: KNOWN_DIRS.contains(&n.as_str())
                || dirs.as_ref().is_some_and(|d| d.contains(n.as_str())),
        })
        .collect();
    FileSet {
        index,
        modified,
        target,
        jobs,
    }
}

fn create_dir(dir: &Path, ownership: &Ownership) -> Result<()> {
    let existed = dir.is_dir();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let (false, Ownership::Set { uid, gid }) = (existed, ownership) {
        std::os::unix::fs::chown(dir, *uid, *gid).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

fn progress_bar(jobs: &[Job], dry_run: bool) -> indicatif::ProgressBar {
    if dry_run || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(format!("{} files", jobs.len()));
    pb
}
