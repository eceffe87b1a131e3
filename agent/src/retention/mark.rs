//! Mark and sweep, per directory, as pure functions: which indexes to keep, then which keys to
//! delete once the kept indexes have been read.

use std::collections::{BTreeMap, HashSet};

use crate::restore::plan::{dir_of, index_order, is_index};
use crate::segment::{self, Archived};
use crate::store::Listed;

/// Whether `key` names a commit log segment (`CommitLog-7-<id>.log`): the index rule never
/// deletes one; only [`segments_to_delete`] does.
pub fn is_segment(key: &str) -> bool {
    let base = key.rsplit(['/', ':']).next().unwrap_or(key);
    segment::parse_name(base).is_some()
}

/// The archived segments to delete: those older than every segment a restore to a moment at or
/// after `oldest_point` (the oldest kept index, unix seconds) can need, and older than the grace
/// period (`modified`: their LastModified). With no kept restore point, none.
pub fn segments_to_delete<'a>(
    segs: &'a [(Archived, Option<i64>)],
    oldest_point: Option<i64>,
    rule: &Rule,
) -> Vec<&'a Archived> {
    let Some(point) = oldest_point else {
        return Vec::new();
    };
    let all: Vec<Archived> = segs.iter().map(|(a, _)| a.clone()).collect();
    let Some(keep_from) = segment::oldest_needed(&all, point * 1000) else {
        return Vec::new();
    };
    segs.iter()
        .filter(|(a, _)| a.meta.id < keep_from)
        .filter(|(_, m)| m.is_some_and(|m| rule.now - m >= rule.grace))
        .map(|(a, _)| a)
        .collect()
}

/// The rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Now, unix seconds.
    pub now: i64,
    /// Indexes younger than this many seconds are kept.
    pub age: i64,
    /// Objects younger than this many seconds are never deleted.
    pub grace: i64,
}

/// The indexes to keep: in every directory its newest index, and every index younger than
/// `rule.age`. Keeping the newest index of each directory (not of the whole path) is what keeps
/// a quiet table's live files.
pub fn kept_indexes<'a>(listed: &'a [Listed], rule: &Rule) -> Vec<&'a Listed> {
    let mut by_dir: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
    for o in listed.iter().filter(|o| is_index(&o.key)) {
        by_dir.entry(dir_of(&o.key)).or_default().push(o);
    }
    let mut kept = Vec::new();
    for (_, mut v) in by_dir {
        v.sort_by(|a, b| index_order(b, a));
        for (i, o) in v.into_iter().enumerate() {
            let young = o.modified.is_none_or(|m| rule.now - m <= rule.age);
            if i == 0 || young {
                kept.push(o);
            }
        }
    }
    kept
}

/// What to delete: every listed key that is neither a kept index nor a file a kept index lists,
/// and is older than the grace period (an object without a time is never deleted).
pub fn to_delete<'a>(
    listed: &'a [Listed],
    kept_indexes: &[&Listed],
    kept_files: &HashSet<String>,
    rule: &Rule,
) -> (Vec<&'a Listed>, usize) {
    let kept_idx: HashSet<&str> = kept_indexes.iter().map(|o| o.key.as_str()).collect();
    let mut protected = 0;
    let mut out = Vec::new();
    for o in listed {
        if kept_idx.contains(o.key.as_str()) || kept_files.contains(&o.key) || is_segment(&o.key) {
            continue;
        }
        match o.modified {
            Some(m) if rule.now - m >= rule.grace => out.push(o),
            _ => protected += 1,
        }
    }
    (out, protected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(key: &str, modified: i64) -> Listed {
        Listed {
            key: key.into(),
            size: 1,
            etag: None,
            modified: Some(modified),
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn quiet_directory_keeps_its_newest_index() {
        // Table a is busy, table b has been quiet for 30 days.
        let v = vec![
            l("h:/d/a/1-Data.db-listdir.json", 100 * DAY),
            l("h:/d/a/2-Data.db-listdir.json", 139 * DAY),
            l("h:/d/a/3-Data.db-listdir.json", 140 * DAY),
            l("h:/d/b/1-Data.db-listdir.json", 110 * DAY),
        ];
        let rule = Rule {
            now: 140 * DAY,
            age: 7 * DAY,
            grace: DAY,
        };
        let kept: Vec<&str> = kept_indexes(&v, &rule)
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(
            kept,
            vec![
                "h:/d/a/3-Data.db-listdir.json",
                "h:/d/a/2-Data.db-listdir.json",
                "h:/d/b/1-Data.db-listdir.json"
            ]
        );
    }

    fn seg(id: u64, last_write_s: i64) -> (Archived, Option<i64>) {
        let meta = segment::SegmentMeta {
            id,
            version: 7,
            last_write: last_write_s * 1000,
            seen: last_write_s * 1000,
            oldest_live: None,
            live_at: None,
            node: "h".into(),
            cassandra_version: None,
        };
        (
            Archived {
                key: format!("h:/a/CommitLog-7-{id}.log"),
                size: 1,
                meta,
            },
            Some(last_write_s),
        )
    }

    #[test]
    fn segments_a_kept_restore_point_needs_are_kept() {
        let rule = Rule {
            now: 100 * DAY,
            age: 7 * DAY,
            grace: DAY,
        };
        // One run whose ids start at its start time (ms), then a restart at day 50.
        let r1 = 10 * DAY as u64 * 1000;
        let r2 = 50 * DAY as u64 * 1000;
        let mut segs: Vec<_> = (0..5)
            .map(|i| seg(r1 + i, 10 * DAY + i as i64 * DAY))
            .collect();
        segs.extend((0..5).map(|i| seg(r2 + i, 50 * DAY + i as i64 * DAY)));
        let ids = |v: Vec<&Archived>| v.into_iter().map(|a| a.meta.id).collect::<Vec<_>>();
        // The oldest kept index at day 52 falls in the second run: the first run goes.
        assert_eq!(
            ids(segments_to_delete(&segs, Some(52 * DAY), &rule)),
            (0..5).map(|i| r1 + i).collect::<Vec<_>>()
        );
        // At day 12 it falls in the first run: its whole run stays (writes since its start may be
        // unflushed then).
        assert!(segments_to_delete(&segs, Some(12 * DAY), &rule).is_empty());
        // With the agent's record of the oldest live segment, only what that needs.
        segs[3].0.meta.oldest_live = Some(r1 + 2);
        segs[3].0.meta.live_at = Some(13 * DAY * 1000);
        assert_eq!(
            ids(segments_to_delete(&segs, Some(13 * DAY + 1), &rule)),
            vec![r1, r1 + 1]
        );
        // No kept restore point: nothing.
        assert!(segments_to_delete(&segs, None, &rule).is_empty());
        // The grace period protects young segments.
        let young = Rule {
            grace: 200 * DAY,
            ..rule
        };
        assert!(segments_to_delete(&segs, Some(52 * DAY), &young).is_empty());
    }

    #[test]
    fn the_index_rule_never_deletes_a_segment() {
        let v = vec![
            l("h:/cl/CommitLog-7-5.log", 1),
            l("h:/cl/CommitLog-7-5.log.bak", 1),
        ];
        let rule = Rule {
            now: 100 * DAY,
            age: 0,
            grace: 0,
        };
        let (del, _) = to_delete(&v, &[], &HashSet::new(), &rule);
        assert_eq!(
            del.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            vec!["h:/cl/CommitLog-7-5.log.bak"]
        );
        assert!(is_segment("h:/cl/CommitLog-7-5.log"));
        assert!(is_segment("CommitLog-6-1.log"));
        assert!(!is_segment("h:/cl/nb-1-big-Data.db"));
    }

    #[test]
    fn grace_protects_young_objects() {
        let v = vec![
            l("h:/d/a/old", 10 * DAY),
            l("h:/d/a/young", 20 * DAY - 10),
            l("h:/d/a/kept", 10 * DAY),
        ];
        let rule = Rule {
            now: 20 * DAY,
            age: 0,
            grace: DAY,
        };
        let kept_files: HashSet<String> = ["h:/d/a/kept".to_string()].into();
        let (del, protected) = to_delete(&v, &[], &kept_files, &rule);
        assert_eq!(
            del.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(),
            vec!["h:/d/a/old"]
        );
        assert_eq!(protected, 1);
    }
}
