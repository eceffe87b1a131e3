//! Cassandra commit-log segments archived by `commitlog_archiving.properties`: their names, the
//! metadata the agent stores with each one, and the decisions that the agent, `tableslurp
//! --point-in-time` and `tablechop --commitlog-archive` share: which segments a restore to a moment
//! needs, whether the archive has a gap there, and where the recoverable window ends.
//!
//! What Cassandra does (measured on 5.0.9, `agent/tests/real_cassandra.rs`): a segment is named
//! `CommitLog-<format version>-<id>.log`; the first id of a run of the node is the unix time of its
//! start in milliseconds and each new segment takes the next id; `archive_command` runs when a
//! segment is closed, and the segment still active at shutdown (or at a crash) is archived by the
//! next start, after it is replayed. Every mutation replayed at a start is flushed before the node
//! serves, so no segment of an earlier run holds a write that the SSTables of a later run lack.

use std::collections::BTreeMap;
use std::fmt;

/// User metadata key holding a segment's [`SegmentMeta`] as JSON.
pub const META_KEY: &str = "commitlog";

/// Slack between the agent's clock and Cassandra's id clock on the same host, in milliseconds.
const CLOCK_SLACK_MS: i64 = 5_000;

/// Parses a segment's file name: `CommitLog-7-1796150424209.log` is format version 7, id
/// 1796150424209. Compressed and encrypted segments have the same names.
pub fn parse_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("CommitLog-")?.strip_suffix(".log")?;
    let (version, id) = rest.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(version) || !all_digits(id) {
        return None;
    }
    Some((version.parse().ok()?, id.parse().ok()?))
}

/// What the agent stores with each segment it ships (user metadata [`META_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMeta {
    /// The segment id.
    pub id: u64,
    /// Commit log format version (7: Cassandra 4.0 to 5.0).
    pub version: u32,
    /// Its last write: the file's modification time, unix milliseconds. The segment holds writes
    /// from the last write of the segment before it (in its run) up to this moment.
    pub last_write: i64,
    /// When the agent found it in the archive directory, unix milliseconds.
    pub seen: i64,
    /// The oldest segment id still in Cassandra's live commit log directory at `live_at`: every
    /// write not yet flushed at that moment is in it or a later one (`--commitlog-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_live: Option<u64>,
    /// When the live directory was read for `oldest_live`, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_at: Option<i64>,
    /// The node (tablesnap `--name`).
    pub node: String,
    /// The node's Cassandra version, when the agent was told (`--cassandra-version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra_version: Option<String>,
}

impl SegmentMeta {
    /// The JSON stored as user metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("segment metadata serializes")
    }

    /// Reads it back from an object's user metadata.
    pub fn from_user(user: &BTreeMap<String, String>) -> Option<Self> {
        serde_json::from_str(user.get(META_KEY)?).ok()
    }
}

/// One archived segment as a restore or retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// Its object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// What the agent stored with it.
    pub meta: SegmentMeta,
}

/// Why a restore to a moment cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No segment is archived at all.
    NoSegments,
    /// The moment is after the last write of the newest archived segment: later writes are in the
    /// segment Cassandra still writes, not archived yet.
    AfterWindow {
        /// The last write of the newest archived segment, unix milliseconds.
        window_end: i64,
        /// Its key.
        newest: String,
    },
    /// The first segment the restore needs is not in the archive.
    MissingStart {
        /// The id needed.
        needed: u64,
        /// The oldest id archived of that run, if any.
        oldest: Option<u64>,
    },
    /// Segments between these two are missing: the archive is not continuous there.
    Gap {
        /// The segment before the gap.
        after: u64,
        /// The segment after it.
        before: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSegments => write!(f, "no commit log segment is archived"),
            Refusal::AfterWindow { window_end, newest } => write!(
                f,
                "the recoverable window ends at {} (the last write of the newest archived segment, {newest}); later writes are in a segment Cassandra has not archived yet",
                rfc3339_ms(*window_end)
            ),
            Refusal::MissingStart { needed, oldest } => match oldest {
                Some(o) => write!(
                    f,
                    "segment {needed} is needed (it may hold writes not flushed at the restore point) but the archive starts at {o}"
                ),
                None => write!(f, "segment {needed} is needed but not archived"),
            },
            Refusal::Gap { after, before } => write!(
                f,
                "the archive has a gap: segments between {after} and {before} are missing (dropped or lost), so writes in them cannot be replayed"
            ),
        }
    }
}

/// Unix milliseconds as RFC 3339 in UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{ms}ms"))
}

/// Whether `b` may follow `a` in the archive with no segment missing between them: the next id,
/// or the first segment of a later run of the node. A run's first id is the time it started, in
/// milliseconds, after `a`'s last write; and the last segment of a run is archived by the next
/// start (after its replay), so the agent found it then (a segment found earlier was closed while
/// its run went on, and a segment after it is missing).
pub fn follows(a: &SegmentMeta, b: &SegmentMeta) -> bool {
    b.id == a.id + 1 || (starts_run(a, b) && a.seen + CLOCK_SLACK_MS >= id_time(b))
}

/// Whether `b`, archived after `a` with ids between them missing, is the first segment of a later
/// run: its id, the run's start in milliseconds, is after `a`'s last write (inside a run ids
/// count up by one from the run's start, long before the writes of its later segments).
pub fn starts_run(a: &SegmentMeta, b: &SegmentMeta) -> bool {
    b.id > a.id + 1 && id_time(b) > a.last_write
}

fn id_time(s: &SegmentMeta) -> i64 {
    i64::try_from(s.id).unwrap_or(i64::MAX)
}

/// The segments a restore to `t` (unix milliseconds) needs, given the restore point of the
/// SSTables at `restore_point` (the oldest index restored, unix milliseconds), in replay order;
/// `segs` is every segment archived for the node, in any order.
///
/// The last one needed is the first whose last write is at or after `t` (Cassandra's
/// `restore_point_in_time` skips the writes after `t` in it). The first one needed is the oldest
/// that can hold a write not flushed at the restore point: the oldest live segment the agent saw
/// at or before it (`oldest_live`), else the first segment of the run the restore point falls in.
/// Every segment between them must be there ([`follows`]).
pub fn needed(segs: &[Archived], restore_point: i64, t: i64) -> Result<Vec<&Archived>, Refusal> {
    let mut sorted: Vec<&Archived> = segs.iter().collect();
    sorted.sort_by_key(|s| s.meta.id);
    let Some(newest) = sorted.iter().max_by_key(|s| s.meta.last_write) else {
        return Err(Refusal::NoSegments);
    };
    let last = sorted
        .iter()
        .position(|s| s.meta.last_write >= t)
        .ok_or_else(|| Refusal::AfterWindow {
            window_end: newest.meta.last_write,
            newest: newest.key.clone(),
        })?;
    let observed = oldest_live_seen(&sorted, restore_point);
    // The segment being written at the restore point, and the start of its run.
    let at_point = sorted
        .iter()
        .position(|s| s.meta.last_write >= restore_point)
        .unwrap_or(last)
        .min(last);
    let first = match observed {
        Some(id) => match sorted.iter().position(|s| s.meta.id >= id) {
            Some(i) if sorted[i].meta.id == id => i.min(at_point),
            Some(i) if i > at_point => at_point,
            _ => {
                return Err(Refusal::MissingStart {
                    needed: id,
                    oldest: sorted.first().map(|s| s.meta.id),
                });
            }
        },
        None => {
            let i = run_start(&sorted, at_point);
            // The walk stopped at a missing id, not at a restart: the run's start is lost.
            if i > 0 && !starts_run(&sorted[i - 1].meta, &sorted[i].meta) {
                return Err(Refusal::Gap {
                    after: sorted[i - 1].meta.id,
                    before: sorted[i].meta.id,
                });
            }
            i
        }
    };
    for w in sorted[first..=last].windows(2) {
        if !follows(&w[0].meta, &w[1].meta) {
            return Err(Refusal::Gap {
                after: w[0].meta.id,
                before: w[1].meta.id,
            });
        }
    }
    Ok(sorted[first..=last].to_vec())
}

/// The oldest segment id that any restore point at or after `oldest_point` (unix milliseconds)
/// can need: what retention keeps (with every newer segment); `None` when nothing is archived.
pub fn oldest_needed(segs: &[Archived], oldest_point: i64) -> Option<u64> {
    let mut sorted: Vec<&Archived> = segs.iter().collect();
    sorted.sort_by_key(|s| s.meta.id);
    let observed = oldest_live_seen(&sorted, oldest_point);
    // A restore point after the newest segment's last write falls in the segment still active.
    let at_point = sorted
        .iter()
        .position(|s| s.meta.last_write >= oldest_point)
        .unwrap_or(sorted.len().checked_sub(1)?);
    Some(match observed {
        Some(id) => id.min(sorted[at_point].meta.id),
        None => sorted[run_start(&sorted, at_point)].meta.id,
    })
}

/// The oldest live segment id the agent saw last at or before `point` (unix milliseconds).
fn oldest_live_seen(segs: &[&Archived], point: i64) -> Option<u64> {
    segs.iter()
        .filter_map(|s| Some((s.meta.live_at?, s.meta.oldest_live?)))
        .filter(|(at, _)| *at <= point)
        .max_by_key(|(at, _)| *at)
        .map(|(_, oldest)| oldest)
}

/// Walks back from `i` over consecutive ids: the index of the first segment of its run as far as
/// the archive shows (it stops at a restart or at a missing id).
fn run_start(sorted: &[&Archived], mut i: usize) -> usize {
    while i > 0 && sorted[i - 1].meta.id + 1 == sorted[i].meta.id {
        i -= 1;
    }
    i
}

/// Cassandra's `restore_point_in_time` for `t` (unix milliseconds): `yyyy:MM:dd HH:mm:ss` in GMT,
/// whole seconds. Cassandra replays the writes whose timestamp is at or before that second's start,
/// so `t` is rounded down: nothing after `t` is replayed.
pub fn restore_point_in_time(t: i64) -> String {
    let secs = t.div_euclid(1000);
    jiff::Timestamp::from_second(secs)
        .map(|ts| ts.strftime("%Y:%m:%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The `commitlog_archiving.properties` lines that make Cassandra replay the segments in `dir` up
/// to `t` (unix milliseconds) at its next start.
pub fn restore_properties(dir: &str, t: i64) -> String {
    format!(
        "# Written by tableslurp --point-in-time: replay the segments in {dir} up to {} (UTC).\n\
         # Put this file on Cassandra's classpath (its conf directory) before the node starts;\n\
         # remove restore_directories and restore_point_in_time once it has started.\n\
         restore_command=/bin/cp -f %from %to\n\
         restore_directories={dir}\n\
         restore_point_in_time={}\n\
         precision=MICROSECONDS\n",
        rfc3339_ms(t.div_euclid(1000) * 1000),
        restore_point_in_time(t)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_796_150_424_209;

    fn seg(id: u64, last_write: i64, seen: i64) -> Archived {
        Archived {
            key: format!("h:/a/CommitLog-7-{id}.log"),
            size: 1,
            meta: SegmentMeta {
                id,
                version: 7,
                last_write,
                seen,
                oldest_live: None,
                live_at: None,
                node: "h".into(),
                cassandra_version: None,
            },
        }
    }

    fn live(mut s: Archived, oldest: u64, at: i64) -> Archived {
        s.meta.oldest_live = Some(oldest);
        s.meta.live_at = Some(at);
        s
    }

    fn ids(v: &[&Archived]) -> Vec<u64> {
        v.iter().map(|s| s.meta.id).collect()
    }

    /// A run of `n` segments from `START`, each closed 10 s after the one before.
    fn run(first: u64, at: i64, n: u64) -> Vec<Archived> {
        (0..n)
            .map(|i| {
                let lw = at + 10_000 * (i as i64 + 1);
                seg(first + i, lw, lw + 100)
            })
            .collect()
    }

    #[test]
    fn names() {
        assert_eq!(
            parse_name("CommitLog-7-1796150424209.log"),
            Some((7, 1_796_150_424_209))
        );
        assert_eq!(parse_name("CommitLog-6-1.log"), Some((6, 1)));
        for bad in [
            "CommitLog-7-.log",
            "CommitLog--1.log",
            "CommitLog-7-1.log.tmp",
            "CommitLog-x-1.log",
            "commitlog-7-1.log",
            "CommitLog-7-1-2.log",
            "CommitLog-7-99999999999999999999999.log",
            // Rust's integer parser takes a sign; a segment name never has one.
            "CommitLog-+7-1.log",
            "CommitLog-7-+1.log",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn metadata_round_trip() {
        let m = live(seg(5, 10, 11), 3, 9).meta;
        let mut user = BTreeMap::new();
        user.insert(META_KEY.to_string(), m.to_json());
        assert_eq!(SegmentMeta::from_user(&user), Some(m));
        user.insert(META_KEY.to_string(), "{".into());
        assert_eq!(SegmentMeta::from_user(&user), None);
        assert_eq!(SegmentMeta::from_user(&BTreeMap::new()), None);
    }

    #[test]
    fn next_id_and_restarts_follow() {
        let m = |id: u64, lw: i64, seen: i64| seg(id, lw, seen).meta;
        let a = m(START as u64 + 3, START + 60_000, START + 60_100);
        assert!(follows(&a, &m(START as u64 + 4, START + 70_000, 0)));
        // A later run: its first id is its start time, after a's last write; a was the run's
        // last segment, found by the agent after the new run began.
        let later = START as u64 + 120_000;
        let mut last_of_run = a.clone();
        last_of_run.seen = later as i64 + 2_000;
        assert!(follows(&last_of_run, &m(later, later as i64 + 10, 0)));
        // The same jump after a segment the agent found while its run went on: the run's last
        // segment is missing.
        assert!(!follows(&a, &m(later, later as i64 + 10, 0)));
        // A missing id inside a run.
        assert!(!follows(&a, &m(START as u64 + 5, START + 80_000, 0)));
        // Ids never go back, nor jump to before a's last write.
        assert!(!follows(&a, &m(START as u64 + 2, START, 0)));
        let mut early = last_of_run.clone();
        early.last_write = later as i64 + 1;
        assert!(!follows(&early, &m(later, later as i64 + 10, 0)));
    }

    #[test]
    fn a_run_starts_only_after_missing_ids_and_later_than_the_last_write() {
        let m = |id: u64, lw: i64| seg(id, lw, lw).meta;
        let a = m(100, 1_000);
        // The next id (or the same) is the same run, never a new one, even when the id as a time
        // is after the last write.
        let early = m(100, 50);
        assert!(!starts_run(&early, &m(101, 5_000)));
        assert!(!starts_run(&early, &m(100, 5_000)));
        // Ids missing and the id (a start time in ms) after a's last write: a new run.
        assert!(starts_run(&a, &m(1_001, 5_000)));
        // At a's last write exactly, or before it: ids missing inside a run.
        assert!(!starts_run(&a, &m(1_000, 5_000)));
        assert!(!starts_run(&m(100, 50), &m(99, 5_000)));
    }

    #[test]
    fn refusals_say_what_and_where() {
        let t = |r: Refusal| r.to_string();
        assert_eq!(t(Refusal::NoSegments), "no commit log segment is archived");
        let after = t(Refusal::AfterWindow {
            window_end: START,
            newest: "h:/a/CommitLog-7-9.log".into(),
        });
        assert!(
            after.starts_with("the recoverable window ends at 2026-12-01T18:40:24.209Z")
                && after.contains("h:/a/CommitLog-7-9.log"),
            "{after}"
        );
        let start = t(Refusal::MissingStart {
            needed: 5,
            oldest: Some(7),
        });
        assert!(
            start.contains("segment 5 is needed") && start.contains("starts at 7"),
            "{start}"
        );
        assert_eq!(
            t(Refusal::MissingStart {
                needed: 5,
                oldest: None
            }),
            "segment 5 is needed but not archived"
        );
        let gap = t(Refusal::Gap {
            after: 3,
            before: 6,
        });
        assert!(
            gap.contains("segments between 3 and 6 are missing"),
            "{gap}"
        );
    }

    #[test]
    fn an_oldest_live_segment_missing_from_the_archive() {
        let mut segs = run(START as u64, START, 6);
        // The oldest live segment at +31 s was 2, and 2 is not archived: refused, even though
        // the next archived one is the restore point's own.
        segs[1] = live(segs[1].clone(), START as u64 + 2, START + 31_000);
        let mut without = segs.clone();
        without.remove(2);
        assert_eq!(
            needed(&without, START + 35_000, START + 45_000),
            Err(Refusal::MissingStart {
                needed: START as u64 + 2,
                oldest: Some(START as u64)
            })
        );
        // An oldest live segment newer than the restore point's own (clocks): from the restore
        // point's own segment, and a missing one after it is a gap.
        let mut ahead = run(START as u64, START, 6);
        ahead[1] = live(ahead[1].clone(), START as u64 + 4, START + 21_000);
        ahead.remove(4);
        assert_eq!(
            needed(&ahead, START + 25_000, START + 55_000),
            Err(Refusal::Gap {
                after: START as u64 + 3,
                before: START as u64 + 5
            })
        );
    }

    #[test]
    fn needed_from_the_run_start_to_the_segment_holding_t() {
        let segs = run(START as u64, START, 6);
        // Restore point inside segment 2 (closed at +30 s), t inside segment 4 (closed +50 s).
        let got = needed(&segs, START + 25_000, START + 45_000).unwrap();
        assert_eq!(
            ids(&got),
            (0..5).map(|i| START as u64 + i).collect::<Vec<_>>()
        );
        // t exactly at a last write: that segment is the last one needed.
        let got = needed(&segs, START + 25_000, START + 40_000).unwrap();
        assert_eq!(ids(&got).last(), Some(&(START as u64 + 3)));
        // After the window.
        assert_eq!(
            needed(&segs, START, START + 60_001),
            Err(Refusal::AfterWindow {
                window_end: START + 60_000,
                newest: segs[5].key.clone()
            })
        );
        assert_eq!(needed(&[], START, START), Err(Refusal::NoSegments));
    }

    #[test]
    fn the_oldest_live_segment_bounds_what_is_needed() {
        let mut segs = run(START as u64, START, 6);
        // Seen at +31 s (after the restore point? no: before it, at +31 s <= +35 s): segment 1
        // was the oldest still live then.
        segs[2] = live(segs[2].clone(), START as u64 + 1, START + 31_000);
        // An observation after the restore point does not count.
        segs[4] = live(segs[4].clone(), START as u64 + 4, START + 51_000);
        let got = needed(&segs, START + 35_000, START + 45_000).unwrap();
        assert_eq!(
            ids(&got),
            (1..5).map(|i| START as u64 + i).collect::<Vec<_>>()
        );
        // The oldest live segment missing from the archive.
        let without: Vec<Archived> = segs
            .iter()
            .filter(|s| s.meta.id != START as u64 + 1)
            .cloned()
            .collect();
        assert_eq!(
            needed(&without, START + 35_000, START + 45_000),
            Err(Refusal::MissingStart {
                needed: START as u64 + 1,
                oldest: Some(START as u64)
            })
        );
        // A live segment newer than the restore point's own segment does not cut it off.
        segs[2] = live(segs[2].clone(), START as u64 + 5, START + 31_000);
        let got = needed(&segs, START + 35_000, START + 45_000).unwrap();
        assert_eq!(ids(&got).first(), Some(&(START as u64 + 3)));
    }

    #[test]
    fn a_gap_refuses() {
        let mut segs = run(START as u64, START, 6);
        segs.remove(3);
        assert_eq!(
            needed(&segs, START + 25_000, START + 55_000),
            Err(Refusal::Gap {
                after: START as u64 + 2,
                before: START as u64 + 4
            })
        );
        // A restore point after the gap: its run's start is behind the gap, lost too.
        assert_eq!(
            needed(&segs, START + 45_000, START + 55_000),
            Err(Refusal::Gap {
                after: START as u64 + 2,
                before: START as u64 + 4
            })
        );
        // With the agent's record of the live directory after the gap, nothing lost is needed.
        segs[3] = live(segs[3].clone(), START as u64 + 4, START + 44_000);
        let got = needed(&segs, START + 45_000, START + 55_000).unwrap();
        assert_eq!(ids(&got), vec![START as u64 + 4, START as u64 + 5]);
    }

    #[test]
    fn a_restart_between_the_restore_point_and_t() {
        let mut a = run(START as u64, START, 3);
        let b_start = START + 100_000;
        // a's last segment was archived by b's start.
        a[2].meta.seen = b_start + 1_000;
        let b = run(b_start as u64, b_start, 2);
        let all: Vec<Archived> = a.iter().chain(b.iter()).cloned().collect();
        let got = needed(&all, START + 15_000, b_start + 15_000).unwrap();
        assert_eq!(got.len(), 5);
        // Without that, a's run lost its last segment.
        let mut lost = all.clone();
        lost[2].meta.seen = START + 30_100;
        assert_eq!(
            needed(&lost, START + 15_000, b_start + 15_000),
            Err(Refusal::Gap {
                after: START as u64 + 2,
                before: b_start as u64
            })
        );
        // A restore point in b's run needs nothing of a's.
        let got = needed(&lost, b_start + 5_000, b_start + 15_000).unwrap();
        assert_eq!(ids(&got), vec![b_start as u64, b_start as u64 + 1]);
    }

    #[test]
    fn retention_keeps_from_the_run_start_or_the_oldest_live() {
        let mut segs = run(START as u64, START, 6);
        assert_eq!(oldest_needed(&segs, START + 35_000), Some(START as u64));
        segs[2] = live(segs[2].clone(), START as u64 + 2, START + 31_000);
        assert_eq!(oldest_needed(&segs, START + 35_000), Some(START as u64 + 2));
        // A restore point after the newest segment's last write: it falls in the active segment,
        // whose run (or oldest live segment) starts where it did.
        assert_eq!(oldest_needed(&segs, START + 61_000), Some(START as u64 + 2));
        assert_eq!(
            oldest_needed(&run(START as u64, START, 2), START + 99_000),
            Some(START as u64)
        );
        assert_eq!(oldest_needed(&[], START), None);
        let mut gap = run(START as u64, START, 6);
        gap.remove(1);
        assert_eq!(oldest_needed(&gap, START + 35_000), Some(START as u64 + 2));
    }

    #[test]
    fn cassandras_restore_point_format() {
        // 2026-12-01T18:40:24.209Z
        assert_eq!(restore_point_in_time(START), "2026:12:01 18:40:24");
        assert_eq!(restore_point_in_time(START - 209), "2026:12:01 18:40:24");
        assert_eq!(restore_point_in_time(START - 210), "2026:12:01 18:40:23");
        let p = restore_properties("/r/cl", START);
        assert!(p.contains("\nrestore_directories=/r/cl\n"), "{p}");
        assert!(
            p.contains("\nrestore_point_in_time=2026:12:01 18:40:24\n"),
            "{p}"
        );
        assert!(
            p.contains("\nrestore_command=/bin/cp -f %from %to\n"),
            "{p}"
        );
        assert!(p.contains("up to 2026-12-01T18:40:24Z"), "{p}");
    }
}
