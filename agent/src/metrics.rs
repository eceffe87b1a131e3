//! What the agent did, as Prometheus metrics, and the health heartbeat. Labels stay bounded:
//! failure reasons and request kinds, never file names.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A failure reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// One of [`crate::Error::reason`]'s values.
    pub reason: &'static str,
}

/// A request kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// list, head, put, get, delete.
    pub kind: &'static str,
}

/// A scan trigger label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhyLabel {
    /// start, overflow, periodic.
    pub why: &'static str,
}

/// Counters and gauges of the agent.
#[derive(Debug, Default)]
pub struct Stats {
    /// Files uploaded.
    pub files_shipped: Counter,
    /// Bytes uploaded.
    pub bytes_shipped: Counter,
    /// Indexes written.
    pub indexes: Counter,
    /// Failed upload attempts by reason.
    pub failures: Family<ReasonLabel, Counter>,
    /// inotify queue overflows.
    pub overflows: Counter,
    /// Unix time of the last successful upload.
    pub last_success: Gauge,
    /// Files waiting (queued or to be retried).
    pub queue_depth: Gauge,
    /// Seconds since the oldest file not yet shipped was seen (the recovery point).
    pub oldest_unshipped: Gauge,
    /// Duration of the last scan, by trigger, in milliseconds.
    pub scan_millis: Family<WhyLabel, Gauge>,
    /// Storage requests made, by kind.
    pub requests: Family<KindLabel, Gauge>,
    /// 1 once the start-up bucket check passed, 0 while the agent waits for the bucket.
    pub storage_ready: Gauge,
    /// Commit log segments uploaded (`--commitlog-archive`).
    pub segments_shipped: Counter,
    /// Commit log segments deleted unshipped because the spool was full.
    pub segments_dropped: Counter,
    /// Seconds since the oldest segment not yet shipped was found (archive lag), 0 when none waits.
    pub archive_lag: Gauge,
    /// Bytes the archive directory holds on its own (segments Cassandra already removed).
    pub spool_bytes: Gauge,
    /// Unix time since which the shipped segments are continuous, as far as this run knows.
    pub window_start: Gauge,
    /// Unix time of the last write of the newest shipped segment: the recoverable window's end.
    pub window_end: Gauge,
    /// Heartbeat of the event loop (unix seconds).
    pub event_loop_beat: AtomicI64,
    /// Heartbeat of the upload dispatcher (unix seconds).
    pub uploader_beat: AtomicI64,
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Stats {
    /// Counts an index written.
    pub fn index_written(&self) {
        self.indexes.inc();
        self.last_success.set(now());
    }

    /// Counts a file uploaded.
    pub fn shipped(&self, bytes: u64) {
        self.files_shipped.inc();
        self.bytes_shipped.inc_by(bytes);
        self.last_success.set(now());
    }

    /// Counts a failed attempt.
    pub fn failed(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Marks the event loop as turning.
    pub fn beat_event_loop(&self) {
        self.event_loop_beat.store(now(), Ordering::Relaxed);
    }

    /// Marks the uploader as turning.
    pub fn beat_uploader(&self) {
        self.uploader_beat.store(now(), Ordering::Relaxed);
    }

    /// Whether both loops turned within `max_age` seconds.
    pub fn healthy(&self, max_age: i64) -> bool {
        self.healthy_at(now(), max_age)
    }

    /// [`Stats::healthy`] as of unix time `now`.
    pub fn healthy_at(&self, now: i64, max_age: i64) -> bool {
        now - self.event_loop_beat.load(Ordering::Relaxed) <= max_age
            && now - self.uploader_beat.load(Ordering::Relaxed) <= max_age
    }

    /// Registers every metric under the `tablesnap` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tablesnap");
        r.register(
            "files_shipped",
            "Files uploaded",
            self.files_shipped.clone(),
        );
        r.register(
            "bytes_shipped",
            "Bytes uploaded",
            self.bytes_shipped.clone(),
        );
        r.register(
            "indexes_written",
            "Directory indexes written",
            self.indexes.clone(),
        );
        r.register(
            "upload_failures",
            "Failed upload attempts by reason",
            self.failures.clone(),
        );
        r.register(
            "inotify_overflows",
            "inotify event queue overflows",
            self.overflows.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful upload",
            self.last_success.clone(),
        );
        r.register(
            "queue_depth",
            "Files waiting to be shipped or retried",
            self.queue_depth.clone(),
        );
        r.register(
            "oldest_unshipped_seconds",
            "Age of the oldest file not yet shipped: the recovery point",
            self.oldest_unshipped.clone(),
        );
        r.register(
            "storage_ready",
            "1 once the bucket check at start passed, 0 while waiting for the bucket",
            self.storage_ready.clone(),
        );
        r.register(
            "scan_duration_milliseconds",
            "Duration of the last scan by trigger",
            self.scan_millis.clone(),
        );
        r.register(
            "storage_requests",
            "Storage requests made, by kind",
            self.requests.clone(),
        );
        r.register(
            "commitlog_segments_shipped",
            "Commit log segments uploaded",
            self.segments_shipped.clone(),
        );
        r.register(
            "commitlog_segments_dropped",
            "Commit log segments deleted unshipped because the spool was full",
            self.segments_dropped.clone(),
        );
        r.register(
            "commitlog_archive_lag_seconds",
            "Age of the oldest archived commit log segment not yet shipped",
            self.archive_lag.clone(),
        );
        r.register(
            "commitlog_spool_bytes",
            "Bytes of segments the archive directory holds on its own",
            self.spool_bytes.clone(),
        );
        r.register(
            "commitlog_window_start_timestamp_seconds",
            "Unix time since which the shipped segments are continuous (as this run knows)",
            self.window_start.clone(),
        );
        r.register(
            "commitlog_window_end_timestamp_seconds",
            "Unix time of the last write of the newest shipped segment",
            self.window_end.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /healthz turns unhealthy when either loop stops turning for longer than the limit.
    #[test]
    fn unhealthy_when_a_loop_stalls() {
        let s = Stats::default();
        s.beat_event_loop();
        s.beat_uploader();
        let t = now();
        assert!(s.healthy_at(t, 60));
        assert!(s.healthy_at(t + 60, 60), "at the limit: still healthy");
        assert!(!s.healthy_at(t + 61, 60), "both stalled");
        s.event_loop_beat.store(t + 61, Ordering::Relaxed);
        assert!(!s.healthy_at(t + 61, 60), "the uploader stalled alone");
        s.event_loop_beat.store(t - 100, Ordering::Relaxed);
        s.uploader_beat.store(t + 61, Ordering::Relaxed);
        assert!(!s.healthy_at(t + 61, 60), "the event loop stalled alone");
    }
}
