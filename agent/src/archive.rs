//! The commit log archive as its own source (`--commitlog-archive`): every segment Cassandra's
//! `archive_command` puts in the directory is shipped once complete, oldest first, with its
//! [`SegmentMeta`], and removed locally once the upload is confirmed. While storage is down the
//! directory is a bounded spool: past `--commitlog-spool-max` the oldest segments are deleted
//! unshipped, each named in an ERROR line, and the recoverable window restarts after them.
//!
//! [`crate::spool`] decides (which segments are complete, which the cap drops, the window); this
//! module reads the directory, uploads, removes, and keeps the metrics.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::agent::Ctx;
use crate::classify::Happened;
use crate::config::CommitlogSource;
use crate::segment::{self, META_KEY, SegmentMeta};
use crate::spool::{OnDisk, State, decide};
use crate::upload::{self, Sent};
use crate::watch::{WatchEvent, Watcher};

/// How often the directory is read again without an event.
const TICK: Duration = Duration::from_secs(5);

/// The segment files in `dir` (other names are left alone).
pub fn read_dir(dir: &Path) -> std::io::Result<Vec<OnDisk>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((version, id)) = segment::parse_name(&name) else {
            continue;
        };
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() {
            continue;
        }
        out.push(OnDisk {
            name,
            id,
            version,
            size: m.len(),
            nlink: m.nlink(),
            mtime: m.mtime() * 1000 + m.mtime_nsec() / 1_000_000,
        });
    }
    Ok(out)
}

/// The oldest segment id in Cassandra's live commit log directory.
fn oldest_live(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| segment::parse_name(&e.file_name().to_string_lossy()).map(|(_, id)| id))
        .min()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Ships the archive in `src` until `stop` turns true, then once more what is complete (within
/// the caller's grace period).
pub async fn run(ctx: Arc<Ctx>, src: CommitlogSource, mut stop: watch::Receiver<bool>) {
    let mut watcher = match Watcher::new().and_then(|mut w| {
        w.add_tree(&src.archive, false, &[])?;
        Ok(w)
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(dir = %src.archive.display(), error = %e, "cannot watch the commit log archive; reading it every 5 s");
            None
        }
    };
    tracing::info!(dir = %src.archive.display(), live = ?src.live, "shipping archived commit log segments");
    let mut st = State::default();
    loop {
        let wait = pass(&ctx, &src, &mut st).await;
        if *stop.borrow() {
            break;
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = stop.changed() => break,
                ev = next_event(&mut watcher) => {
                    if let Some(WatchEvent::Fs { path, what, .. }) = ev {
                        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                        if let Some(n) = name.filter(|n| segment::parse_name(n).is_some()) {
                            if matches!(what, Happened::ClosedWrite | Happened::MovedTo) {
                                st.closed.insert(n);
                            }
                            // A failed upload waits out its backoff; a new segment does not.
                            if st.attempt == 0 {
                                break;
                            }
                        }
                    }
                }
            }
        }
        if *stop.borrow() {
            pass(&ctx, &src, &mut st).await;
            break;
        }
    }
}

async fn next_event(w: &mut Option<Watcher>) -> Option<WatchEvent> {
    match w {
        Some(w) => match w.next().await {
            Some(Ok(ev)) => Some(ev),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "inotify on the commit log archive failed");
                None
            }
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Reads the directory once, drops what the cap says, ships what is complete; returns how long to
/// wait before the next pass.
async fn pass(ctx: &Ctx, src: &CommitlogSource, st: &mut State) -> Duration {
    let dir = src.archive.clone();
    let on_disk = match tokio::task::spawn_blocking(move || read_dir(&dir)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(dir = %src.archive.display(), error = %e, "cannot read the commit log archive");
            return TICK;
        }
        Err(_) => return TICK,
    };
    let now = now_ms();
    let present: HashSet<&str> = on_disk.iter().map(|s| s.name.as_str()).collect();
    st.seen.retain(|n, _| present.contains(n.as_str()));
    st.closed.retain(|n| present.contains(n.as_str()));
    for s in &on_disk {
        st.seen.entry(s.name.clone()).or_insert(now);
    }
    let by_name: HashMap<&str, &OnDisk> = on_disk.iter().map(|s| (s.name.as_str(), s)).collect();
    let d = decide(&on_disk, &st.closed, now, src.spool_max);
    for name in &d.drop {
        let path = src.archive.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                ctx.stats.segments_dropped.inc();
                st.dropped(by_name[name.as_str()].id);
                tracing::error!(
                    segment = %name,
                    cap_bytes = src.spool_max.unwrap_or(0),
                    "commit log spool full: segment deleted unshipped; point-in-time restore cannot cross it"
                );
            }
            Err(e) => {
                tracing::error!(segment = %name, error = %e, "cannot delete a segment over the spool cap")
            }
        }
    }
    publish(ctx, &on_disk, &d.drop, st);
    let mut wait = TICK;
    for name in &d.ship {
        let s = by_name[name.as_str()];
        let path = src.archive.join(name);
        let meta = SegmentMeta {
            id: s.id,
            version: s.version,
            last_write: s.mtime,
            seen: st.seen.get(name).copied().unwrap_or(now),
            oldest_live: None,
            live_at: None,
            node: ctx.cfg.keys.name().to_string(),
            cassandra_version: src.cassandra_version.clone(),
        };
        let meta = match &src.live {
            Some(live) => {
                let at = now_ms();
                SegmentMeta {
                    oldest_live: oldest_live(live),
                    live_at: Some(at),
                    ..meta
                }
            }
            None => meta,
        };
        let key = ctx.cfg.keys.data_key(&path);
        match upload::send_with(ctx, &key, &path, &[(META_KEY, meta.to_json())]).await {
            Ok(Sent::Done { bytes, .. }) => {
                st.attempt = 0;
                ctx.stats.shipped(bytes);
                ctx.stats.segments_shipped.inc();
                st.shipped(meta.id, meta.last_write);
                tracing::info!(segment = %name, key, bytes, "commit log segment shipped");
                remove_shipped(&path).await;
                st.seen.remove(name);
                st.closed.remove(name);
            }
            Ok(Sent::Changed) => {
                tracing::info!(segment = %name, "segment changed while it was uploaded; sending it again");
                wait = Duration::from_millis(200);
                break;
            }
            Err(e) => {
                ctx.stats.failed(e.reason());
                wait = crate::retry::delay(st.attempt, crate::retry::CAP);
                st.attempt += 1;
                tracing::warn!(segment = %name, error = %e, retry_in = ?wait, "segment upload failed; it stays in the archive");
                break;
            }
        }
    }
    publish(ctx, &on_disk, &d.drop, st);
    wait
}

/// The archive's metrics, from what is left on disk after `dropped` and the shipped segments (no
/// longer in `st.seen`): set once the drops are done, before any upload (which may hang while the
/// storage does not answer), and again at the end of the pass.
fn publish(ctx: &Ctx, on_disk: &[OnDisk], dropped: &[String], st: &State) {
    let left: Vec<&OnDisk> = on_disk
        .iter()
        .filter(|s| !dropped.contains(&s.name) && st.seen.contains_key(&s.name))
        .collect();
    let oldest = left.iter().filter_map(|s| st.seen.get(&s.name)).min();
    ctx.stats
        .archive_lag
        .set(oldest.map_or(0, |t| ((now_ms() - t) / 1000).max(0)));
    ctx.stats.spool_bytes.set(
        left.iter()
            .filter(|s| s.nlink < 2)
            .map(|s| s.size as i64)
            .sum(),
    );
    match st.window {
        Some((start, end)) => {
            ctx.stats.window_start.set(start / 1000);
            ctx.stats.window_end.set(end / 1000);
        }
        None => {
            ctx.stats.window_start.set(0);
            ctx.stats.window_end.set(0);
        }
    }
}

/// Removes a segment whose upload is confirmed; Cassandra's own file (if still linked) stays.
async fn remove_shipped(path: &PathBuf) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a shipped segment")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_names_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("CommitLog-7-5.log"), b"abc").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("CommitLog-7-6.log")).unwrap();
        std::fs::hard_link(
            dir.path().join("CommitLog-7-5.log"),
            dir.path().join("linked"),
        )
        .unwrap();
        // The last write in milliseconds, from the file's modification time.
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("CommitLog-7-5.log"))
            .unwrap()
            .set_modified(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            )
            .unwrap();
        let got = read_dir(dir.path()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].id, got[0].size, got[0].nlink), (5, 3, 2));
        assert_eq!(got[0].mtime, 1_700_000_000_123);
        let now = jiff::Timestamp::now().as_millisecond();
        assert!((now_ms() - now).abs() < 5_000, "{} vs {now}", now_ms());
        assert_eq!(oldest_live(dir.path()), Some(5));
    }
}
