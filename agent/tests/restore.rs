//! `tableslurp` against both store backends: round trips through the real agent, verification
//! failures named by key, recursive and commit log restores, ownership, ranged parts.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tablesnap::meta::{ObjectMeta, stat_json};
use tablesnap::store::{Source, Store};

both_backends!(
    every_index_restores_the_disk_as_it_was,
    missing_and_corrupt_objects_fail_by_name,
    recursive_restores_every_table,
    preserve_sets_owner_and_mode,
    existing_files_kept_unless_force_and_dry_run_writes_nothing,
    large_objects_come_in_ranged_parts,
    commitlogs_from_the_restore_point,
    point_in_time_plans_segments_and_writes_the_properties,
);

/// Runs tableslurp with `-n testhost`, `args`, then the backend's bucket arguments.
fn slurp(b: &Backend, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tableslurp"));
    cmd.args(["-n", "testhost"]).args(b.args()).args(args);
    cmd.output().expect("run tableslurp")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "tableslurp failed: {}", text(&o));
    o
}

/// A directory's regular files, name to content.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn key(path: &Path) -> String {
    format!("testhost:{}", path.display())
}

fn meta(data: &[u8], uid: u32, gid: u32, mode: u32) -> ObjectMeta {
    let mut m = ObjectMeta::default();
    m.user.insert("stat".into(), stat_json(uid, gid, mode));
    m.user.insert("md5sum".into(), md5_hex(data));
    m
}

async fn put_file(s: &Store, path: &Path, data: &[u8]) {
    put_file_as(s, path, data, 0, 0, 0o100644).await
}

async fn put_file_as(s: &Store, path: &Path, data: &[u8], uid: u32, gid: u32, mode: u32) {
    s.put(
        &key(path),
        Source::Memory(Bytes::copy_from_slice(data)),
        &meta(data, uid, gid, mode),
        None,
    )
    .await
    .unwrap();
}

/// Writes the index of `dir/data_name` listing `names`; returns its LastModified.
async fn put_index(s: &Store, dir: &Path, data_name: &str, names: &[&str]) -> i64 {
    let k = format!("{}-listdir.json", key(&dir.join(data_name)));
    let body = serde_json::json!({ dir.to_str().unwrap(): names });
    s.put(
        &k,
        Source::Memory(Bytes::from(serde_json::to_vec(&body).unwrap())),
        &ObjectMeta::json(),
        None,
    )
    .await
    .unwrap();
    modified(s, &k).await
}

async fn modified(s: &Store, k: &str) -> i64 {
    s.list(k)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.key == k)
        .and_then(|o| o.modified)
        .expect("listed with a time")
}

/// Waits until the clock is past `t` (unix seconds), so the next object gets a later
/// LastModified.
async fn after_second(t: i64) {
    eventually(Duration::from_secs(5), "the next second", || async {
        tablesnap::when::now() > t
    })
    .await
}

fn count(summary: &str, field: &str) -> u64 {
    let at = summary
        .find(&format!("{field}="))
        .unwrap_or_else(|| panic!("{field}= not in {summary}"));
    summary[at + field.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn every_index_restores_the_disk_as_it_was(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("data").join("ks").join("t-0123");
    std::fs::create_dir_all(&dir).unwrap();
    let store = b.store().await;
    let agent = Agent::start(&b, &[], &[&dir]);

    // Flushes 1 and 2, a compaction of both into 3 (inputs still there), the inputs deleted,
    // flush 4. After each index appears, the disk as it is then.
    let mut states: Vec<(u32, i64, BTreeMap<String, Vec<u8>>)> = Vec::new();
    let mut last = 0;
    for generation in 1..=4u32 {
        if generation == 4 {
            for g in 1..=2 {
                for c in ["Index.db", "Statistics.db", "TOC.txt", "Data.db"] {
                    std::fs::remove_file(dir.join(format!("nb-{g}-big-{c}"))).unwrap();
                }
            }
        }
        after_second(last).await;
        let seed = u64::from(generation) * 10;
        for (i, c) in ["Index.db", "Statistics.db", "TOC.txt", "Data.db"]
            .iter()
            .enumerate()
        {
            let len = 500 * generation as usize + 37 * i;
            write_rename(
                &dir,
                &format!("nb-{generation}-big-{c}"),
                &data(len, seed + i as u64),
            );
        }
        let idx = format!(
            "{}-listdir.json",
            key(&dir.join(format!("nb-{generation}-big-Data.db")))
        );
        wait_key(&store, &idx).await;
        last = modified(&store, &idx).await;
        states.push((generation, last, files(&dir)));
    }
    agent.stop();
    assert_eq!(
        states[2].2.len(),
        12,
        "compaction inputs and output on disk"
    );
    assert_eq!(states[3].2.len(), 8);

    let origin = dir.to_str().unwrap();
    for (generation, t, expected) in &states {
        let out = d.path().join(format!("f{generation}"));
        let file = format!("nb-{generation}-big-Data.db");
        ok(slurp(&b, &[origin, out.to_str().unwrap(), "-f", &file]));
        assert_eq!(&files(&out), expected, "-f {file}");

        // --as-of the index's LastModified, in both spellings.
        let when = if generation % 2 == 0 {
            tablesnap::when::rfc3339(*t)
        } else {
            t.to_string()
        };
        let out = d.path().join(format!("t{generation}"));
        ok(slurp(
            &b,
            &[origin, out.to_str().unwrap(), "--as-of", &when],
        ));
        assert_eq!(&files(&out), expected, "--as-of {when}");
    }
    // Without a selection: the newest.
    let out = d.path().join("newest");
    let o = ok(slurp(&b, &[origin, out.to_str().unwrap()]));
    assert_eq!(files(&out), states[3].2);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("8 files: 8 downloaded"), "{summary}");
    // Before the first index: nothing to restore, said by name.
    let o = slurp(
        &b,
        &[
            origin,
            d.path().join("none").to_str().unwrap(),
            "--as-of",
            &(states[0].1 - 1).to_string(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no index in testhost:"), "{}", text(&o));
}

async fn missing_and_corrupt_objects_fail_by_name(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = Path::new("/var/lib/cassandra/data/ks/t-1");
    let s = b.store().await;
    let (a, bb, c) = (data(3000, 1), data(2000, 2), data(1000, 3));
    put_file(&s, &dir.join("nb-1-big-Index.db"), &a).await;
    put_file(&s, &dir.join("nb-1-big-Summary.db"), &bb).await;
    put_file(&s, &dir.join("nb-1-big-Data.db"), &c).await;
    put_index(
        &s,
        dir,
        "nb-1-big-Data.db",
        &[
            "nb-1-big-Data.db",
            "nb-1-big-Index.db",
            "nb-1-big-Summary.db",
        ],
    )
    .await;
    // Summary.db disappears; Data.db is replaced by other bytes of the same size, its recorded
    // MD5 unchanged.
    s.delete_many(&[key(&dir.join("nb-1-big-Summary.db"))])
        .await
        .unwrap();
    let mut corrupt = c.clone();
    corrupt[500] ^= 0xff;
    s.put(
        &key(&dir.join("nb-1-big-Data.db")),
        Source::Memory(Bytes::from(corrupt)),
        &meta(&c, 0, 0, 0o100644),
        None,
    )
    .await
    .unwrap();

    let out = d.path().join("out");
    let o = slurp(&b, &[dir.to_str().unwrap(), out.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&key(&dir.join("nb-1-big-Summary.db"))), "{t}");
    assert!(err.contains(&key(&dir.join("nb-1-big-Data.db"))), "{t}");
    assert!(err.contains("MD5"), "{t}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 failed"),
        "{t}"
    );
    // The rest restored; nothing half-written under any name.
    let got = files(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        vec!["nb-1-big-Index.db"],
        "{t}"
    );
    assert_eq!(got["nb-1-big-Index.db"], a);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

async fn recursive_restores_every_table(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let root = Path::new("/data");
    let s = b.store().await;
    let t1 = root.join("ks1/t1-aa");
    let t2 = root.join("ks1/t2-bb");
    let t3 = root.join("ks2/t3-cc");
    let bk = t1.join("backups");
    let snap = t3.join("snapshots/daily");
    put_file(&s, &t1.join("nb-1-big-Data.db"), &data(100, 1)).await;
    let first = put_index(
        &s,
        &t1,
        "nb-1-big-Data.db",
        &["nb-1-big-Data.db", "backups"],
    )
    .await;
    after_second(first).await;
    put_file(&s, &t1.join("nb-2-big-Data.db"), &data(200, 2)).await;
    put_index(
        &s,
        &t1,
        "nb-2-big-Data.db",
        &[
            "nb-1-big-Data.db",
            "nb-2-big-Data.db",
            "backups",
            "snapshots",
        ],
    )
    .await;
    put_file(&s, &bk.join("nb-2-big-Data.db"), &data(200, 2)).await;
    put_index(&s, &bk, "nb-2-big-Data.db", &["nb-2-big-Data.db"]).await;
    put_file(&s, &t2.join("nb-5-big-Data.db"), &data(300, 5)).await;
    put_index(&s, &t2, "nb-5-big-Data.db", &["nb-5-big-Data.db"]).await;
    put_file(&s, &t3.join("nb-7-big-Data.db"), &data(400, 7)).await;
    put_index(&s, &t3, "nb-7-big-Data.db", &["nb-7-big-Data.db"]).await;
    put_file(&s, &snap.join("nb-6-big-Data.db"), &data(50, 6)).await;
    put_file(
        &s,
        &snap.join("manifest.json"),
        b"{\"files\":[\"nb-6-big-Data.db\"]}",
    )
    .await;
    put_index(
        &s,
        &snap,
        "manifest.json",
        &["manifest.json", "nb-6-big-Data.db"],
    )
    .await;

    let out = d.path().join("restore");
    let o = ok(slurp(&b, &["-r", "/data", out.to_str().unwrap()]));
    let f = |p: &str| files(&out.join(p));
    assert_eq!(
        f("ks1/t1-aa").keys().collect::<Vec<_>>(),
        vec!["nb-1-big-Data.db", "nb-2-big-Data.db"]
    );
    assert_eq!(f("ks1/t1-aa")["nb-2-big-Data.db"], data(200, 2));
    assert_eq!(f("ks1/t1-aa/backups")["nb-2-big-Data.db"], data(200, 2));
    assert_eq!(f("ks1/t2-bb")["nb-5-big-Data.db"], data(300, 5));
    assert_eq!(f("ks2/t3-cc")["nb-7-big-Data.db"], data(400, 7));
    assert_eq!(f("ks2/t3-cc/snapshots/daily").len(), 2);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("0 failed"), "{summary}");
    assert!(summary.contains("2 directory entries skipped"), "{summary}");
}

async fn preserve_sets_owner_and_mode(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = Path::new("/data/ks/t-9");
    let s = b.store().await;
    let (x, y) = (data(10, 1), data(20, 2));
    put_file_as(&s, &dir.join("a-Index.db"), &x, 65534, 65534, 0o100640).await;
    put_file_as(&s, &dir.join("a-Data.db"), &y, 0, 0, 0o100600).await;
    put_index(&s, dir, "a-Data.db", &["a-Data.db", "a-Index.db"]).await;

    let out = d.path().join("p");
    ok(slurp(
        &b,
        &["--preserve", dir.to_str().unwrap(), out.to_str().unwrap()],
    ));
    let m = std::fs::metadata(out.join("a-Index.db")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (65534, 65534, 0o640)
    );
    let m = std::fs::metadata(out.join("a-Data.db")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
        (0, 0, 0o600)
    );

    let out = d.path().join("o");
    ok(slurp(
        &b,
        &[
            "-o",
            "nobody",
            "-g",
            "nogroup",
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    ));
    for f in ["a-Index.db", "a-Data.db"] {
        let m = std::fs::metadata(out.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{f}");
    }
    assert_eq!(
        std::fs::metadata(out.join("a-Data.db"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
}

async fn existing_files_kept_unless_force_and_dry_run_writes_nothing(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = Path::new("/data/ks/t-k");
    let s = b.store().await;
    for (n, seed) in [("x-Data.db", 1), ("x-Index.db", 2), ("x-TOC.txt", 3)] {
        put_file(&s, &dir.join(n), &data(100 * seed as usize, seed)).await;
    }
    put_index(
        &s,
        dir,
        "x-Data.db",
        &["x-Data.db", "x-Index.db", "x-TOC.txt"],
    )
    .await;

    let dry = d.path().join("dry");
    let o = ok(slurp(
        &b,
        &["--dry-run", dir.to_str().unwrap(), dry.to_str().unwrap()],
    ));
    assert!(!dry.exists(), "a dry run created the target");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("would download testhost:"))
            .count(),
        3,
        "{stdout}"
    );

    let out = d.path().join("out");
    ok(slurp(&b, &[dir.to_str().unwrap(), out.to_str().unwrap()]));
    // Same size, other bytes: kept; another size: downloaded again.
    std::fs::write(out.join("x-Data.db"), vec![b'z'; 100]).unwrap();
    std::fs::write(out.join("x-Index.db"), b"short").unwrap();
    let o = ok(slurp(&b, &[dir.to_str().unwrap(), out.to_str().unwrap()]));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("1 downloaded") && stdout.contains("2 already there"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(out.join("x-Data.db")).unwrap(),
        vec![b'z'; 100]
    );
    assert_eq!(std::fs::read(out.join("x-Index.db")).unwrap(), data(200, 2));
    ok(slurp(
        &b,
        &["--force", dir.to_str().unwrap(), out.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(out.join("x-Data.db")).unwrap(), data(100, 1));
}

async fn large_objects_come_in_ranged_parts(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = Path::new("/data/ks/t-big");
    let s = b.store().await;
    let big = data(3 * 1024 * 1024 + 5, 42);
    put_file(&s, &dir.join("nb-1-big-Data.db"), &big).await;
    put_index(&s, dir, "nb-1-big-Data.db", &["nb-1-big-Data.db"]).await;
    let out = d.path().join("out");
    let o = ok(slurp(
        &b,
        &[
            "--part-size",
            "1",
            "-f",
            "nb-1-big-Data.db",
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read(out.join("nb-1-big-Data.db")).unwrap(), big);
    // One GET for the index, four ranged GETs for the file.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(count(&stdout, "get"), 5, "{stdout}");

    // One range of 10 MiB: its body is written in several batches, each at its own offset.
    let larger = data(10 * 1024 * 1024 + 7, 43);
    put_file(&s, &dir.join("nb-2-big-Data.db"), &larger).await;
    put_index(&s, dir, "nb-2-big-Data.db", &["nb-2-big-Data.db"]).await;
    let out = d.path().join("out-one-range");
    let o = ok(slurp(
        &b,
        &[
            "--part-size",
            "16",
            "-f",
            "nb-2-big-Data.db",
            dir.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    ));
    assert!(
        std::fs::read(out.join("nb-2-big-Data.db")).unwrap() == larger,
        "the 10 MiB file differs"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(count(&stdout, "get"), 2, "{stdout}");
}

async fn commitlogs_from_the_restore_point(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let s = b.store().await;
    let cl = PathBuf::from("/var/lib/cassandra/commitlog_archive");
    let table = Path::new("/var/lib/cassandra/data/ks/t-1");
    put_file(&s, &cl.join("CommitLog-7-1.log"), &data(64, 1)).await;
    let t0 = modified(&s, &key(&cl.join("CommitLog-7-1.log"))).await;
    after_second(t0).await;
    put_file(&s, &table.join("nb-1-big-Data.db"), &data(10, 9)).await;
    let t1 = put_index(&s, table, "nb-1-big-Data.db", &["nb-1-big-Data.db"]).await;
    after_second(t1).await;
    put_file(&s, &cl.join("CommitLog-7-2.log"), &data(64, 2)).await;
    put_file(&s, &cl.join("CommitLog-7-3.log"), &data(64, 3)).await;

    let out = d.path().join("cl");
    ok(slurp(
        &b,
        &[
            "--commitlogs",
            cl.to_str().unwrap(),
            "/var/lib/cassandra/data",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        files(&out).keys().collect::<Vec<_>>(),
        vec!["CommitLog-7-2.log", "CommitLog-7-3.log"]
    );
    assert_eq!(files(&out)["CommitLog-7-3.log"], data(64, 3));
}

/// Puts a segment as the agent ships one: the file and its `commitlog` metadata.
async fn put_segment(s: &Store, dir: &Path, id: u64, last_write_ms: i64) {
    let name = format!("CommitLog-7-{id}.log");
    let body = data(64, id);
    let mut m = meta(&body, 0, 0, 0o100644);
    let seg = tablesnap::segment::SegmentMeta {
        id,
        version: 7,
        last_write: last_write_ms,
        seen: last_write_ms,
        oldest_live: None,
        live_at: None,
        node: "testhost".into(),
        cassandra_version: Some("5.0.9".into()),
    };
    m.user
        .insert(tablesnap::segment::META_KEY.into(), seg.to_json());
    s.put(
        &key(&dir.join(name)),
        Source::Memory(Bytes::from(body)),
        &m,
        None,
    )
    .await
    .unwrap();
}

/// `--point-in-time`: the dry run prints the SSTables, the segments from the run's start to the
/// one holding T and the properties lines, and writes nothing; the restore writes the segments
/// and the properties file; a moment after the window and a gap are refused with nothing written.
async fn point_in_time_plans_segments_and_writes_the_properties(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let s = b.store().await;
    let cl = PathBuf::from("/var/lib/cassandra/commitlog_archive");
    let table = Path::new("/var/lib/cassandra/data/ks/t-1");
    put_file(&s, &table.join("nb-1-big-Data.db"), &data(10, 9)).await;
    let t_index = put_index(&s, table, "nb-1-big-Data.db", &["nb-1-big-Data.db"]).await;
    // One run of the node: ids from its start (10 minutes before the index), a segment closed
    // each minute; the index falls in segment +10, T two minutes later in segment +12.
    let start = (t_index - 600) * 1000;
    for i in 0..14u64 {
        put_segment(
            &s,
            &cl,
            start as u64 + i,
            start + 60_000 * (i as i64 + 1) - 1,
        )
        .await;
    }
    let t = t_index + 125;
    let segs = d.path().join("segments");
    let props = d.path().join("restore.properties");
    let target = d.path().join("data");
    let pitr = |t: i64, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "-r".into(),
            "--as-of".into(),
            t.to_string(),
            "--point-in-time".into(),
            cl.display().to_string(),
            "--segments-to".into(),
            segs.display().to_string(),
            "--properties".into(),
            props.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push("/var/lib/cassandra/data".into());
        args.push(target.display().to_string());
        args
    };
    let run = |args: Vec<String>| slurp(&b, &args.iter().map(String::as_str).collect::<Vec<_>>());

    let o = ok(run(pitr(t, &["--dry-run"])));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let planned: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("would download") && l.contains("CommitLog-"))
        .collect();
    assert_eq!(planned.len(), 13, "segments 0 to 12: {stdout}");
    assert!(
        stdout.contains(&format!("CommitLog-7-{}.log", start + 12)),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("CommitLog-7-{}.log", start + 13)),
        "{stdout}"
    );
    assert!(stdout.contains("nb-1-big-Data.db"), "{stdout}");
    let point = jiff::Timestamp::from_second(t)
        .unwrap()
        .strftime("%Y:%m:%d %H:%M:%S")
        .to_string();
    assert!(
        stdout.contains(&format!("restore_point_in_time={point}\n")),
        "{stdout}"
    );
    assert!(
        !segs.exists() && !props.exists() && !target.exists(),
        "a dry run writes nothing"
    );

    ok(run(pitr(t, &[])));
    assert_eq!(files(&segs).len(), 13);
    assert_eq!(
        files(&segs)[&format!("CommitLog-7-{}.log", start + 3)],
        data(64, start as u64 + 3)
    );
    let lines = std::fs::read_to_string(&props).unwrap();
    assert!(
        lines.contains(&format!("\nrestore_directories={}\n", segs.display())),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("\nrestore_point_in_time={point}\n")),
        "{lines}"
    );
    assert_eq!(
        files(&target.join("ks/t-1"))["nb-1-big-Data.db"],
        data(10, 9)
    );

    // Refused: after the window; before any index; across a gap. Nothing is written.
    let fresh = |o: &Output, needle: &str| {
        assert!(!o.status.success(), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{needle:?} in {}", text(o));
    };
    std::fs::remove_dir_all(&segs).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    std::fs::remove_file(&props).unwrap();
    fresh(
        &run(pitr(t_index + 3600, &[])),
        "the recoverable window ends at",
    );
    fresh(&run(pitr(t_index - 3600, &[])), "no index");
    s.delete_many(&[key(&cl.join(format!("CommitLog-7-{}.log", start + 11)))])
        .await
        .unwrap();
    fresh(
        &run(pitr(t, &[])),
        &format!("gap: segments between {} and {}", start + 10, start + 12),
    );
    assert!(
        !segs.exists() && !props.exists() && !target.exists(),
        "a refusal writes nothing"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let store = format!("file://{}", d.path().display());
    let file = d.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&store, "relative/dir", "/tmp/x"], "relative/dir"),
        (
            vec![&store, "/d", "/tmp/x", "--as-of", "yesterday"],
            "yesterday",
        ),
        (
            vec![&store, "/d", "/tmp/x", "-o", "no-such-user-x"],
            "no-such-user-x",
        ),
        (vec![&store, "/d", "/tmp/x", "-f", "a/b"], "a/b"),
        (vec![&store, "/d", "/tmp/x", "-f", "x", "-r"], "--recursive"),
        (
            vec![&store, "/d", "/tmp/x", "--part-size", "0"],
            "--part-size",
        ),
        (vec!["s3://b", "/d", "/tmp/x"], "s3://b"),
        (
            vec![&store, "/d", file.to_str().unwrap()],
            "not a directory",
        ),
        (
            vec![
                &store,
                "/d",
                "/tmp/x",
                "--point-in-time",
                "/cl",
                "--segments-to",
                "/tmp/s",
            ],
            "--as-of",
        ),
        (
            vec![
                &store,
                "/d",
                "/tmp/x",
                "--as-of",
                "1",
                "--point-in-time",
                "cl",
                "--segments-to",
                "/tmp/s",
            ],
            "--point-in-time \"cl\"",
        ),
        (
            vec![
                &store,
                "/d",
                "/tmp/x",
                "--as-of",
                "1",
                "--point-in-time",
                "/cl",
                "--segments-to",
                "/tmp/x/s",
            ],
            "--segments-to",
        ),
    ];
    for (args, needle) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_tableslurp"))
            .args(["-n", "h"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
