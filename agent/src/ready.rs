//! When an SSTable is ready to ship: complete and committed by the rule of its version family.
//! A pure function of a directory's state (names, TOC contents, transaction logs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::queue::Version;
use crate::sstable::{Family, Name, TxnLog, parse_name};

/// What a directory holds, as read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirState {
    /// Regular files by name.
    pub files: BTreeMap<String, Version>,
    /// The components each TOC.txt lists, by SSTable prefix.
    pub tocs: HashMap<String, Vec<String>>,
    /// The transaction logs of the directory.
    pub txns: Vec<TxnLog>,
    /// For `backups/` (hard links, no transaction logs): the names in the live directory they
    /// are linked from, to tell an SAI component still to be linked from one never written.
    pub linked_from: Option<BTreeSet<String>>,
    /// A transaction log was listed and gone before it could be read: the listing may predate
    /// files written before its COMMIT, so this read cannot tell what is complete.
    pub torn: bool,
}

/// A complete, committed, live SSTable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SSTable {
    /// Name prefix, e.g. `nb-5-big-`.
    pub prefix: String,
    /// Its file names: every component its TOC lists, and TOC.txt.
    pub names: Vec<String>,
    /// Its Data.db name, when it has one.
    pub data: Option<String>,
}

/// The SSTables of `dir` that are complete and committed, and not made obsolete by a committed
/// compaction, in name order.
///
/// - 2.1/2.2 (no transaction logs): the final-named TOC exists and every component it lists
///   exists; the SSTable is its TOC's components and TOC.txt.
/// - 3.0 and later: its Data.db exists and no transaction log of the directory still has an ADD
///   for it without a COMMIT (the ADD is written before any file of the SSTable); an SSTable a
///   committed log REMOVEs is obsolete. The TOC is not required: entire-SSTable streaming writes
///   none, 5.0 SAI lists components it never writes (and writes one it does not list), and a TOC
///   is deleted and re-created when an index is dropped. The SSTable is every component on disk.
/// - 3.0 and later in `backups/` ([`DirState::linked_from`]): the TOC exists and every component it
///   lists is linked, except SAI components the live directory lacks too. A zero-copy streamed
///   SSTable (no TOC) is never complete there.
pub fn complete(dir: &Path, st: &DirState) -> Vec<SSTable> {
    let mut by_prefix: BTreeMap<String, (Family, Vec<String>)> = BTreeMap::new();
    for name in st.files.keys() {
        if let Name::Component { prefix, family, .. } = parse_name(name) {
            by_prefix
                .entry(prefix)
                .or_insert_with(|| (family, Vec::new()))
                .1
                .push(name.clone());
        }
    }
    let table = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut out = Vec::new();
    for (prefix, (family, present)) in by_prefix {
        let names = match (family, &st.linked_from) {
            (Family::Transactional, Some(live)) => {
                // Links land in any order and nothing commits them: wait for every component the
                // TOC lists, except SAI components the live directory does not hold either
                // (never written, or already compacted away).
                let Some(listed) = st.tocs.get(&prefix).filter(|l| !l.is_empty()) else {
                    continue;
                };
                let waiting = listed.iter().map(|c| format!("{prefix}{c}")).any(|n| {
                    !st.files.contains_key(&n)
                        && (!n[prefix.len()..].starts_with("SAI+") || live.contains(&n))
                });
                if waiting || !present.iter().any(|n| n.ends_with("Data.db")) {
                    continue;
                }
                present
            }
            (Family::Legacy, _) => {
                let toc = format!("{prefix}TOC.txt");
                let Some(listed) = st.tocs.get(&prefix).filter(|l| !l.is_empty()) else {
                    continue;
                };
                if !st.files.contains_key(&toc) {
                    continue;
                }
                let mut names: Vec<String> =
                    listed.iter().map(|c| format!("{prefix}{c}")).collect();
                names.push(toc);
                names.sort();
                names.dedup();
                if !names.iter().all(|n| st.files.contains_key(n)) {
                    continue;
                }
                names
            }
            (Family::Transactional, None) => {
                if !present.iter().any(|n| n.ends_with("Data.db")) {
                    continue;
                }
                let me = (table.as_deref(), bare(&prefix));
                let named = |p: &String| txn_target(p) == me;
                let uncommitted = st
                    .txns
                    .iter()
                    .any(|t| !t.committed && t.adds.iter().any(named));
                let obsolete = st
                    .txns
                    .iter()
                    .any(|t| t.committed && t.removes.iter().any(named));
                if uncommitted || obsolete {
                    continue;
                }
                present
            }
        };
        let data = names.iter().find(|n| n.ends_with("Data.db")).cloned();
        out.push(SSTable {
            prefix,
            names,
            data,
        });
    }
    out
}

/// The SSTables complete in both of two consecutive reads of `dir`, with the same files at the
/// same versions; none when either read is torn.
///
/// One read cannot be trusted alone: a listing is taken before the transaction logs it names are
/// read, so a flush that writes its last components, appends COMMIT and deletes its log in that
/// gap looks complete without those components (seen in the fault test of compaction during
/// upload: an SAI ColumnComplete.db was never shipped). Every file a read missed that way exists
/// before the next read begins, so the two reads disagree about that SSTable.
pub fn settled(dir: &Path, earlier: &DirState, later: &DirState) -> Vec<SSTable> {
    if earlier.torn || later.torn {
        return Vec::new();
    }
    let before = complete(dir, earlier);
    complete(dir, later)
        .into_iter()
        .filter(|s| {
            before.iter().any(|b| {
                b.names == s.names
                    && s.names
                        .iter()
                        .all(|n| earlier.files.get(n) == later.files.get(n))
            })
        })
        .collect()
}

/// An SSTable prefix without its trailing `-` (3.0/3.11 logs write `…/mc-5-big`, 4.0+ `…/nb-5-big-`).
fn bare(prefix: &str) -> &str {
    prefix.strip_suffix('-').unwrap_or(prefix)
}

/// The (directory name, bare prefix) a transaction record's path names. Records carry the
/// canonical path (symlinks resolved), so only its last two components can be compared with the
/// directory the agent watches; SSTable ids are unique per table across data directories.
fn txn_target(path: &str) -> (Option<&str>, &str) {
    let path = path.strip_suffix('-').unwrap_or(path);
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent.rsplit('/').next(), name),
        None => (None, path),
    }
}

/// Whether `name` is a table directory's (`<table>-<32 hex id>`, 2.1 and later).
fn is_table_dir(name: &std::ffi::OsStr) -> bool {
    let n = name.to_string_lossy();
    n.rsplit_once('-').is_some_and(|(t, id)| {
        !t.is_empty() && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Where a directory sits in Cassandra's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirKind {
    /// A live table (or secondary index) directory.
    Table,
    /// `<table>/backups` or `<table>/backups/.<index>`: incremental backup hard links.
    Backups,
    /// `<table>/snapshots/<tag>` (the path of the tag directory).
    Snapshot(PathBuf),
}

/// Classifies a directory by its path. `snapshots` and `backups` are special only directly under
/// a table directory: a keyspace or table may have either name.
pub fn dir_kind(dir: &Path) -> DirKind {
    let comps: Vec<&std::ffi::OsStr> = dir.iter().collect();
    let n = comps.len();
    let at = |i: usize| comps[i];
    let index_dir = |i: usize| at(i).to_string_lossy().starts_with('.');
    // <table>/snapshots/<tag> and <table>/snapshots/<tag>/.<index>
    for i in 1..n.saturating_sub(1) {
        if at(i) == "snapshots"
            && is_table_dir(at(i - 1))
            && (i + 2 == n || (i + 3 == n && index_dir(i + 2)))
        {
            return DirKind::Snapshot(comps[..=i + 1].iter().collect());
        }
    }
    // <table>/backups and <table>/backups/.<index>
    if n >= 2 && at(n - 1) == "backups" && is_table_dir(at(n - 2)) {
        return DirKind::Backups;
    }
    if n >= 3 && index_dir(n - 1) && at(n - 2) == "backups" && is_table_dir(at(n - 3)) {
        return DirKind::Backups;
    }
    DirKind::Table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sstable::parse_txn;

    fn v() -> Version {
        Version {
            size: 1,
            mtime: Some((1, 1)),
        }
    }

    fn state(files: &[&str], tocs: &[(&str, &[&str])], txns: &[&str]) -> DirState {
        DirState {
            files: files.iter().map(|f| (f.to_string(), v())).collect(),
            tocs: tocs
                .iter()
                .map(|(p, c)| (p.to_string(), c.iter().map(|s| s.to_string()).collect()))
                .collect(),
            txns: txns.iter().map(|t| parse_txn(t)).collect(),
            linked_from: None,
            torn: false,
        }
    }

    const COMPS: &[&str] = &["Data.db", "Index.db", "Statistics.db", "TOC.txt"];
    const T: &str = "/d/ks/t-0123456789abcdef0123456789abcdef";

    #[test]
    fn legacy_needs_toc_and_every_listed_component() {
        let d = Path::new(T);
        let all = ["la-1-big-Data.db", "la-1-big-Index.db", "la-1-big-TOC.txt"];
        let listed: &[&str] = &["Data.db", "Index.db", "TOC.txt"];
        let c = complete(d, &state(&all, &[("la-1-big-", listed)], &[]));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].data.as_deref(), Some("la-1-big-Data.db"));
        assert_eq!(c[0].names.len(), 3);
        // Renamed into place, TOC not yet.
        assert!(complete(d, &state(&all[..2], &[], &[])).is_empty());
        // TOC lists a component that is not there.
        assert!(
            complete(
                d,
                &state(
                    &["la-1-big-Data.db", "la-1-big-TOC.txt"],
                    &[("la-1-big-", listed)],
                    &[]
                )
            )
            .is_empty()
        );
    }

    /// Regression (fact sheet, corrected): 5.0 SAI lists components in the TOC that it never
    /// writes for an empty column index, and writes `SAI+aa+PartitionToSize.db` without listing it
    /// (seen on a real 5.0.9 node). The SSTable is what is on disk.
    #[test]
    fn sai_listed_but_unwritten_components_do_not_hold_an_sstable_back() {
        let d = Path::new(T);
        let files = [
            "nb-1-big-Data.db",
            "nb-1-big-Statistics.db",
            "nb-1-big-SAI+aa+GroupComplete.db",
            "nb-1-big-SAI+aa+PartitionToSize.db",
            "nb-1-big-SAI+aa+s_sai+ColumnComplete.db",
            "nb-1-big-TOC.txt",
        ];
        let listed: &[&str] = &[
            "Data.db",
            "Statistics.db",
            "SAI+aa+GroupComplete.db",
            "SAI+aa+s_sai+ColumnComplete.db",
            "SAI+aa+s_sai+Meta.db",
            "SAI+aa+s_sai+TermsData.db",
            "TOC.txt",
        ];
        let c = complete(d, &state(&files, &[("nb-1-big-", listed)], &[]));
        assert_eq!(c.len(), 1);
        let mut want: Vec<String> = files.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(c[0].names, want);
    }

    /// Regression (fact sheet, corrected): entire-SSTable streaming writes no TOC.txt; a
    /// committed set of components with a Data.db is complete. The same holds while a TOC is
    /// deleted and re-created (an index dropped): a shipped SSTable stays live.
    #[test]
    fn committed_sstables_without_toc_are_complete() {
        let d = Path::new(T);
        let files = [
            "nb-4-big-Data.db",
            "nb-4-big-Index.db",
            "nb-4-big-Statistics.db",
        ];
        let c = complete(d, &state(&files, &[], &[]));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].names.len(), 3);
        // While the stream's transaction is open, it is not.
        let add = format!("ADD:[{T}/nb-4-big-,0,3][1]\n");
        assert!(complete(d, &state(&files, &[], &[&add])).is_empty());
        // No Data.db: nothing to restore.
        assert!(complete(d, &state(&files[1..], &[], &[])).is_empty());
    }

    #[test]
    fn transactions_gate_3x_and_later() {
        let d = Path::new(T);
        let all = [
            "nb-2-big-Data.db",
            "nb-2-big-Index.db",
            "nb-2-big-Statistics.db",
            "nb-2-big-TOC.txt",
        ];
        let add = format!("ADD:[{T}/nb-2-big-,0,4][1]\n");
        assert!(
            complete(d, &state(&all, &[("nb-2-big-", COMPS)], &[&add])).is_empty(),
            "uncommitted"
        );
        assert!(
            complete(
                d,
                &state(
                    &all,
                    &[("nb-2-big-", COMPS)],
                    &[&format!("{add}ABORT:[,0,0][2]\n")]
                )
            )
            .is_empty()
        );
        assert_eq!(
            complete(
                d,
                &state(
                    &all,
                    &[("nb-2-big-", COMPS)],
                    &[&format!("{add}COMMIT:[,0,0][2]\n")]
                )
            )
            .len(),
            1
        );
        // Obsolete after a committed compaction that removes it.
        let rm = format!(
            "ADD:[{T}/nb-3-big-,0,4][1]\nREMOVE:[{T}/nb-2-big-,0,4][1]\nCOMMIT:[,0,0][2]\n"
        );
        assert!(complete(d, &state(&all, &[("nb-2-big-", COMPS)], &[&rm])).is_empty());
        // 2.x has no logs: a TOC renamed into place is enough.
        let legacy = ["la-1-big-Data.db", "la-1-big-TOC.txt"];
        let st = state(
            &legacy,
            &[("la-1-big-", &["Data.db", "TOC.txt"])],
            &[&format!("ADD:[{T}/la-1-big-,0,2][1]\n")],
        );
        assert_eq!(complete(d, &st).len(), 1);
    }

    /// Regression (fact sheet, corrected): records carry the canonical path, so a directory
    /// watched through a symlink must still see them; 3.0/3.11 write the prefix without its
    /// trailing `-`.
    #[test]
    fn transaction_records_match_by_canonical_path_in_both_forms() {
        let watched = Path::new("/link/ks/t-0123456789abcdef0123456789abcdef");
        let real = "/var/lib/cassandra/data/ks/t-0123456789abcdef0123456789abcdef";
        for (ver, rec) in [("mc", "mc-2-big"), ("nb", "nb-2-big-")] {
            let files: Vec<String> = ["Data.db", "Index.db", "TOC.txt"]
                .iter()
                .map(|c| format!("{ver}-2-big-{c}"))
                .collect();
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            let pre = format!("{ver}-2-big-");
            let tocs: &[(&str, &[&str])] = &[(&pre, &["Data.db", "Index.db", "TOC.txt"])];
            let add = format!("ADD:[{real}/{rec},0,3][1]\n");
            assert!(
                complete(watched, &state(&files, tocs, &[&add])).is_empty(),
                "{ver}: uncommitted ADD by canonical path"
            );
            let rm = format!(
                "ADD:[{real}/{ver}-3-big,0,3][1]\nREMOVE:[{real}/{rec},0,3][1]\nCOMMIT:[,0,0][2]\n"
            );
            assert!(
                complete(watched, &state(&files, tocs, &[&rm])).is_empty(),
                "{ver}: committed REMOVE by canonical path"
            );
        }
    }

    /// Regression: incremental backup links land in any order, without a transaction; a set
    /// shipped (and with --delete-on-backup deleted) before its last link would lose that file.
    #[test]
    fn backups_wait_for_every_listed_link_but_unwritten_sai() {
        let d = Path::new(T).join("backups");
        let listed: &[&str] = &[
            "Data.db",
            "Index.db",
            "SAI+aa+i+Meta.db",
            "SAI+aa+j+Meta.db",
            "TOC.txt",
        ];
        let mut st = state(
            &["nb-1-big-Data.db", "nb-1-big-TOC.txt"],
            &[("nb-1-big-", listed)],
            &[],
        );
        // The live SSTable has SAI `i` written, `j` never.
        let live: BTreeSet<String> = ["Data.db", "Index.db", "SAI+aa+i+Meta.db", "TOC.txt"]
            .iter()
            .map(|c| format!("nb-1-big-{c}"))
            .collect();
        st.linked_from = Some(live);
        assert!(complete(&d, &st).is_empty(), "Index.db not linked yet");
        st.files.insert("nb-1-big-Index.db".into(), v());
        assert!(complete(&d, &st).is_empty(), "SAI i not linked yet");
        st.files.insert("nb-1-big-SAI+aa+i+Meta.db".into(), v());
        let c = complete(&d, &st);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].names.len(), 4);
        // No TOC (zero-copy streamed): never complete by it here.
        st.files.remove("nb-1-big-TOC.txt");
        st.tocs.clear();
        assert!(complete(&d, &st).is_empty());
    }

    /// Regression (the fault test of compaction during upload, CI): a read whose listing missed
    /// the last component of a flush whose log was committed and deleted by the time it was read
    /// took the SSTable as complete without it. Only what two consecutive reads agree on is
    /// settled.
    #[test]
    fn only_what_two_reads_agree_on_is_settled() {
        let d = Path::new(T);
        let full = [
            "oa-3-big-Data.db",
            "oa-3-big-TOC.txt",
            "oa-3-big-SAI+aa+s+ColumnComplete.db",
        ];
        let a = state(&full[..2], &[], &[]);
        let b = state(&full, &[], &[]);
        assert_eq!(complete(d, &a).len(), 1, "the torn read looks complete");
        assert!(
            settled(d, &a, &b).is_empty(),
            "a component the first read missed"
        );
        assert!(
            settled(d, &b, &a).is_empty(),
            "a component gone between the reads"
        );
        let c = settled(d, &b, &b.clone());
        assert_eq!(c, complete(d, &b));
        assert_eq!(c[0].names.len(), 3);
        // The same names at another version (still written, or rewritten) are not settled.
        let mut grown = b.clone();
        grown.files.get_mut("oa-3-big-Data.db").unwrap().size += 1;
        assert!(settled(d, &b, &grown).is_empty());
        assert!(settled(d, &grown, &b).is_empty());
        // Complete only in the later read (it just committed): not yet.
        let add = format!("ADD:[{T}/oa-3-big-,0,3][1]\n");
        let open = state(&full, &[], &[&add]);
        assert!(settled(d, &open, &b).is_empty());
        // A log that vanished while either read ran leaves nothing settled.
        let mut torn = b.clone();
        torn.torn = true;
        assert!(settled(d, &torn, &b).is_empty());
        assert!(settled(d, &b, &torn).is_empty());
        // SSTables the reads agree on are settled while another one changes.
        let two = [&full[..], &["oa-4-big-Data.db"]].concat();
        let mut two_later = state(&two, &[], &[]);
        two_later.files.get_mut("oa-4-big-Data.db").unwrap().size += 1;
        let c = settled(d, &state(&two, &[], &[]), &two_later);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].prefix, "oa-3-big-");
    }

    #[test]
    fn kinds_of_directories() {
        let t = Path::new(T);
        assert_eq!(dir_kind(t), DirKind::Table);
        assert_eq!(dir_kind(&t.join(".idx")), DirKind::Table);
        assert_eq!(dir_kind(&t.join("backups")), DirKind::Backups);
        // Regression: a secondary index's incremental backups are part of backups/.
        assert_eq!(dir_kind(&t.join("backups/.idx")), DirKind::Backups);
        assert_eq!(
            dir_kind(&t.join("snapshots/s1")),
            DirKind::Snapshot(t.join("snapshots/s1"))
        );
        assert_eq!(
            dir_kind(&t.join("snapshots/s1/.idx")),
            DirKind::Snapshot(t.join("snapshots/s1"))
        );
        assert_eq!(dir_kind(&t.join("snapshots")), DirKind::Table);
        // Regression: `snapshots` and `backups` count only directly under a table directory.
        let ks = Path::new("/d/snapshots/t-0123456789abcdef0123456789abcdef");
        assert_eq!(dir_kind(ks), DirKind::Table);
        assert_eq!(dir_kind(&ks.join("backups")), DirKind::Backups);
        assert_eq!(
            dir_kind(Path::new(
                "/d/backups/backups-0123456789abcdef0123456789abcdef"
            )),
            DirKind::Table
        );
        assert_eq!(dir_kind(Path::new("/d/ks/backups")), DirKind::Table);
    }

    /// Issue 13 (mutation testing): a table directory needs a name and a 32-digit hex id, and
    /// below a snapshot tag only an index directory belongs to the snapshot.
    #[test]
    fn near_miss_directories_are_tables() {
        for parent in [
            "/d/ks/t-0123abc",
            "/d/ks/-0123456789abcdef0123456789abcdef",
            "/d/ks/t-0123456789abcdef0123456789abcdeg",
        ] {
            let p = Path::new(parent);
            assert_eq!(dir_kind(&p.join("backups")), DirKind::Table, "{parent}");
            assert_eq!(
                dir_kind(&p.join("snapshots/s1")),
                DirKind::Table,
                "{parent}"
            );
        }
        let t = Path::new(T);
        assert_eq!(dir_kind(&t.join("snapshots/s1/sub")), DirKind::Table);
        assert_eq!(dir_kind(&t.join("snapshots/.s1/sub/x")), DirKind::Table);
        // An index directory is in backups/ only below a table's backups/.
        assert_eq!(dir_kind(&t.join("sub/.idx")), DirKind::Table);
        assert_eq!(dir_kind(Path::new("/d/ks/backups/.idx")), DirKind::Table);
    }
}
