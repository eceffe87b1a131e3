//! Which index to restore and what it lists: pure functions over a listing and index bodies.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::key::INDEX_SUFFIX;
use crate::store::Listed;

/// Whether `key` is an index object.
pub fn is_index(key: &str) -> bool {
    key.ends_with(INDEX_SUFFIX)
}

/// The directory prefix (ending with `/`) of an object key.
pub fn dir_of(key: &str) -> &str {
    match key.rfind('/') {
        Some(i) => &key[..=i],
        None => "",
    }
}

/// Orders indexes by their LastModified, then by key in natural order (so that `nb-10` comes after
/// `nb-9` when two indexes share a second: SSTable generations grow).
pub fn index_order(a: &Listed, b: &Listed) -> Ordering {
    a.modified
        .cmp(&b.modified)
        .then_with(|| natural_cmp(&a.key, &b.key))
}

/// The newest index among `listed` not later than `as_of`.
pub fn newest<'a>(
    listed: impl IntoIterator<Item = &'a Listed>,
    as_of: Option<i64>,
) -> Option<&'a Listed> {
    listed
        .into_iter()
        .filter(|o| is_index(&o.key))
        .filter(|o| match (as_of, o.modified) {
            (Some(t), Some(m)) => m <= t,
            // Without a time an index cannot be placed before a given time.
            (Some(_), None) => false,
            (None, _) => true,
        })
        .max_by(|a, b| index_order(a, b))
}

/// The indexes directly in directory `dir_prefix` (not in its subdirectories).
pub fn indexes_in<'a>(listed: &'a [Listed], dir_prefix: &str) -> Vec<&'a Listed> {
    listed
        .iter()
        .filter(|o| is_index(&o.key) && dir_of(&o.key) == dir_prefix)
        .collect()
}

/// For every directory below (and including) `root_prefix` that holds indexes, its newest index
/// not later than `as_of`; keyed by the directory prefix.
pub fn newest_per_dir<'a>(
    listed: &'a [Listed],
    root_prefix: &str,
    as_of: Option<i64>,
) -> BTreeMap<&'a str, &'a Listed> {
    let mut by_dir: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
    for o in listed
        .iter()
        .filter(|o| is_index(&o.key) && o.key.starts_with(root_prefix))
    {
        by_dir.entry(dir_of(&o.key)).or_default().push(o);
    }
    by_dir
        .into_iter()
        .filter_map(|(d, v)| newest(v, as_of).map(|n| (d, n)))
        .collect()
}

/// Reads an index body: `{dir: [names]}`; returns the names listed for `dir`.
/// Every name must be a plain file name (no `/`, not `.` or `..`), or restoring it could write
/// outside the target.
pub fn parse_index(key: &str, body: &[u8], dir: &str) -> Result<Vec<String>> {
    let bad = |why: String| Error::Integrity(format!("index {key}: {why}"));
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let list = obj
        .get(dir)
        .or_else(|| obj.get(&format!("{dir}/")))
        .ok_or_else(|| {
            bad(format!(
                "lists {:?}, not the directory {dir:?}",
                obj.keys().collect::<Vec<_>>()
            ))
        })?;
    let arr = list
        .as_array()
        .ok_or_else(|| bad(format!("the value of {dir:?} is not a list")))?;
    arr.iter()
        .map(|n| {
            let n = n
                .as_str()
                .ok_or_else(|| bad(format!("entry {n} is not a string")))?;
            if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0') {
                return Err(bad(format!("entry {n:?} is not a plain file name")));
            }
            Ok(n.to_string())
        })
        .collect()
}

/// Commit log segments to restore after SSTables as of `since` (the LastModified of the index
/// restored), not beyond `as_of`.
///
/// A segment's LastModified is when it was archived, after its last write. Every segment
/// archived at or after `since` may hold writes that the SSTables at `since` lack. With `as_of`,
/// segments archived after it are left out except the first one, which holds the writes up to
/// `as_of` (Cassandra's `restore_point_in_time` stops the replay there). Times are compared as
/// instants (unix seconds from LastModified), never as strings or local times.
pub fn commitlog_segments(
    listed: &[Listed],
    since: Option<i64>,
    as_of: Option<i64>,
) -> Vec<&Listed> {
    let mut segs: Vec<&Listed> = listed
        .iter()
        .filter(|o| !is_index(&o.key))
        .filter(|o| match (since, o.modified) {
            (Some(s), Some(m)) => m >= s,
            (Some(_), None) => true,
            (None, _) => true,
        })
        .collect();
    segs.sort_by(|a, b| index_order(a, b));
    if let Some(t) = as_of
        && let Some(first_after) = segs.iter().position(|o| o.modified.is_some_and(|m| m > t))
    {
        segs.truncate(first_after + 1);
    }
    segs
}

/// Compares strings with runs of digits compared as numbers.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let i = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let j = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (p, q) = (trim_zeros(&x[..i]), trim_zeros(&y[..j]));
                let o = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[i..];
                y = &y[j..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|c| **c == b'0').count();
    &d[z..]
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

    #[test]
    fn newest_index_by_time_then_generation() {
        let v = vec![
            l("h:/d/t/nb-9-big-Data.db-listdir.json", 100),
            l("h:/d/t/nb-10-big-Data.db-listdir.json", 100),
            l("h:/d/t/nb-8-big-Data.db-listdir.json", 90),
            l("h:/d/t/nb-11-big-Data.db", 300),
            l("h:/d/t/backups/nb-12-big-Data.db-listdir.json", 200),
        ];
        let direct = indexes_in(&v, "h:/d/t/");
        assert_eq!(direct.len(), 3);
        assert_eq!(
            newest(direct.clone(), None).unwrap().key,
            "h:/d/t/nb-10-big-Data.db-listdir.json"
        );
        assert_eq!(
            newest(direct.clone(), Some(99)).unwrap().key,
            "h:/d/t/nb-8-big-Data.db-listdir.json"
        );
        assert_eq!(newest(direct, Some(89)), None);
        let per = newest_per_dir(&v, "h:/d/", None);
        assert_eq!(
            per.keys().copied().collect::<Vec<_>>(),
            vec!["h:/d/t/", "h:/d/t/backups/"]
        );
    }

    #[test]
    fn index_bodies_are_checked() {
        let k = "h:/d/t/x-listdir.json";
        assert_eq!(
            parse_index(k, br#"{"/d/t": ["a", "backups"]}"#, "/d/t").unwrap(),
            vec!["a", "backups"]
        );
        for bad in [
            &br#"{"/d/u": ["a"]}"#[..],
            br#"["a"]"#,
            br#"{"/d/t": ["../etc/passwd"]}"#,
            br#"{"/d/t": [".."]}"#,
            br#"{"/d/t": ["."]}"#,
            br#"{"/d/t": [""]}"#,
            br#"{"/d/t": ["a/b"]}"#,
            br#"{"/d/t": ["a\u0000"]}"#,
            br#"{"/d/t": "a"}"#,
            b"not json",
        ] {
            let e = parse_index(k, bad, "/d/t").unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn commitlogs_from_the_restore_point() {
        let v = vec![
            l("h:/cl/CommitLog-7-1.log", 10),
            l("h:/cl/CommitLog-7-2.log", 20),
            l("h:/cl/CommitLog-7-3.log", 30),
            l("h:/cl/CommitLog-7-4.log", 40),
        ];
        let keys = |s: Vec<&Listed>| s.into_iter().map(|o| o.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(commitlog_segments(&v, Some(20), None)).len(), 3);
        assert_eq!(
            keys(commitlog_segments(&v, Some(20), Some(25))),
            vec!["h:/cl/CommitLog-7-2.log", "h:/cl/CommitLog-7-3.log"]
        );
        assert_eq!(commitlog_segments(&v, None, None).len(), 4);
        // Issue 13 (mutation testing): a segment archived at the restore point itself holds
        // writes up to it; the first one after it is still needed.
        assert_eq!(
            keys(commitlog_segments(&v, Some(20), Some(20))),
            vec!["h:/cl/CommitLog-7-2.log", "h:/cl/CommitLog-7-3.log"]
        );
    }

    /// Issue 13 (mutation testing): indexes outside the root are not restored with it.
    #[test]
    fn newest_per_dir_stays_below_the_root() {
        let v = vec![
            l("h:/d/t/nb-1-big-Data.db-listdir.json", 100),
            l("h:/e/t/nb-1-big-Data.db-listdir.json", 100),
            l("h:/d/u/nb-2-big-Data.db", 100),
        ];
        let per = newest_per_dir(&v, "h:/d/", None);
        assert_eq!(per.keys().copied().collect::<Vec<_>>(), vec!["h:/d/t/"]);
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("nb-9-big", "nb-10-big"), Ordering::Less);
        assert_eq!(natural_cmp("nb-010", "nb-10"), Ordering::Equal);
        assert_eq!(natural_cmp("a", "b"), Ordering::Less);
        assert_eq!(natural_cmp("ab", "a"), Ordering::Greater);
        // A digit against a letter is compared as bytes, not as a number.
        assert_eq!(natural_cmp("nb-1", "nb-a"), Ordering::Less);
        assert_eq!(natural_cmp("nb-a", "nb-1"), Ordering::Greater);
    }
}
