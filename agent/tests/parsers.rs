//! Fault 7: every parser of outside input, property-tested: no panic on any input (SSTable names,
//! TOC.txt, transaction logs, index JSON, object keys, metadata, times and durations, the three
//! binaries' command lines), and round trips where there is one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use clap::Parser;
use proptest::prelude::*;
use tablesnap::key::KeyNamer;
use tablesnap::queue::Version;
use tablesnap::ready::DirState;

/// Strings made of the characters the parsers care about, plus anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9_.:/\\-\\[\\],\n ]{0,80}",
        "(ADD|REMOVE|COMMIT|ABORT):\\[[a-z0-9/_.-]{0,30}(,[0-9]{0,5}){0,3}\\](\\[[0-9]{0,10}\\])?\n?",
        "(nb|ma|me|oa|da|la|ka|jb)-[0-9]{1,4}-(big|bti)-(Data|Index|TOC|Statistics|Summary|Filter)\\.(db|txt)",
        "[a-z0-9_]{1,8}_txn_(compaction|flush|write)_[0-9a-f-]{0,36}\\.log",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn sstable_names_toc_and_txn_logs(s in text()) {
        let _ = tablesnap::sstable::parse_name(&s);
        let toc = tablesnap::sstable::parse_toc(&s);
        prop_assert!(toc.iter().all(|l| !l.is_empty() && l.trim() == l));
        let _ = tablesnap::sstable::parse_txn(&s);
    }

    #[test]
    fn readiness_of_any_directory_state(
        names in proptest::collection::vec(text(), 0..12),
        toc in text(),
        txn in text(),
    ) {
        let files: BTreeMap<String, Version> = names
            .iter()
            .map(|n| (n.clone(), Version { size: n.len() as u64, mtime: None }))
            .collect();
        let mut tocs = HashMap::new();
        if let Some(first) = names.first() {
            tocs.insert(first.clone(), tablesnap::sstable::parse_toc(&toc));
        }
        let linked_from = (names.len() % 2 == 0).then(|| names.iter().skip(1).cloned().collect());
        let st = DirState { files, tocs, txns: vec![tablesnap::sstable::parse_txn(&txn)], linked_from, torn: false };
        let dir = Path::new("/var/lib/cassandra/data/ks/t-0123");
        let _ = tablesnap::ready::complete(dir, &st);
        let _ = tablesnap::ready::dir_kind(dir);
    }

    #[test]
    fn index_json(body in prop_oneof![
        any::<Vec<u8>>(),
        text().prop_map(String::into_bytes),
        proptest::collection::vec(text(), 0..5).prop_map(|v| {
            serde_json::json!({ "/d": v }).to_string().into_bytes()
        }),
    ]) {
        if let Ok(names) = tablesnap::restore::plan::parse_index("k", &body, "/d") {
            // Whatever passes is a plain file name: restoring it cannot escape the directory.
            for n in names {
                prop_assert!(!n.contains('/') && n != "." && n != ".." && !n.is_empty(), "{n:?}");
            }
        }
    }

    #[test]
    fn keys_round_trip(prefix in "[a-z/]{0,6}", name in "[a-z0-9.-]{1,12}", sep in "[:|#]{1,2}",
                       rest in "(/[a-zA-Z0-9._ -]{1,12}){1,5}", key in any::<String>()) {
        let k = KeyNamer::new(prefix, name, sep);
        let path = PathBuf::from(&rest);
        prop_assert_eq!(k.path_of(&k.data_key(&path)), Some(path.clone()));
        prop_assert!(k.dir_prefix(&path).ends_with('/'));
        let _ = k.path_of(&key);
        let _ = tablesnap::restore::plan::is_index(&key);
        let _ = tablesnap::restore::plan::dir_of(&key);
        let _ = tablesnap::key::wants_index(Path::new(&key));
    }

    #[test]
    fn metadata_times_and_durations(s in text()) {
        let _ = tablesnap::meta::StatMeta::parse(&s);
        let _ = tablesnap::when::parse_time(&s);
        let _ = tablesnap::when::parse_duration(&s);
        let _ = tablesnap::restore::plan::natural_cmp(&s, "nb-10-big-Data.db");
    }
}

/// Command-line words: flags of the three binaries, values that look like what they take, and
/// anything.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "-k",
            "-s",
            "-r",
            "-a",
            "-B",
            "-R",
            "-p",
            "-t",
            "-n",
            "-e",
            "-i",
            "--aws-region",
            "--endpoint-url",
            "--max-upload-size",
            "--multipart-chunk-size",
            "--retries",
            "--mode",
            "--http-listen",
            "--shutdown-timeout",
            "--rescan-interval",
            "--request-timeout",
            "--keyname-separator",
            "--listen-events",
            "--storage-class",
            "--sse-kms-key-id",
            "--staging-dir",
            "--log-format",
            "--at",
            "--age",
            "--list-only",
            "--target",
            "--name",
            "-o",
            "bucket",
            "file:///tmp/x",
            "file://host/x",
            "/tmp",
            "0",
            "5",
            "-1",
            "99999999999999999999",
            "",
            "0.0.0.0:9150",
            "http://127.0.0.1:1",
            "IN_CREATE",
            "cassandra",
            "json",
            "[",
            "(",
            "7d",
            "2026-01-01T00:00:00Z",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn command_lines(words in proptest::collection::vec(word(), 0..10)) {
        let snap = std::iter::once("tablesnap".to_string()).chain(words.iter().cloned());
        if let Ok(a) = tablesnap::cli::Args::try_parse_from(snap) {
            let _ = tablesnap::config::Config::try_from(a);
        }
        let slurp = std::iter::once("tableslurp".to_string()).chain(words.iter().cloned());
        if let Ok(a) = tablesnap::restore::args::SlurpArgs::try_parse_from(slurp) {
            let _ = tablesnap::restore::args::SlurpConfig::try_from(a);
        }
        let chop = std::iter::once("tablechop".to_string()).chain(words.iter().cloned());
        if let Ok(a) = tablesnap::retention::args::ChopArgs::try_parse_from(chop) {
            let _ = tablesnap::retention::args::ChopConfig::try_from(a);
        }
    }
}
