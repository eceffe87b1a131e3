//! `tablechop` against both store backends: per-directory mark and sweep, dry run, grace period,
//! and requests bounded by pages rather than keys.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use futures::StreamExt;
use support::*;
use tablesnap::meta::ObjectMeta;
use tablesnap::store::{Source, Store};

both_backends!(
    quiet_table_keeps_its_live_files,
    dry_run_deletes_nothing,
    objects_younger_than_grace_survive,
    requests_are_bounded_by_pages,
    unreadable_kept_index_deletes_nothing,
    segments_a_kept_restore_point_needs_are_kept,
);

const DAY: i64 = 86_400;

fn chop(b: &Backend, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tablechop"));
    cmd.args(["-n", "testhost"]).args(b.args()).args(args);
    let o = cmd.output().expect("run tablechop");
    assert!(
        o.status.success(),
        "tablechop failed: exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn in_days(d: i64) -> String {
    (tablesnap::when::now() + d * DAY).to_string()
}

async fn put(s: &Store, key: &str, body: Vec<u8>, meta: &ObjectMeta) {
    s.put(key, Source::Memory(Bytes::from(body)), meta, None)
        .await
        .unwrap();
}

async fn put_index(s: &Store, dir: &str, data_name: &str, names: &[&str]) {
    let body = serde_json::to_vec(&serde_json::json!({ dir: names })).unwrap();
    put(
        s,
        &format!("testhost:{dir}/{data_name}-listdir.json"),
        body,
        &ObjectMeta::json(),
    )
    .await;
}

async fn keys(s: &Store) -> BTreeSet<String> {
    s.list("testhost:")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Table a (busy): flush 1, then 1 compacted into 2 (1's files gone from the newest index).
/// Table b (quiet): one index. Plus an object no index lists. Returns the keys that a run with
/// everything old must delete.
async fn two_tables(s: &Store) -> BTreeSet<String> {
    let a = "/data/ks/a-1";
    let b = "/data/ks/b-2";
    for f in [
        "nb-1-big-Data.db",
        "nb-1-big-Index.db",
        "nb-2-big-Data.db",
        "nb-2-big-Index.db",
    ] {
        put(
            s,
            &format!("testhost:{a}/{f}"),
            data(100, 1),
            &ObjectMeta::default(),
        )
        .await;
    }
    put_index(
        s,
        a,
        "nb-1-big-Data.db",
        &["nb-1-big-Data.db", "nb-1-big-Index.db", "backups"],
    )
    .await;
    put_index(
        s,
        a,
        "nb-2-big-Data.db",
        &["nb-2-big-Data.db", "nb-2-big-Index.db", "backups"],
    )
    .await;
    put(
        s,
        &format!("testhost:{b}/nb-7-big-Data.db"),
        data(50, 2),
        &ObjectMeta::default(),
    )
    .await;
    put_index(s, b, "nb-7-big-Data.db", &["nb-7-big-Data.db"]).await;
    put(
        s,
        "testhost:/data/ks/a-1/orphan.db",
        data(10, 3),
        &ObjectMeta::default(),
    )
    .await;
    // Another host and a path outside /data are not ours to touch.
    put(
        s,
        "otherhost:/data/ks/a-1/nb-1-big-Data.db",
        data(10, 4),
        &ObjectMeta::default(),
    )
    .await;
    put(s, "testhost:/data2/x", data(10, 5), &ObjectMeta::default()).await;
    [
        "testhost:/data/ks/a-1/nb-1-big-Data.db",
        "testhost:/data/ks/a-1/nb-1-big-Index.db",
        "testhost:/data/ks/a-1/nb-1-big-Data.db-listdir.json",
        "testhost:/data/ks/a-1/orphan.db",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

async fn quiet_table_keeps_its_live_files(b: Backend) {
    let s = b.store().await;
    let doomed = two_tables(&s).await;
    let before = keys(&s).await;
    // Thirty days later, keeping seven days: every index is old. The Python tool kept only the
    // newest index under the whole path, so table b lost nb-7; here every directory keeps its
    // newest index and what it lists.
    let o = chop(&b, &["--now", &in_days(30), "/data", "7"]);
    let after = keys(&s).await;
    let expected: BTreeSet<String> = before.difference(&doomed).cloned().collect();
    assert_eq!(after, expected, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(after.contains("testhost:/data/ks/b-2/nb-7-big-Data.db"));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("deleted 4 objects"), "{summary}");
    // Another host's object is not touched.
    assert!(
        s.head("otherhost:/data/ks/a-1/nb-1-big-Data.db")
            .await
            .unwrap()
            .is_some()
    );

    // A second run at the real time finds only young or kept objects: nothing more goes.
    let o = chop(&b, &["/data", "0"]);
    assert_eq!(
        keys(&s).await,
        expected,
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A kept index that cannot be parsed (not JSON, or more than one top-level key, which the
/// Python tool refuses too) means its files cannot be known: nothing at all is deleted, and the
/// run says why and fails.
async fn unreadable_kept_index_deletes_nothing(b: Backend) {
    let s = b.store().await;
    two_tables(&s).await;
    let bad_bodies: [&[u8]; 2] = [
        b"{not json",
        br#"{"/data/ks/c-3": ["nb-9-big-Data.db"], "/other": []}"#,
    ];
    for (i, body) in bad_bodies.into_iter().enumerate() {
        let key = format!("testhost:/data/ks/c-3/nb-{i}-big-Data.db-listdir.json");
        put(&s, &key, body.to_vec(), &ObjectMeta::json()).await;
        let before = keys(&s).await;
        let o = Command::new(env!("CARGO_BIN_EXE_tablechop"))
            .args(["-n", "testhost"])
            .args(b.args())
            .args(["--now", &in_days(30), "--grace", "0", "/data", "7"])
            .output()
            .expect("run tablechop");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "must fail: {err}");
        assert!(
            err.contains("nb-") && err.contains("listdir.json"),
            "names the index: {err}"
        );
        assert_eq!(keys(&s).await, before, "nothing deleted: {err}");
        s.delete_many(&[key]).await.unwrap();
    }
}

async fn dry_run_deletes_nothing(b: Backend) {
    let s = b.store().await;
    let doomed = two_tables(&s).await;
    let before = keys(&s).await;
    let o = chop(&b, &["-d", "-l", "--now", &in_days(30), "/data", "7"]);
    assert_eq!(keys(&s).await, before);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let listed: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("would delete "))
        .map(String::from)
        .collect();
    assert_eq!(listed, doomed, "{stdout}");
    assert!(stdout.contains("would delete 4 objects"), "{stdout}");
}

async fn objects_younger_than_grace_survive(b: Backend) {
    let s = b.store().await;
    let doomed = two_tables(&s).await;
    let before = keys(&s).await;
    // An hour later, age 0 keeps only the newest index of each directory, but everything is
    // younger than the default grace of one day.
    let o = chop(
        &b,
        &[
            "--now",
            &(tablesnap::when::now() + 3600).to_string(),
            "/data",
            "0",
        ],
    );
    assert_eq!(keys(&s).await, before);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("4 younger than the grace period spared"),
        "{stdout}"
    );
    // Two hours later with a grace of one hour they go.
    let later = (tablesnap::when::now() + 7200).to_string();
    chop(&b, &["--now", &later, "--grace", "1h", "/data", "0"]);
    let after = keys(&s).await;
    assert_eq!(after, before.difference(&doomed).cloned().collect());
}

async fn requests_are_bounded_by_pages(b: Backend) {
    let s = b.store().await;
    let dir = "/data/ks/big-1";
    let n = 1_100;
    futures::stream::iter((0..n).map(|i| {
        let s = &s;
        async move {
            put(
                s,
                &format!("testhost:{dir}/nb-{i}-big-Index.db"),
                vec![b'x'; 8],
                &ObjectMeta::default(),
            )
            .await
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<()>>()
    .await;
    put(
        &s,
        &format!("testhost:{dir}/nb-live-big-Data.db"),
        vec![1; 8],
        &ObjectMeta::default(),
    )
    .await;
    put_index(&s, dir, "nb-live-big-Data.db", &["nb-live-big-Data.db"]).await;

    let o = chop(&b, &["--now", &in_days(30), "/data", "7"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        keys(&s).await,
        [
            format!("testhost:{dir}/nb-live-big-Data.db"),
            format!("testhost:{dir}/nb-live-big-Data.db-listdir.json")
        ]
        .into_iter()
        .collect()
    );
    // 1,102 keys: at most 2 list pages (1,000 keys a page on S3), 1 index read, 2 delete batches.
    let total: u64 = stdout
        .split("total=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total= in {stdout}"));
    assert!(total <= 5, "{total} requests for {n} keys: {stdout}");
    assert!(stdout.contains(&format!("deleted {n} objects")), "{stdout}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let store = format!("file://{}", d.path().display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&store, "data", "7"], "data"),
        (vec![&store, "/data", "seven"], "seven"),
        (vec![&store, "/data", "7", "--grace", "1w"], "1w"),
        (vec![&store, "/data", "7", "--now", "soon"], "soon"),
        (vec![&store, "/data", "7", "-j", "0"], "0"),
        (vec!["bad_bucket!", "/data", "7"], "bad_bucket!"),
    ];
    for (args, needle) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_tablechop"))
            .args(["-n", "h"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!Path::new(&d.path().join("x")).exists());
}

/// Commit log segments (`--commitlog-archive`): the segments of a node's earlier run are deleted
/// once the oldest kept index is in a later run (every write of a run is flushed at the next
/// start); the segments of the run the kept restore point falls in stay, and so does everything
/// without `--commitlog-archive`, or without the agent's segment metadata.
async fn segments_a_kept_restore_point_needs_are_kept(b: Backend) {
    let s = b.store().await;
    let dir = "/data/ks/a-1";
    put(
        &s,
        &format!("testhost:{dir}/nb-1-big-Data.db"),
        vec![1],
        &ObjectMeta::default(),
    )
    .await;
    put_index(&s, dir, "nb-1-big-Data.db", &["nb-1-big-Data.db"]).await;
    let now_ms = tablesnap::when::now() * 1000;
    let earlier = (now_ms - 20 * DAY * 1000) as u64;
    let later = (now_ms - 5 * DAY * 1000) as u64;
    let mut segments = Vec::new();
    for (run, n) in [(earlier, 3u64), (later, 2)] {
        for i in 0..n {
            let id = run + i;
            let meta = tablesnap::segment::SegmentMeta {
                id,
                version: 7,
                last_write: id as i64 + 60_000 * (i as i64 + 1),
                seen: id as i64 + 60_000 * (i as i64 + 1),
                oldest_live: None,
                live_at: None,
                node: "testhost".into(),
                cassandra_version: None,
            };
            let mut om = ObjectMeta::default();
            om.user
                .insert(tablesnap::segment::META_KEY.into(), meta.to_json());
            let key = format!("testhost:/cl/CommitLog-7-{id}.log");
            put(&s, &key, vec![2; 10], &om).await;
            segments.push(key);
        }
    }
    // A segment without the agent's metadata.
    put(
        &s,
        "testhost:/cl/CommitLog-7-1.log",
        vec![3],
        &ObjectMeta::default(),
    )
    .await;
    let before = keys(&s).await;

    // Without --commitlog-archive, a path covering the archive deletes no segment.
    chop(&b, &["/", "0", "--grace", "0", "--now", &in_days(1)]);
    assert_eq!(
        keys(&s).await,
        before,
        "no segment deleted without --commitlog-archive"
    );

    let out = chop(
        &b,
        &[
            "/data",
            "0",
            "--grace",
            "0",
            "--now",
            &in_days(1),
            "--commitlog-archive",
            "/cl",
            "-l",
        ],
    );
    let gone: BTreeSet<String> = before.difference(&keys(&s).await).cloned().collect();
    let want: BTreeSet<String> = segments[..3].iter().cloned().collect();
    assert_eq!(
        gone,
        want,
        "the earlier run's segments go, nothing else: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
