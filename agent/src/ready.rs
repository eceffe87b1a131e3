//! When an SSTable is ready to ship: complete and committed by the rule of its version family.
//! A pure function of a directory's state (names, TOC contents, transaction logs).

use std::collections::{BTreeMap, HashMap};
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
/// - 2.1/2.2: the final-named TOC exists and every component it lists exists.
/// - 3.0 and later: the same, and no transaction log still has an ADD for its prefix without a
///   COMMIT (an aborted or unfinished transaction); an SSTable a committed log REMOVEs is obsolete.
pub fn complete(dir: &Path, st: &DirState) -> Vec<SSTable> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for name in st.files.keys() {
        if let Name::Component { prefix, family, .. } = parse_name(name) {
            families.insert(prefix, family);
        }
    }
    let full = |prefix: &str| -> String { dir.join(prefix).to_string_lossy().into_owned() };
    let mut out = Vec::new();
    for (prefix, family) in families {
        let toc = format!("{prefix}TOC.txt");
        if !st.files.contains_key(&toc) {
            continue;
        }
        let Some(listed) = st.tocs.get(&prefix) else {
            continue;
        };
        if listed.is_empty() {
            continue;
        }
        let mut names: Vec<String> = listed.iter().map(|c| format!("{prefix}{c}")).collect();
        names.push(toc);
        names.sort();
        names.dedup();
        if !names.iter().all(|n| st.files.contains_key(n)) {
            continue;
        }
        if family == Family::Transactional {
            let p = full(&prefix);
            let uncommitted = st.txns.iter().any(|t| !t.committed && t.adds.contains(&p));
            let obsolete = st
                .txns
                .iter()
                .any(|t| t.committed && t.removes.contains(&p));
            if uncommitted || obsolete {
                continue;
            }
        }
        let data = names.iter().find(|n| n.ends_with("Data.db")).cloned();
        out.push(SSTable {
            prefix,
            names,
            data,
        });
    }
    out
}

/// Where a directory sits in Cassandra's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirKind {
    /// A live table (or secondary index) directory.
    Table,
    /// `<table>/backups`: incremental backup hard links.
    Backups,
    /// `<table>/snapshots/<tag>` (the path of the tag directory).
    Snapshot(PathBuf),
}

/// Classifies a directory by its path.
pub fn dir_kind(dir: &Path) -> DirKind {
    let comps: Vec<_> = dir.components().collect();
    for (i, c) in comps.iter().enumerate() {
        if c.as_os_str() == "snapshots" && i + 1 < comps.len() && i > 0 {
            return DirKind::Snapshot(comps[..=i + 1].iter().collect());
        }
    }
    if dir.file_name().is_some_and(|n| n == "backups") {
        DirKind::Backups
    } else {
        DirKind::Table
    }
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
        }
    }

    const COMPS: &[&str] = &["Data.db", "Index.db", "Statistics.db", "TOC.txt"];

    #[test]
    fn needs_toc_and_every_listed_component() {
        let d = Path::new("/d/ks/t-1");
        let all = [
            "nb-1-big-Data.db",
            "nb-1-big-Index.db",
            "nb-1-big-Statistics.db",
            "nb-1-big-TOC.txt",
        ];
        let st = state(&all, &[("nb-1-big-", COMPS)], &[]);
        let c = complete(d, &st);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].data.as_deref(), Some("nb-1-big-Data.db"));
        assert_eq!(c[0].names.len(), 4);
        // Data closed but no TOC yet (3.0+ write order).
        assert!(complete(d, &state(&all[..3], &[], &[])).is_empty());
        // TOC lists a component that is not there.
        assert!(
            complete(
                d,
                &state(
                    &["nb-1-big-Data.db", "nb-1-big-TOC.txt"],
                    &[("nb-1-big-", COMPS)],
                    &[]
                )
            )
            .is_empty()
        );
    }

    #[test]
    fn transactions_gate_3x_and_later() {
        let d = Path::new("/d/ks/t-1");
        let all = [
            "nb-2-big-Data.db",
            "nb-2-big-Index.db",
            "nb-2-big-Statistics.db",
            "nb-2-big-TOC.txt",
        ];
        let add = "ADD:[/d/ks/t-1/nb-2-big-,0,4][1]\n";
        assert!(
            complete(d, &state(&all, &[("nb-2-big-", COMPS)], &[add])).is_empty(),
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
        let rm = "ADD:[/d/ks/t-1/nb-3-big-,0,4][1]\nREMOVE:[/d/ks/t-1/nb-2-big-,0,4][1]\nCOMMIT:[,0,0][2]\n";
        assert!(complete(d, &state(&all, &[("nb-2-big-", COMPS)], &[rm])).is_empty());
        // 2.x has no logs: a TOC renamed into place is enough.
        let legacy = ["la-1-big-Data.db", "la-1-big-TOC.txt"];
        let st = state(
            &legacy,
            &[("la-1-big-", &["Data.db", "TOC.txt"])],
            &["ADD:[/d/ks/t-1/la-1-big-,0,2][1]\n"],
        );
        assert_eq!(complete(d, &st).len(), 1);
    }

    #[test]
    fn kinds_of_directories() {
        assert_eq!(dir_kind(Path::new("/d/ks/t-1")), DirKind::Table);
        assert_eq!(dir_kind(Path::new("/d/ks/t-1/.idx")), DirKind::Table);
        assert_eq!(dir_kind(Path::new("/d/ks/t-1/backups")), DirKind::Backups);
        assert_eq!(
            dir_kind(Path::new("/d/ks/t-1/snapshots/s1")),
            DirKind::Snapshot("/d/ks/t-1/snapshots/s1".into())
        );
        assert_eq!(
            dir_kind(Path::new("/d/ks/t-1/snapshots/s1/.idx")),
            DirKind::Snapshot("/d/ks/t-1/snapshots/s1".into())
        );
        assert_eq!(dir_kind(Path::new("/d/ks/t-1/snapshots")), DirKind::Table);
    }
}
