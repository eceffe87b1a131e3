//! Cassandra mode: ship whole SSTables once complete and committed, pinned while they upload, then
//! the directory's index naming exactly the live SSTables' files, all of them already in the
//! bucket with their current content. Also `backups/` (incremental backups, cumulative index,
//! drained with --delete-on-backup) and `snapshots/<tag>/` (one set once manifest.json is written).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::agent::Ctx;
use crate::checksum::{ChecksumKind, Expected, hash_path};
use crate::error::{Error, Result};
use crate::meta::ObjectMeta;
use crate::queue::{Version, Work};
use crate::ready::{DirKind, DirState, SSTable, complete, dir_kind, settled};
use crate::sstable::{Name, parse_name, parse_toc, parse_txn};
use crate::stage::{Pin, pin};
use crate::store::Source;
use crate::upload::{Sent, send};

/// How long a snapshot waits for its schema.cql after manifest.json.
const SCHEMA_WAIT: Duration = Duration::from_secs(5);

/// What a directory job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shipped {
    /// Files uploaded.
    pub files: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Indexes written.
    pub indexes: usize,
}

/// The work an event in `dir` calls for, or `None` for a name the agent ignores.
pub fn work_for(path: &Path, is_dir: bool) -> Option<Work> {
    if is_dir {
        return Some(Work::Dir(path.to_path_buf()));
    }
    let dir = path.parent()?;
    let name = path.file_name()?.to_string_lossy();
    match dir_kind(dir) {
        DirKind::Snapshot(tag) => Some(Work::Dir(tag)),
        _ => match parse_name(&name) {
            Name::Component { .. } | Name::TxnLog => Some(Work::Dir(dir.to_path_buf())),
            Name::Temporary | Name::Other => None,
        },
    }
}

/// Ships what is ready in `dir`.
pub async fn ship_dir(ctx: &Arc<Ctx>, dir: &Path) -> Result<Shipped> {
    let lock = ctx.dir_lock(dir);
    let _guard = lock.lock().await;
    match dir_kind(dir) {
        DirKind::Snapshot(tag) => ship_snapshot(ctx, &tag).await,
        kind => ship_sstables(ctx, dir, kind == DirKind::Backups).await,
    }
}

/// The settled SSTables of `dir` whose every file the include/exclude rule accepts.
fn shippable(ctx: &Ctx, dir: &Path, mut ready: Vec<SSTable>) -> Vec<SSTable> {
    ready.retain(|s| {
        s.names
            .iter()
            .all(|n| ctx.cfg.filter.accepts(&dir.join(n).to_string_lossy()))
    });
    ready
}

/// Reads names, TOCs and transaction logs of `dir`.
fn read_state(dir: &Path) -> std::io::Result<DirState> {
    let mut st = DirState::default();
    if dir_kind(dir) == DirKind::Backups {
        st.linked_from = Some(live_names(dir));
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(st),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        match parse_name(&name) {
            Name::Component {
                prefix, component, ..
            } => {
                if component == "TOC.txt" {
                    match std::fs::read_to_string(&path) {
                        Ok(t) => {
                            st.tocs.insert(prefix, parse_toc(&t));
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(err),
                    }
                }
                st.files.insert(name, Version::of(&meta));
            }
            Name::TxnLog => match std::fs::read_to_string(&path) {
                Ok(t) => st.txns.push(parse_txn(&t)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => st.torn = true,
                Err(err) => return Err(err),
            },
            Name::Temporary | Name::Other => {}
        }
    }
    Ok(st)
}

/// The names in the live directory a `backups/` directory links from: `<table>` for
/// `<table>/backups`, `<table>/.<index>` for `<table>/backups/.<index>`.
fn live_names(backups: &Path) -> std::collections::BTreeSet<String> {
    let live = match backups.file_name() {
        Some(n) if n == "backups" => backups.parent().map(Path::to_path_buf),
        Some(idx) => backups.parent().and_then(Path::parent).map(|t| t.join(idx)),
        None => None,
    };
    live.and_then(|l| std::fs::read_dir(l).ok())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn state(dir: &Path) -> Result<DirState> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || read_state(&d))
        .await
        .expect("read_state panicked")
        .map_err(|e| Error::io(dir, e))
}

/// Reads of a directory, at most, until two consecutive ones agree on what is complete.
const SETTLE_READS: usize = 5;

/// The state of `dir` and its settled SSTables ([`settled`]): read until two consecutive reads
/// agree on every SSTable complete in the later one, at most [`SETTLE_READS`] times. What is
/// still unsettled then waits for the next event or rescan.
async fn settled_state(dir: &Path) -> Result<(DirState, Vec<SSTable>)> {
    let mut earlier = state(dir).await?;
    let mut later = state(dir).await?;
    let mut reads = 2;
    loop {
        let ready = settled(dir, &earlier, &later);
        if reads == SETTLE_READS || ready == complete(dir, &later) {
            return Ok((later, ready));
        }
        earlier = std::mem::replace(&mut later, state(dir).await?);
        reads += 1;
    }
}

/// Files of `names` in `dir` that the bucket does not hold at their current version.
async fn unshipped(
    ctx: &Arc<Ctx>,
    dir: &Path,
    st: &DirState,
    names: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        let path = dir.join(n);
        let Some(&v) = st.files.get(n) else { continue };
        if ctx.shipped.has_exact(&path, &v) {
            continue;
        }
        // Known by listing only. An immutable component of the same size is the same (the Python
        // rule: `-B` compares by LIST and reads no file, unless --md5-on-start asks for it).
        // Mutable components are rewritten with the same size: same size and same MD5 (the ETag
        // of a single PUT) is the same content.
        if let Some(etag) = ctx.shipped.listed_etag(&path, v.size) {
            if !is_mutable(n) && !ctx.cfg.md5_on_start {
                continue;
            }
            if etag.len() == 32 {
                let want = Expected::Md5(etag.to_ascii_lowercase());
                match hash_path(&path, Some(v.size), ChecksumKind::Md5).await {
                    Ok(d) if want.matches(&d) => {
                        ctx.shipped.insert(path, v);
                        continue;
                    }
                    Ok(_) => {}
                    Err(Error::Vanished(_) | Error::Integrity(_)) => continue,
                    Err(e) => return Err(e),
                }
            } else if !is_mutable(n) {
                // A multipart object of an immutable component: the size is the Python rule.
                continue;
            }
        } else if ctx.shipped.has(&path, &v) && !is_mutable(n) {
            continue;
        }
        out.push(n.clone());
    }
    Ok(out)
}

/// Components Cassandra rewrites after they were complete.
fn is_mutable(name: &str) -> bool {
    // Filter.db is rewritten in place when the bloom filter is rebuilt at load.
    name.ends_with("Statistics.db")
        || name.ends_with("Summary.db")
        || name.ends_with("TOC.txt")
        || name.ends_with("Filter.db")
}

/// Learns, once per directory, what the bucket already holds of it (one LIST).
async fn learn_bucket(ctx: &Arc<Ctx>, dir: &Path) -> Result<()> {
    if !ctx.first_visit(dir) {
        return Ok(());
    }
    let prefix = ctx.cfg.keys.dir_prefix(dir);
    let listed = match ctx.store.list(&prefix).await {
        Ok(l) => l,
        Err(e) => {
            ctx.forget_visit(dir);
            return Err(e);
        }
    };
    for o in listed {
        let Some(name) = o.key.strip_prefix(&prefix) else {
            continue;
        };
        if !name.contains('/') && !name.ends_with(crate::key::INDEX_SUFFIX) {
            ctx.shipped.insert_listed(dir.join(name), o.size, o.etag);
        }
    }
    Ok(())
}

/// Uploads `names` of `dir`, pinned first. Returns `None` when a file vanished before it could
/// be pinned (a compaction removed the SSTable): nothing of it counts as shipped then.
async fn upload_pinned(
    ctx: &Arc<Ctx>,
    dir: &Path,
    names: &[String],
    done: &mut Shipped,
) -> Result<Option<()>> {
    let staging = ctx.staging_for(dir);
    let (d, n) = (dir.to_path_buf(), names.to_vec());
    let pinned = tokio::task::spawn_blocking(move || pin(&staging, &d, &n))
        .await
        .expect("pin panicked")
        .map_err(|e| Error::io(dir, e))?;
    let staged = match pinned {
        Pin::Pinned(s) => s,
        Pin::Vanished(name) => {
            tracing::info!(dir = %dir.display(), file = name, "SSTable removed before it was shipped (compaction); dropped");
            return Ok(None);
        }
    };
    for (name, read) in &staged.files {
        let path = dir.join(name);
        let key = ctx.cfg.keys.data_key(&path);
        loop {
            match send(ctx, &key, read).await? {
                Sent::Done {
                    version,
                    bytes,
                    written,
                } => {
                    ctx.shipped.insert(path.clone(), version);
                    ctx.stats.shipped(bytes);
                    done.files += 1;
                    done.bytes += bytes;
                    tracing::info!(key, bytes, ?written, "uploaded");
                    break;
                }
                // Appended while we read it (a 5.0 TOC): send it again.
                Sent::Changed => continue,
            }
        }
    }
    Ok(Some(()))
}

/// Listings read again, at most, while a just-shipped SSTable is missing from its own index.
const INDEX_REREADS: u32 = 20;
/// The pause between those reads.
const INDEX_REREAD_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether an index listing `names` names every file of `s`.
fn names_itself(names: &[String], s: &SSTable) -> bool {
    s.names.iter().all(|n| names.binary_search(n).is_ok())
}

/// The names an index of `dir` lists now: for `backups/` every file shipped from it (incremental
/// backups are cumulative); else the live set, restricted to SSTables whose every file is in
/// the bucket at its current version. Sorted.
async fn index_names(ctx: &Arc<Ctx>, dir: &Path, backups: bool) -> Result<Vec<String>> {
    let mut names = if backups {
        ctx.shipped.names_in(dir)
    } else {
        let (now, ready) = settled_state(dir).await?;
        let mut names = Vec::new();
        for s in shippable(ctx, dir, ready) {
            if s.names.iter().all(|n| {
                now.files
                    .get(n)
                    .is_some_and(|v| ctx.shipped.has(&dir.join(n), v))
            }) {
                names.extend(s.names);
            }
        }
        names
    };
    names.sort();
    names.dedup();
    Ok(names)
}

async fn ship_sstables(ctx: &Arc<Ctx>, dir: &Path, backups: bool) -> Result<Shipped> {
    let mut done = Shipped::default();
    let (st, ready) = settled_state(dir).await?;
    let ready = shippable(ctx, dir, ready);
    if ready.is_empty() {
        return Ok(done);
    }
    learn_bucket(ctx, dir).await?;
    let mut touched: Vec<SSTable> = Vec::new();
    for s in &ready {
        let names = unshipped(ctx, dir, &st, &s.names).await?;
        if names.is_empty() {
            continue;
        }
        if upload_pinned(ctx, dir, &names, &mut done).await?.is_some() {
            touched.push(s.clone());
        }
    }
    if touched.is_empty() {
        return Ok(done);
    }

    if ctx.cfg.with_index {
        // An index names its own SSTable, or it describes a moment that never was. A listing
        // read while the directory changes (a transaction log being appended, a component being
        // rewritten) may leave a just-shipped SSTable out: read again, a few times, while one
        // that is still on disk is missing. One that stays missing (a component rewritten since
        // it was shipped) gets its index when that component is shipped again.
        let mut tries = 0;
        let names = loop {
            let names = index_names(ctx, dir, backups).await?;
            let left_out = touched.iter().any(|s| {
                !names_itself(&names, s) && s.data.as_ref().is_some_and(|d| dir.join(d).exists())
            });
            if !left_out || tries >= INDEX_REREADS {
                break names;
            }
            tries += 1;
            tokio::time::sleep(INDEX_REREAD_GAP).await;
        };
        let body = Bytes::from(crate::index::body(dir, &names));
        for s in &touched {
            let Some(data) = &s.data else { continue };
            if !names_itself(&names, s) {
                tracing::debug!(dir = %dir.display(), data, "no index yet: the live set does not hold this SSTable whole");
                continue;
            }
            let key = ctx.cfg.keys.index_key(&dir.join(data));
            ctx.store
                .put(
                    &key,
                    Source::Memory(body.clone()),
                    &ObjectMeta::json(),
                    None,
                )
                .await?;
            ctx.stats.index_written();
            done.indexes += 1;
            tracing::info!(key, entries = names.len(), "index written");
        }
    }
    if backups && ctx.cfg.delete_on_backup {
        // Draining backups/ is the point of shipping it: the links go once the set is shipped.
        for s in &touched {
            for n in &s.names {
                match tokio::fs::remove_file(dir.join(n)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %dir.join(n).display(), error = %e, "could not delete after backup")
                    }
                }
            }
            tracing::info!(dir = %dir.display(), sstable = s.prefix, "deleted from backups/ after upload");
        }
    }
    Ok(done)
}

/// What a snapshot's manifest.json and marker file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ephemeral {
    /// Ephemeral (a repair's): never shipped.
    Yes,
    /// Not ephemeral: the manifest (5.0) says so.
    No,
    /// Not known yet: up to 4.1 the `ephemeral.snapshot` marker is written after the manifest
    /// (and after schema.cql), so only time tells.
    Unknown,
}

fn ephemeral(tag: &Path) -> Ephemeral {
    if tag.join("ephemeral.snapshot").exists() {
        return Ephemeral::Yes;
    }
    let flag = std::fs::read(tag.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["ephemeral"].clone());
    match flag {
        Some(serde_json::Value::Bool(true)) => Ephemeral::Yes,
        Some(serde_json::Value::Bool(false)) => Ephemeral::No,
        _ => Ephemeral::Unknown,
    }
}

/// The directory of this snapshot that holds its manifest.json: `tag` itself, or with several
/// data directories (JBOD) the same snapshot on another watched root, since Cassandra writes the
/// SSTable links on every disk but manifest.json, schema.cql and the ephemeral marker on one.
fn manifest_dir(ctx: &Ctx, tag: &Path) -> Option<PathBuf> {
    if tag.join("manifest.json").exists() {
        return Some(tag.to_path_buf());
    }
    siblings(ctx, tag)
        .into_iter()
        .find(|t| t.join("manifest.json").exists())
}

async fn ship_snapshot(ctx: &Arc<Ctx>, tag: &Path) -> Result<Shipped> {
    let mut done = Shipped::default();
    let manifest = tag.join("manifest.json");
    let Some(home) = manifest_dir(ctx, tag) else {
        return Ok(done);
    };
    let Ok(mmeta) = tokio::fs::metadata(home.join("manifest.json")).await else {
        return Ok(done);
    };
    let kind = ephemeral(&home);
    if kind == Ephemeral::Yes {
        tracing::debug!(snapshot = %tag.display(), "ephemeral snapshot skipped");
        return Ok(done);
    }
    if !ctx.cfg.filter.accepts(&manifest.to_string_lossy()) {
        return Ok(done);
    }
    // schema.cql follows manifest.json, and up to 4.1 the ephemeral marker follows both: give
    // them a moment, then decide (and ship without a schema that never came).
    let age = mmeta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .unwrap_or_default();
    let settled = match kind {
        Ephemeral::No => home.join("schema.cql").exists(),
        _ => false,
    };
    if !settled && age < SCHEMA_WAIT {
        tracing::info!(snapshot = %tag.display(), "snapshot not settled (schema.cql, ephemeral marker); deciding later");
        let (c, t) = (ctx.clone(), tag.to_path_buf());
        tokio::spawn(async move {
            tokio::time::sleep(SCHEMA_WAIT - age).await;
            c.enqueue_work(Work::Dir(t)).await;
        });
        return Ok(done);
    }
    let t = tag.to_path_buf();
    let files = tokio::task::spawn_blocking(move || crate::scan::walk(&t, true, &[]))
        .await
        .expect("walk panicked");
    let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<(String, Version)>> =
        Default::default();
    for (p, v) in files {
        let name = p
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        by_dir
            .entry(p.parent().expect("has parent").to_path_buf())
            .or_default()
            .push((name, v));
    }
    for (dir, files) in &by_dir {
        learn_bucket(ctx, dir).await?;
        let st = DirState {
            files: files.iter().cloned().collect(),
            ..DirState::default()
        };
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let todo = unshipped(ctx, dir, &st, &names).await?;
        if !todo.is_empty() && upload_pinned(ctx, dir, &todo, &mut done).await?.is_none() {
            return Ok(done);
        }
    }
    if ctx.cfg.with_index && (done.files > 0 || !index_exists(ctx, &manifest).await?) {
        let mut names: Vec<String> = by_dir
            .get(tag)
            .map(|f| f.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let subdirs: HashSet<String> = by_dir
            .keys()
            .filter_map(|d| d.strip_prefix(tag).ok()?.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.extend(subdirs);
        names.sort();
        let key = ctx.cfg.keys.index_key(&manifest);
        let body = Bytes::from(crate::index::body(tag, &names));
        ctx.store
            .put(&key, Source::Memory(body), &ObjectMeta::json(), None)
            .await?;
        ctx.stats.index_written();
        done.indexes += 1;
        tracing::info!(key, entries = names.len(), "snapshot index written");
    }
    if home == tag && done.files > 0 {
        // Its parts on the other data directories have no manifest of their own to wake them.
        for other in siblings(ctx, tag) {
            ctx.enqueue_work(Work::Dir(other)).await;
        }
    }
    Ok(done)
}

/// The same snapshot directory on the other watched roots, where it exists.
fn siblings(ctx: &Ctx, tag: &Path) -> Vec<PathBuf> {
    let roots = &ctx.cfg.paths;
    let Some(root) = roots
        .iter()
        .filter(|r| tag.starts_with(r))
        .max_by_key(|r| r.as_os_str().len())
    else {
        return vec![];
    };
    let Ok(rel) = tag.strip_prefix(root) else {
        return vec![];
    };
    roots
        .iter()
        .filter(|r| *r != root)
        .map(|r| r.join(rel))
        .filter(|t| t.is_dir())
        .collect()
}

async fn index_exists(ctx: &Arc<Ctx>, manifest: &Path) -> Result<bool> {
    Ok(ctx
        .store
        .head(&ctx.cfg.keys.index_key(manifest))
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_names_itself_only_with_every_file() {
        let s = SSTable {
            data: Some("nb-2-big-Data.db".into()),
            names: vec!["nb-2-big-Data.db".into(), "nb-2-big-TOC.txt".into()],
            prefix: "nb-2-big-".into(),
        };
        let all = vec![
            "nb-1-big-Data.db".to_string(),
            "nb-2-big-Data.db".into(),
            "nb-2-big-TOC.txt".into(),
        ];
        assert!(names_itself(&all, &s));
        assert!(!names_itself(&all[..2], &s), "a component left out");
        assert!(
            !names_itself(&[], &s),
            "the empty listing seen once under load"
        );
    }
}
