//! Mark and sweep, per directory, as pure functions: which indexes to keep, then which keys to
//! delete once the kept indexes have been read.

use std::collections::{BTreeMap, HashSet};

use crate::restore::plan::{dir_of, index_order, is_index};
use crate::store::Listed;

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
        if kept_idx.contains(o.key.as_str()) || kept_files.contains(&o.key) {
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
