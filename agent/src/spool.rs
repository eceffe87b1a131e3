//! The commit log archive as a bounded spool, as pure decisions: which segments in the archive
//! directory are complete, which the cap drops, and the window of continuous segments shipped.
//! [`crate::archive`] reads the directory and acts on them.

use std::collections::{HashMap, HashSet};

/// A segment file not written for this long is complete, even without a close event or a second
/// link (a copy made while the agent was down).
pub const SETTLE_MS: i64 = 30_000;

/// One segment file in the archive directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDisk {
    /// File name.
    pub name: String,
    /// Segment id.
    pub id: u64,
    /// Commit log format version.
    pub version: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hard links: 2 or more while Cassandra's own file (linked by `/bin/ln`) still exists.
    pub nlink: u64,
    /// Modification time, unix milliseconds: the segment's last write.
    pub mtime: i64,
}

/// What to do with the segments on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Delete unshipped (the spool is over its cap), oldest first.
    pub drop: Vec<String>,
    /// Ship, oldest first.
    pub ship: Vec<String>,
}

/// Decides, at unix milliseconds `now`, which segments are complete (a second link: `/bin/ln` of
/// a closed segment; a close or rename seen; or not written for [`SETTLE_MS`]) and which the cap
/// drops: only segments Cassandra has removed (one link) use space of their own, and the oldest of
/// them go until the rest fit in `cap` bytes.
pub fn decide(
    on_disk: &[OnDisk],
    closed: &HashSet<String>,
    now: i64,
    cap: Option<u64>,
) -> Decision {
    let mut segs: Vec<&OnDisk> = on_disk.iter().collect();
    segs.sort_by_key(|s| s.id);
    let mut dropped = HashSet::new();
    if let Some(cap) = cap {
        let mut own: u64 = segs.iter().filter(|s| s.nlink < 2).map(|s| s.size).sum();
        for s in segs.iter().filter(|s| s.nlink < 2) {
            if own <= cap {
                break;
            }
            own -= s.size;
            dropped.insert(s.name.clone());
        }
    }
    let drop = segs
        .iter()
        .filter(|s| dropped.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    let ship = segs
        .iter()
        .filter(|s| !dropped.contains(&s.name))
        .filter(|s| s.nlink >= 2 || closed.contains(&s.name) || now - s.mtime >= SETTLE_MS)
        .map(|s| s.name.clone())
        .collect();
    Decision { drop, ship }
}

/// What the task remembers between passes.
#[derive(Debug, Default)]
pub struct State {
    /// When each segment on disk was first found, unix milliseconds.
    pub seen: HashMap<String, i64>,
    /// Segments closed or renamed in since they were found.
    pub closed: HashSet<String>,
    /// Failed attempts in a row.
    pub attempt: u32,
    /// Start and end of the continuous shipped segments, unix milliseconds.
    pub window: Option<(i64, i64)>,
    /// The newest segment id the spool cap dropped.
    pub dropped_through: Option<u64>,
}

impl State {
    /// Records a segment shipped: the window's end moves on; its start is set by the first
    /// segment shipped after every dropped one (an older segment shipped late does not make the
    /// moments around a dropped one restorable).
    pub fn shipped(&mut self, id: u64, last_write: i64) {
        let after_drops = self.dropped_through.is_none_or(|d| id > d);
        self.window = match self.window {
            Some((start, end)) => Some((start, end.max(last_write))),
            None if after_drops => Some((last_write, last_write)),
            None => None,
        };
    }

    /// Records a segment the cap dropped: the window restarts after it.
    pub fn dropped(&mut self, id: u64) {
        self.dropped_through = Some(self.dropped_through.map_or(id, |d| d.max(id)));
        self.window = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, size: u64, nlink: u64, mtime: i64) -> OnDisk {
        OnDisk {
            name: format!("CommitLog-7-{id}.log"),
            id,
            version: 7,
            size,
            nlink,
            mtime,
        }
    }

    #[test]
    fn complete_when_linked_closed_or_settled() {
        let now = 1_000_000;
        let on_disk = vec![
            seg(3, 10, 1, now - 1),             // a copy being written
            seg(1, 10, 2, now),                 // /bin/ln of a closed segment
            seg(2, 10, 1, now - 1),             // closed: an event came
            seg(4, 10, 1, now - SETTLE_MS),     // not written for the settle time
            seg(5, 10, 1, now - SETTLE_MS + 1), // not yet
        ];
        let closed: HashSet<String> = ["CommitLog-7-2.log".to_string()].into();
        let d = decide(&on_disk, &closed, now, None);
        assert!(d.drop.is_empty());
        assert_eq!(
            d.ship,
            vec![
                "CommitLog-7-1.log",
                "CommitLog-7-2.log",
                "CommitLog-7-4.log"
            ]
        );
    }

    #[test]
    fn the_cap_drops_the_oldest_segments_that_use_space_of_their_own() {
        let now = 1_000_000;
        let on_disk = vec![
            seg(4, 10, 1, 0),
            seg(1, 10, 2, 0), // shares Cassandra's file: uses no space of its own
            seg(2, 10, 1, 0),
            seg(3, 10, 1, 0),
        ];
        let d = decide(&on_disk, &HashSet::new(), now, Some(20));
        assert_eq!(d.drop, vec!["CommitLog-7-2.log"]);
        assert_eq!(
            d.ship,
            vec![
                "CommitLog-7-1.log",
                "CommitLog-7-3.log",
                "CommitLog-7-4.log"
            ]
        );
        let d = decide(&on_disk, &HashSet::new(), now, Some(30));
        assert!(d.drop.is_empty(), "exactly at the cap: nothing dropped");
        let d = decide(&on_disk, &HashSet::new(), now, Some(0));
        assert_eq!(d.drop.len(), 3);
        assert_eq!(d.ship, vec!["CommitLog-7-1.log"]);
        assert!(decide(&on_disk, &HashSet::new(), now, None).drop.is_empty());
    }

    #[test]
    fn the_window_restarts_after_the_newest_dropped_segment() {
        let mut st = State::default();
        st.shipped(1, 100);
        st.shipped(2, 200);
        assert_eq!(st.window, Some((100, 200)));
        st.dropped(4);
        assert_eq!(st.window, None);
        // An older segment shipped late does not reopen the window.
        st.shipped(3, 300);
        assert_eq!(st.window, None);
        st.shipped(5, 500);
        st.shipped(6, 600);
        assert_eq!(st.window, Some((500, 600)));
        // The dropped segment itself never reopens it.
        let mut again = State::default();
        again.dropped(4);
        again.shipped(4, 400);
        assert_eq!(again.window, None);
        // A drop older than the newest one so far keeps the newer bound.
        st.dropped(2);
        st.shipped(5, 500);
        assert_eq!(st.window, Some((500, 500)));
    }
}
