//! Wires the stages together: watch → classify → queue → upload → index → cleanup, plus the
//! startup scan, retries, and a staged shutdown.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::classify::{Action, classify};
use crate::cli::Mode;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::index::IndexMsg;
use crate::key::wants_index;
use crate::metrics::Stats;
use crate::queue::{self, Queue, Shipped, Work};
use crate::store::{Store, StoreOptions};
use crate::upload::{self, Shipment};
use crate::watch::{WatchEvent, Watcher};

/// Name of the default staging directory inside each watched path (cassandra mode).
pub const STAGING_NAME: &str = ".tablesnap-staging";

/// What every stage shares.
#[derive(Debug)]
pub struct Ctx {
    /// The validated configuration.
    pub cfg: Config,
    /// Where objects go.
    pub store: Store,
    /// Files waiting to be shipped.
    pub queue: Queue,
    /// What is in the bucket.
    pub shipped: Shipped,
    /// To the index writer.
    pub index_tx: mpsc::Sender<IndexMsg>,
    /// Counters.
    pub stats: Stats,
    /// Failed attempts per unit of work still to be retried, and whether its retry is scheduled.
    retrying: Mutex<HashMap<Work, Retrying>>,
    /// Work seen but not yet done, with the unix time it was first seen.
    outstanding: Mutex<HashMap<Work, i64>>,
    /// One lock per directory, so that two jobs never ship the same directory at once.
    dir_locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Directories whose objects were listed once (cassandra mode).
    visited: Mutex<HashSet<PathBuf>>,
    /// Staging directory of each watched root (cassandra mode).
    staging: Vec<(PathBuf, PathBuf)>,
    /// An overflow asked for a rescan that has not started yet.
    overflow_wanted: AtomicBool,
    /// An overflow rescan task is running.
    overflow_running: AtomicBool,
}

impl Ctx {
    /// Queues `path` for shipping and remembers since when it waits.
    pub async fn enqueue(&self, path: PathBuf) {
        self.enqueue_work(Work::File(path)).await;
    }

    /// Queues `work` and remembers since when it waits.
    pub async fn enqueue_work(&self, work: Work) {
        self.outstanding
            .lock()
            .expect("poisoned")
            .entry(work.clone())
            .or_insert_with(crate::metrics::now);
        self.queue.push(work).await;
    }

    /// The lock of directory `dir`.
    pub fn dir_lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.dir_locks
            .lock()
            .expect("poisoned")
            .entry(dir.to_path_buf())
            .or_default()
            .clone()
    }

    /// True the first time it is asked about `dir`.
    pub fn first_visit(&self, dir: &Path) -> bool {
        self.visited
            .lock()
            .expect("poisoned")
            .insert(dir.to_path_buf())
    }

    /// Undoes [`Ctx::first_visit`] (the listing failed).
    pub fn forget_visit(&self, dir: &Path) {
        self.visited.lock().expect("poisoned").remove(dir);
    }

    /// The staging directory for files below `dir`.
    pub fn staging_for(&self, dir: &Path) -> PathBuf {
        self.staging
            .iter()
            .filter(|(root, _)| dir.starts_with(root))
            .max_by_key(|(root, _)| root.as_os_str().len())
            .or(self.staging.first())
            .map(|(_, s)| s.clone())
            .expect("at least one watched path")
    }

    /// Number of files seen and not yet shipped.
    pub fn outstanding_len(&self) -> usize {
        self.outstanding.lock().expect("poisoned").len()
    }

    /// The paths of the work not yet done, sorted.
    pub fn outstanding_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .outstanding
            .lock()
            .expect("poisoned")
            .keys()
            .map(|w| w.path().to_path_buf())
            .collect();
        v.sort();
        v
    }

    /// When the oldest file not yet shipped was first seen.
    pub fn oldest_outstanding(&self) -> Option<i64> {
        self.outstanding
            .lock()
            .expect("poisoned")
            .values()
            .min()
            .copied()
    }

    /// Forgets work that needs nothing more (shipped, vanished, not a file).
    fn settled(&self, work: &Work) {
        self.outstanding.lock().expect("poisoned").remove(work);
        self.retrying.lock().expect("poisoned").remove(work);
    }

    /// Directories the agent never ships from or watches (its own staging).
    pub fn skip_dirs(&self) -> Vec<PathBuf> {
        let mut skip: Vec<PathBuf> = self.staging.iter().map(|(_, s)| s.clone()).collect();
        // The commit log archive is its own source, even inside a watched path.
        skip.extend(self.cfg.commitlog.iter().map(|c| c.archive.clone()));
        skip
    }

    fn cassandra(&self) -> bool {
        self.cfg.mode == Mode::Cassandra
    }
}

/// Runs the agent until `shutdown` resolves (first signal), then drains within the grace period.
pub async fn run(cfg: Config, mut signals: mpsc::Receiver<()>) -> Result<()> {
    tracing::debug!(config = ?cfg, "configuration");
    let opts = StoreOptions {
        sizing: cfg.sizing,
        write: cfg.write.clone(),
        max_parts_in_flight: (cfg.threads * 2).max(4),
    };
    let store = Store::open(&cfg.store, opts).await?;

    // Staging (cassandra mode): beside the data of each watched path unless given; what a
    // previous run left there is removed.
    let staging: Vec<(PathBuf, PathBuf)> = cfg
        .paths
        .iter()
        .map(|root| {
            (
                root.clone(),
                cfg.staging_dir
                    .clone()
                    .unwrap_or_else(|| root.join(STAGING_NAME)),
            )
        })
        .collect();
    if cfg.mode == Mode::Cassandra {
        for (_, s) in &staging {
            match crate::stage::clean(s) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(staging = %s.display(), entries = n, "removed staging left by an earlier run")
                }
                Err(e) => {
                    return Err(Error::InvalidConfig(format!(
                        "--staging-dir {:?}: cannot clean it ({e})",
                        s.display().to_string()
                    )));
                }
            }
        }
    }

    // Watches first: while we wait for the store, the kernel keeps the events.
    let mut watcher = Watcher::new()?;
    let mut skip: Vec<PathBuf> = staging.iter().map(|(_, s)| s.clone()).collect();
    skip.extend(cfg.commitlog.iter().map(|c| c.archive.clone()));
    let mut watched = Vec::new();
    for root in &cfg.paths {
        watched.push((
            root.clone(),
            watcher.add_tree(root, cfg.recursive, &skip)?.len(),
        ));
    }
    let wait_for_bucket = cfg.wait_for_bucket;
    let (queue, queue_rx) = Queue::new(queue::CAPACITY);
    let (index_tx, index_rx) = mpsc::channel(1024);
    let ctx = Arc::new(Ctx {
        cfg,
        store,
        queue,
        shipped: Shipped::default(),
        index_tx: index_tx.clone(),
        stats: Stats::default(),
        retrying: Mutex::default(),
        outstanding: Mutex::default(),
        dir_locks: Mutex::default(),
        visited: Mutex::default(),
        staging,
        overflow_wanted: AtomicBool::new(false),
        overflow_running: AtomicBool::new(false),
    });
    ctx.stats.beat_event_loop();
    ctx.stats.beat_uploader();
    // /healthz before the bucket check: a sidecar that waits out a wrong bucket, refused
    // credentials or an unreachable endpoint is alive and says so, instead of being restarted by
    // its liveness probe into a crash loop that takes the Cassandra pod NotReady.
    if let Some(addr) = ctx.cfg.http_listen {
        crate::http::serve(addr, ctx.clone()).await?;
    }
    // The commit log archive is a spool from the start: its cap holds while the agent waits for
    // the bucket too (its uploads fail and are retried meanwhile).
    let (stop_tx, stop_rx) = watch::channel(false);
    let archive_task = ctx
        .cfg
        .commitlog
        .clone()
        .map(|src| tokio::spawn(crate::archive::run(ctx.clone(), src, stop_rx.clone())));
    if !wait_for_store(&ctx.store, wait_for_bucket, &mut signals, &ctx.stats).await? {
        // A signal while waiting: nothing can be shipped, and the segments stay for the next run.
        if let Some(t) = archive_task {
            t.abort();
        }
        return Ok(());
    }
    ctx.stats.storage_ready.set(1);
    for (root, n) in watched {
        tracing::info!(path = %root.display(), directories = n, "watching");
    }
    let index_task = tokio::spawn(crate::index::run(ctx.clone(), index_rx, index_tx.clone()));
    let dispatcher = tokio::spawn(dispatch(ctx.clone(), queue_rx, stop_rx));

    if ctx.cfg.backup {
        let c = ctx.clone();
        tokio::spawn(async move { rescan(&c, "start").await });
    }
    if let Some(every) = ctx.cfg.rescan_interval {
        // One scan at a time: the next waits for the last to finish (it retries while the
        // bucket does not answer).
        let c = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                rescan(&c, "periodic").await;
            }
        });
    }

    // The watch loop runs here until the first signal.
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        ctx.stats.beat_event_loop();
        tokio::select! {
            _ = beat.tick() => {}
            ev = watcher.next() => match ev {
                Some(Ok(ev)) => on_event(&ctx, &mut watcher, ev).await,
                Some(Err(e)) => tracing::error!(error = %e, "inotify failed; rescanning"),
                None => break,
            },
            _ = signals.recv() => break,
        }
    }

    // Staged shutdown. Events the kernel already holds are files written before the signal:
    // take them too (for a bounded time), then stop watching, and drain the queue and in-flight
    // uploads until the deadline.
    let until =
        tokio::time::Instant::now() + (ctx.cfg.shutdown_timeout / 4).min(PENDING_EVENTS_MAX);
    let mut pending = 0usize;
    while let Ok(Some(Ok(ev))) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + PENDING_EVENT_GAP),
        watcher.next(),
    )
    .await
    {
        on_event(&ctx, &mut watcher, ev).await;
        pending += 1;
    }
    if pending > 0 {
        tracing::info!(events = pending, "took the events pending at the signal");
    }
    drop(watcher);
    let timeout = ctx.cfg.shutdown_timeout;
    tracing::info!(queued = ctx.queue.len(), grace = ?timeout, "shutting down: finishing queued and in-flight uploads");
    let _ = stop_tx.send(true);
    let drained = async {
        let _ = dispatcher.await;
        if let Some(t) = archive_task {
            let _ = t.await;
        }
        let (tx, rx) = oneshot::channel();
        if ctx.index_tx.send(IndexMsg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    };
    tokio::select! {
        _ = drained => {
            // Work waiting for a retry is not in the queue: it did not land either.
            if ctx.outstanding_len() == 0 {
                tracing::info!(requests = %ctx.store.requests(), "all uploads finished");
            } else {
                log_unshipped(&ctx, "uploads stopped with files still failing");
            }
        }
        _ = tokio::time::sleep(timeout) => {
            log_unshipped(&ctx, "grace period over");
        }
        _ = signals.recv() => {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
    index_task.abort();
    Ok(())
}

/// Names every file (or SSTable directory) not shipped at exit, at most [`UNSHIPPED_NAMED`] of
/// them, then the count: a person can see what the next start with `-B` will ship.
fn log_unshipped(ctx: &Ctx, why: &str) {
    let left = ctx.outstanding_paths();
    for p in left.iter().take(UNSHIPPED_NAMED) {
        tracing::warn!(path = %p.display(), "not shipped before exit");
    }
    tracing::warn!(
        left = left.len(),
        named = left.len().min(UNSHIPPED_NAMED),
        "{why}; files not shipped are shipped at the next start with -B"
    );
}

/// At shutdown, pending inotify events are read until none comes for this long...
const PENDING_EVENT_GAP: Duration = Duration::from_millis(50);
/// ...or for this long at most (and a quarter of the grace period at most).
const PENDING_EVENTS_MAX: Duration = Duration::from_secs(5);

/// How many unshipped files the shutdown names one by one.
const UNSHIPPED_NAMED: usize = 1000;

/// Sleeps `delay` (false when a signal came first). Waiting for the store is the loops' work for
/// now: both heartbeats stay fresh, in steps shorter than the health endpoint's limit.
async fn pause(
    delay: Duration,
    signals: &mut mpsc::Receiver<()>,
    stats: &crate::metrics::Stats,
) -> bool {
    let until = tokio::time::Instant::now() + delay;
    let step = Duration::from_secs(u64::try_from(crate::http::MAX_BEAT_AGE / 2).unwrap_or(30));
    loop {
        stats.beat_event_loop();
        stats.beat_uploader();
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep((until - now).min(step)) => {}
            _ = signals.recv() => return false,
        }
    }
}

/// Checks the bucket once at start. Wrong names and refused credentials are errors; a store that
/// does not answer is waited for. Returns `false` when a signal came while waiting.
async fn wait_for_store(
    store: &Store,
    wait_for_bucket: bool,
    signals: &mut mpsc::Receiver<()>,
    stats: &crate::metrics::Stats,
) -> Result<bool> {
    let mut attempt = 0;
    loop {
        stats.beat_event_loop();
        stats.beat_uploader();
        match store.check().await {
            Ok(()) => return Ok(true),
            Err(e @ Error::InvalidConfig(_)) if !wait_for_bucket => return Err(e),
            Err(e @ (Error::NotFound(_) | Error::Permission(_))) if !wait_for_bucket => {
                return Err(Error::InvalidConfig(e.to_string()));
            }
            Err(e @ (Error::NotFound(_) | Error::Permission(_) | Error::InvalidConfig(_))) => {
                let delay = crate::retry::delay(attempt, crate::retry::PERMANENT_CAP);
                tracing::error!(error = %e, reason = e.reason(), retry_in = ?delay, "the bucket refuses us; nothing ships until this is fixed");
                attempt += 1;
                if !pause(delay, signals, stats).await {
                    return Ok(false);
                }
            }
            Err(e) => {
                let delay = crate::retry::delay(attempt, Duration::from_secs(30));
                tracing::warn!(error = %e, retry_in = ?delay, "storage does not answer; waiting for it");
                attempt += 1;
                if !pause(delay, signals, stats).await {
                    return Ok(false);
                }
            }
        }
    }
}

async fn on_event(ctx: &Arc<Ctx>, watcher: &mut Watcher, ev: WatchEvent) {
    match ev {
        WatchEvent::Overflow => {
            ctx.stats.overflows.inc();
            tracing::warn!("inotify queue overflowed; rescanning every watched path");
            overflow_rescan(ctx);
        }
        WatchEvent::Fs { path, what, is_dir } => {
            let cfg = &ctx.cfg;
            if ctx.skip_dirs().iter().any(|s| path.starts_with(s)) {
                return;
            }
            if is_dir
                && cfg.auto_add
                && matches!(
                    what,
                    crate::classify::Happened::Created | crate::classify::Happened::MovedTo
                )
            {
                match watcher.add_tree(&path, true, &ctx.skip_dirs()) {
                    Ok(dirs) => {
                        tracing::info!(path = %path.display(), directories = dirs.len(), "watching new directory");
                        // Files can land before the watch exists: look at what is already there.
                        let c = ctx.clone();
                        tokio::spawn(async move { ship_existing(&c, &path).await });
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot watch new directory")
                    }
                }
                return;
            }
            if ctx.cassandra() {
                if !is_dir && let Some(work) = crate::cassandra::work_for(&path, false) {
                    ctx.enqueue_work(work).await;
                }
                return;
            }
            if classify(
                what,
                is_dir,
                &path,
                &cfg.listen_events,
                &cfg.filter,
                cfg.auto_add,
            ) == Action::Ship
            {
                ctx.enqueue(path).await;
            }
        }
    }
}

/// Queues every accepted file below a directory that was just watched.
async fn ship_existing(ctx: &Arc<Ctx>, dir: &Path) {
    let d = dir.to_path_buf();
    let skip = ctx.skip_dirs();
    if ctx.cassandra() {
        let dirs = tokio::task::spawn_blocking(move || crate::scan::dirs(&d, true, &skip))
            .await
            .unwrap_or_default();
        for dir in dirs {
            if let Some(work) = crate::cassandra::work_for(&dir, true) {
                ctx.enqueue_work(work).await;
            }
        }
        return;
    }
    let files = tokio::task::spawn_blocking(move || crate::scan::walk(&d, true, &skip))
        .await
        .unwrap_or_default();
    for (path, _) in files {
        if ctx.cfg.filter.accepts(&path.to_string_lossy()) {
            ctx.enqueue(path).await;
        }
    }
}

/// Asks for a rescan after an overflow. Overflows come in storms: while one rescan runs, those
/// that follow fold into one more rescan after it, never into one each.
fn overflow_rescan(ctx: &Arc<Ctx>) {
    ctx.overflow_wanted.store(true, Ordering::SeqCst);
    if ctx.overflow_running.swap(true, Ordering::SeqCst) {
        return;
    }
    let c = ctx.clone();
    tokio::spawn(async move {
        loop {
            while c.overflow_wanted.swap(false, Ordering::SeqCst) {
                rescan(&c, "overflow").await;
            }
            c.overflow_running.store(false, Ordering::SeqCst);
            // An overflow that came after the last check and saw us running is ours to serve.
            if !c.overflow_wanted.load(Ordering::SeqCst)
                || c.overflow_running.swap(true, Ordering::SeqCst)
            {
                break;
            }
        }
    });
}

/// Compares every watched root with the bucket, retrying until the bucket answers.
async fn rescan(ctx: &Arc<Ctx>, why: &'static str) {
    for root in &ctx.cfg.paths {
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let result = if ctx.cassandra() {
                crate::scan::reconcile_dirs(ctx, root, ctx.cfg.recursive).await
            } else {
                crate::scan::reconcile(ctx, root, ctx.cfg.recursive).await
            };
            match result {
                Ok(s) => {
                    tracing::info!(
                        why,
                        path = %root.display(),
                        files = s.files,
                        present = s.present,
                        queued = s.queued,
                        list_requests = s.list_requests,
                        seconds = started.elapsed().as_secs_f64(),
                        "scan finished"
                    );
                    ctx.stats
                        .scan_millis
                        .get_or_create(&crate::metrics::WhyLabel { why })
                        .set(started.elapsed().as_millis() as i64);
                    let prefix = ctx.cfg.keys.dir_prefix(root);
                    match ctx.store.tidy(&prefix).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(why, path = %root.display(), aborted = n, "aborted unfinished multipart uploads")
                        }
                        Err(e) => {
                            tracing::warn!(why, path = %root.display(), error = %e, "could not list unfinished multipart uploads")
                        }
                    }
                    break;
                }
                Err(e) => {
                    let delay = crate::retry::delay(attempt, crate::retry::CAP);
                    tracing::warn!(why, path = %root.display(), error = %e, retry_in = ?delay, "scan failed");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Takes queued files and ships up to `threads` at once; after `stop`, drains what is queued.
async fn dispatch(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Work>, mut stop: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(ctx.cfg.threads));
    let mut tasks = JoinSet::new();
    let mut beat = tokio::time::interval(Duration::from_secs(5));
    loop {
        // Wait for a free slot, then for work; the beat shows the loop is alive either way.
        ctx.stats.beat_uploader();
        let permit = tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = beat.tick() => continue,
            p = limit.clone().acquire_owned() => p.expect("never closed"),
        };
        let path = tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = beat.tick() => continue,
            Some(work) = rx.recv() => work,
        };
        ctx.queue.taken(&path);
        let c = ctx.clone();
        tasks.spawn(async move {
            job(&c, path).await;
            drop(permit)
        });
        while tasks.try_join_next().is_some() {}
    }
    loop {
        while let Ok(path) = rx.try_recv() {
            let permit = limit.clone().acquire_owned().await.expect("never closed");
            ctx.queue.taken(&path);
            let c = ctx.clone();
            tasks.spawn(async move {
                job(&c, path).await;
                drop(permit)
            });
        }
        if tasks.join_next().await.is_none() {
            break;
        }
    }
}

/// A unit of work that failed: how many times, and whether a retry of it is already scheduled.
#[derive(Debug, Default)]
struct Retrying {
    attempts: u32,
    scheduled: bool,
}

/// Does one unit of work and routes the outcome: index, cleanup, or a later retry.
async fn job(ctx: &Arc<Ctx>, work: Work) {
    let result = match &work {
        Work::File(path) => ship_file(ctx, path).await,
        Work::Dir(dir) => crate::cassandra::ship_dir(ctx, dir).await.map(|_| ()),
    };
    match result {
        Ok(()) => ctx.settled(&work),
        Err(Error::Vanished(p)) => {
            ctx.settled(&work);
            tracing::info!(path = %p.display(), "file vanished before it was shipped; dropped");
        }
        Err(e) => {
            ctx.stats.failed(e.reason());
            // Copies of one unit of work (events that arrived while it ran) share one retry: each
            // scheduling its own would multiply the attempts and defeat the backoff.
            let (attempt, already) = {
                let mut r = ctx.retrying.lock().expect("poisoned");
                let n = r.entry(work.clone()).or_default();
                n.attempts += 1;
                (n.attempts, std::mem::replace(&mut n.scheduled, true))
            };
            // Transient failures are retried soon; the others (access denied, bucket gone, an
            // unreadable file) need a person: loud, and retried slowly, never dropped.
            let cap = if e.is_retryable() {
                crate::retry::CAP
            } else {
                crate::retry::PERMANENT_CAP
            };
            let delay = crate::retry::delay(attempt - 1, cap);
            let path = work.path().display().to_string();
            if e.is_retryable() {
                tracing::warn!(path, error = %e, attempt, retry_in = ?delay, "upload failed; will retry");
            } else {
                tracing::error!(path, error = %e, reason = e.reason(), attempt, retry_in = ?delay, "upload failed; will retry");
            }
            if already {
                return;
            }
            let c = ctx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // Done meanwhile (another copy succeeded): nothing to retry.
                let due = c
                    .retrying
                    .lock()
                    .expect("poisoned")
                    .get_mut(&work)
                    .map(|r| r.scheduled = false)
                    .is_some();
                if due {
                    c.enqueue_work(work).await;
                }
            });
        }
    }
}

/// Ships one file (generic mode), then asks for its index or deletes it.
async fn ship_file(ctx: &Arc<Ctx>, path: &Path) -> Result<()> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Shipment::Uploaded {
        key,
        bytes,
        written,
    } = upload::ship(ctx, path).await?
    {
        ctx.stats.shipped(bytes);
        tracing::info!(key, bytes, ?written, "uploaded");
        let _ = ctx.index_tx.send(IndexMsg::Shipped(dir)).await;
        if ctx.cfg.with_index && wants_index(path) {
            // The index writer deletes it (--delete-on-backup) once the index is written.
            let _ = ctx.index_tx.send(IndexMsg::Want(path.to_path_buf())).await;
        } else if ctx.cfg.delete_on_backup {
            upload::delete_local(path.to_path_buf()).await;
        }
    }
    Ok(())
}
