//! Cassandra's file names, TOC.txt and transaction logs, from 2.1 to 5.0: pure parsing, no I/O.
//! See the design notes in `cassandra-files.md`: names per version family, temporaries, and the
//! `ADD:[prefix,time,count][crc]` / `REMOVE:` / `COMMIT` / `ABORT` records of transaction logs.

/// Whether a version family commits through transaction logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// 2.1 (`ka`, and older `j*`) and 2.2 (`la`, `lb`): components renamed into place, no logs.
    Legacy,
    /// 3.0 and later (`ma`.. `me`, `na`, `nb`, `oa`, `da`, ...): written in place, committed by logs.
    Transactional,
}

/// What a name in a table directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A component of an SSTable.
    Component {
        /// Everything before the component, e.g. `nb-1-big-` or `ks-t-ka-1-`.
        prefix: String,
        /// The component, e.g. `Data.db`, `TOC.txt`, `SAI+aa+idx+TermsData.db`.
        component: String,
        /// Its version family.
        family: Family,
    },
    /// A file being written or an early-open link: never shipped.
    Temporary,
    /// A transaction log (`<ver>_txn_<op>_<uuid>.log`): read, never shipped.
    TxnLog,
    /// Anything else.
    Other,
}

fn family_of(version: &str, format: &str) -> Family {
    // BIG versions sort alphabetically and `ma` (3.0) is the first with transaction logs; BTI
    // (5.0, versions from `da`) always has them.
    if format == "big" && version < "ma" {
        Family::Legacy
    } else {
        Family::Transactional
    }
}

fn is_version(v: &str) -> bool {
    v.len() == 2 && v.bytes().all(|b| b.is_ascii_lowercase())
}

/// Parses a file name.
pub fn parse_name(name: &str) -> Name {
    if name.ends_with(".tmp")
        || name.starts_with("tmp-")
        || name.starts_with("tmplink-")
        || name.contains("-tmp-")
        || name.contains("-tmplink-")
        || name.contains(".tmp-")
    {
        return Name::Temporary;
    }
    if name.ends_with(".log") && name.contains("_txn_") {
        return Name::TxnLog;
    }
    let parts: Vec<&str> = name.splitn(4, '-').collect();
    // 2.2 and later: <ver>-<id>-<big|bti>-<Component>
    if parts.len() == 4
        && is_version(parts[0])
        && matches!(parts[2], "big" | "bti")
        && is_id(parts[1])
    {
        let prefix = format!("{}-{}-{}-", parts[0], parts[1], parts[2]);
        return Name::Component {
            component: parts[3].to_string(),
            prefix,
            family: family_of(parts[0], parts[2]),
        };
    }
    // 2.1 and older: <ks>-<table>-<ver>-<gen>-<Component>
    let parts: Vec<&str> = name.splitn(5, '-').collect();
    if parts.len() == 5
        && is_version(parts[2])
        && parts[3].bytes().all(|b| b.is_ascii_digit())
        && !parts[3].is_empty()
        && is_cql_name(parts[0])
        && is_cql_name(parts[1])
    {
        let prefix = format!("{}-{}-{}-{}-", parts[0], parts[1], parts[2], parts[3]);
        return Name::Component {
            component: parts[4].to_string(),
            prefix,
            family: family_of(parts[2], "big"),
        };
    }
    Name::Other
}

/// A generation number or a 4.1+ UUID-like id (base-36 groups separated by `_`).
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_')
}

/// Keyspace and table names, and 2.x index tables (`table.idx`).
fn is_cql_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// The components a TOC.txt lists (one per line); a last line without newline still counts.
pub fn parse_toc(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a transaction log says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnLog {
    /// Path prefixes of SSTables the transaction adds.
    pub adds: Vec<String>,
    /// Path prefixes of SSTables the transaction removes (obsolete once committed).
    pub removes: Vec<String>,
    /// A COMMIT record was written.
    pub committed: bool,
    /// An ABORT record was written.
    pub aborted: bool,
}

/// Parses a transaction log. Records are `TYPE:[path,time,count][checksum]`; a line that is not
/// complete yet (no closing checksum bracket) is ignored.
pub fn parse_txn(text: &str) -> TxnLog {
    let mut log = TxnLog::default();
    for line in text.lines() {
        let line = line.trim();
        let Some((kind, rest)) = line.split_once(':') else {
            continue;
        };
        // A complete record ends with "][<checksum>]".
        if !rest.starts_with('[') || !rest.ends_with(']') || !rest.contains("][") {
            continue;
        }
        let path = rest[1..].split([',', ']']).next().unwrap_or("").to_string();
        match kind.to_ascii_uppercase().as_str() {
            "ADD" if !path.is_empty() => log.adds.push(path),
            "REMOVE" if !path.is_empty() => log.removes.push(path),
            "COMMIT" => log.committed = true,
            "ABORT" => log.aborted = true,
            _ => {}
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(prefix: &str, component: &str, family: Family) -> Name {
        Name::Component {
            prefix: prefix.into(),
            component: component.into(),
            family,
        }
    }

    #[test]
    fn names_of_every_family() {
        use Family::*;
        assert_eq!(
            parse_name("ks-t-ka-12-Data.db"),
            comp("ks-t-ka-12-", "Data.db", Legacy)
        );
        assert_eq!(
            parse_name("ks-t.idx-ka-3-TOC.txt"),
            comp("ks-t.idx-ka-3-", "TOC.txt", Legacy)
        );
        assert_eq!(
            parse_name("la-4-big-Summary.db"),
            comp("la-4-big-", "Summary.db", Legacy)
        );
        assert_eq!(
            parse_name("lb-4-big-Digest.adler32"),
            comp("lb-4-big-", "Digest.adler32", Legacy)
        );
        assert_eq!(
            parse_name("ma-5-big-CRC.db"),
            comp("ma-5-big-", "CRC.db", Transactional)
        );
        assert_eq!(
            parse_name("me-6-big-Digest.crc32"),
            comp("me-6-big-", "Digest.crc32", Transactional)
        );
        assert_eq!(
            parse_name("nb-7-big-Data.db"),
            comp("nb-7-big-", "Data.db", Transactional)
        );
        assert_eq!(
            parse_name("nb-3gpk_0q1t_2ey4x2cmmt35ng3pw1-big-Statistics.db"),
            comp(
                "nb-3gpk_0q1t_2ey4x2cmmt35ng3pw1-big-",
                "Statistics.db",
                Transactional
            )
        );
        assert_eq!(
            parse_name("oa-8-big-SAI+aa+v_idx+TermsData.db"),
            comp("oa-8-big-", "SAI+aa+v_idx+TermsData.db", Transactional)
        );
        assert_eq!(
            parse_name("da-9-bti-Partitions.db"),
            comp("da-9-bti-", "Partitions.db", Transactional)
        );
        assert_eq!(
            parse_name("da-9-bti-Rows.db"),
            comp("da-9-bti-", "Rows.db", Transactional)
        );
    }

    #[test]
    fn temporaries_and_logs_are_recognised() {
        for n in [
            "ks-t-tmp-ka-1-Data.db",
            "ks-t-tmplink-ka-1-Index.db",
            "tmp-la-2-big-Data.db",
            "tmplink-la-2-big-Index.db",
            "nb-3-big-Statistics.db.tmp",
            "nb-3-big-Data.db.tmp",
        ] {
            assert_eq!(parse_name(n), Name::Temporary, "{n}");
        }
        assert_eq!(
            parse_name("nb_txn_flush_7b0e2f10-0000-11ee-8000-000000000000.log"),
            Name::TxnLog
        );
        assert_eq!(parse_name("manifest.json"), Name::Other);
        assert_eq!(parse_name("schema.cql"), Name::Other);
        assert_eq!(parse_name("backups"), Name::Other);
    }

    #[test]
    fn toc_lines() {
        assert_eq!(
            parse_toc("Data.db\nTOC.txt\r\nFilter.db"),
            vec!["Data.db", "TOC.txt", "Filter.db"]
        );
        assert!(parse_toc("").is_empty());
    }

    #[test]
    fn txn_records() {
        let log = "ADD:[/d/ks/t-1/nb-5-big-,0,8][2164195123]\n\
                   REMOVE:[/d/ks/t-1/nb-1-big-,1577836800000,8][1293582397]\n\
                   REMOVE:[/d/ks/t-1/nb-2-big-,1577836800000,8][1293582398]\n";
        let t = parse_txn(log);
        assert_eq!(t.adds, vec!["/d/ks/t-1/nb-5-big-"]);
        assert_eq!(t.removes.len(), 2);
        assert!(!t.committed && !t.aborted);
        let t = parse_txn(&format!("{log}COMMIT:[,0,0][2613697770]\n"));
        assert!(t.committed);
        let t = parse_txn(&format!("{log}ABORT:[,0,0][1]\n"));
        assert!(t.aborted && !t.committed);
        // A record still being written does not count.
        let t = parse_txn(&format!("{log}COMMIT:[,0,0][26"));
        assert!(!t.committed);
    }

    /// Issue 13 (mutation testing): each part of a name is checked, so a near miss is `Other`.
    #[test]
    fn near_miss_names_are_other() {
        for n in [
            // Not a two-letter lower-case version.
            "abc-1-big-Data.db",
            "NB-1-big-Data.db",
            "n-1-big-Data.db",
            // Not a generation or id.
            "nb--big-Data.db",
            "nb-X1-big-Data.db",
            "nb-1.5-big-Data.db",
            // 2.1: not a keyspace or table name.
            "-t-ka-1-Data.db",
            "ks!-t-ka-1-Data.db",
            "ks-t!-ka-1-Data.db",
            "ks--ka-1-Data.db",
            // A log that is not a transaction log, and a transaction name that is not a log.
            "system.log",
            "nb_txn_flush_7b0e2f10.json",
        ] {
            assert_eq!(parse_name(n), Name::Other, "{n}");
        }
        // Underscores and dots are allowed in 2.1 keyspace and table names.
        assert_eq!(
            parse_name("my_ks-my_t.idx-ka-1-Data.db"),
            comp("my_ks-my_t.idx-ka-1-", "Data.db", Family::Legacy)
        );
    }

    #[test]
    fn records_without_a_path_add_and_remove_nothing() {
        let t = parse_txn("ADD:[,0,0][1]\nREMOVE:[,0,0][2]\nCOMMIT:[,0,0][3]\n");
        assert!(t.adds.is_empty() && t.removes.is_empty(), "{t:?}");
        assert!(t.committed);
    }
}
