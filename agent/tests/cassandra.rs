//! Cassandra mode against the write simulator, on Garage and on the local directory store: only
//! complete, committed SSTables ship; indexes name exactly the live set, all of it in the bucket.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::sim::{self, Table, Ver};
use support::*;
use tablesnap::store::Store;

both_backends!(
    flush_ships_only_after_commit_every_family,
    aborts_temporaries_and_logs_never_ship,
    compaction_index_names_the_live_set,
    mutable_components_are_shipped_again,
    backups_drain_with_delete_on_backup,
    snapshots_ship_with_manifest_and_schema,
    ephemeral_marker_after_the_manifest_is_respected,
    random_interleavings_rebuild_the_live_set,
    several_data_directories_and_staging_cleanup,
    jbod_snapshot_spans_every_data_directory,
    restart_with_b_compares_by_list_without_reading_files,
    in_place_rewrites_are_shipped_when_their_write_ends,
    include_rule_selects_whole_sstables,
    indexes_never_precede_their_files_while_they_happen,
);

fn start(b: &Backend, roots: &[&Path], extra: &[&str]) -> Agent {
    let mut args = vec!["--mode", "cassandra", "-r", "-a"];
    args.extend_from_slice(extra);
    Agent::start(b, &args, roots)
}

fn key(p: &Path) -> String {
    format!("testhost:{}", p.display())
}

/// The index written for `data` in `dir`: (directory, names).
async fn index(store: &Store, dir: &Path, data: &str) -> Vec<String> {
    let k = format!("{}-listdir.json", key(&dir.join(data)));
    wait_key(store, &k).await;
    let body = store.get_bytes(&k).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "one top-level key: {v}");
    obj[dir.to_str().unwrap()]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Asserts that every named file is in the bucket with the content it has on disk.
async fn assert_shipped(store: &Store, dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, body) in files {
        let got = store
            .get_bytes(&key(&dir.join(name)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got[..] == body[..], "{name}: object differs from the file");
    }
}

async fn all_keys(store: &Store) -> Vec<String> {
    store
        .list("testhost:")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn flush_ships_only_after_commit_every_family(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut tables: Vec<Table> = sim::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| Table::new(&data, "ks", &format!("t{i}"), *v, i as u64))
        .collect();
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    for t in &mut tables {
        let pending = t.begin("flush", vec![]);
        // A later flush in the same directory commits first: its index shows what was ready.
        let barrier = t.flush();
        let listed = index(&store, &t.dir, &barrier.data()).await;
        assert_eq!(
            listed,
            barrier
                .names()
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
            "{:?}",
            t.ver
        );
        for n in pending.sstable.names() {
            assert!(
                store.head(&key(&t.dir.join(&n))).await.unwrap().is_none(),
                "{:?}: {n} shipped before commit",
                t.ver
            );
        }
        let s = t.commit(pending, true);
        let listed = index(&store, &t.dir, &s.data()).await;
        let live = t.live_files();
        assert_eq!(
            listed,
            live.keys().cloned().collect::<Vec<_>>(),
            "{:?}",
            t.ver
        );
        assert_shipped(&store, &t.dir, &live).await;
    }
    agent.stop();
}

async fn aborts_temporaries_and_logs_never_ship(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t3 = Table::new(&data, "ks", "a", Ver::V40, 1);
    let mut t2 = Table::new(&data, "ks", "b", Ver::V21, 2);
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    let mut aborted = vec![];
    for t in [&mut t3, &mut t2] {
        let p = t.begin("flush", vec![]);
        aborted.push(p.sstable.prefix.clone());
        t.abort(p);
        let s = t.flush();
        index(&store, &t.dir, &s.data()).await;
    }
    let keys = all_keys(&store).await;
    for k in &keys {
        let name = k.rsplit('/').next().unwrap();
        assert!(
            !name.contains("tmp") && !name.contains("_txn_"),
            "temporary or log shipped: {k}"
        );
        for a in &aborted {
            assert!(
                !k.contains(&format!("/{a}")),
                "aborted SSTable shipped: {k}"
            );
        }
    }
    assert_eq!(
        keys.len(),
        t3.live_files().len() + t2.live_files().len() + 2,
        "{keys:#?}"
    );
    agent.stop();
}

async fn compaction_index_names_the_live_set(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "c", Ver::V311, 3);
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    let s1 = t.flush();
    let s2 = t.flush();
    let _s3 = t.flush();
    let c = t.compact(vec![s1, s2]);
    let listed = index(&store, &t.dir, &c.data()).await;
    let live = t.live_files();
    assert_eq!(listed, live.keys().cloned().collect::<Vec<_>>());
    assert_shipped(&store, &t.dir, &live).await;
    agent.stop();
}

async fn mutable_components_are_shipped_again(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "m", Ver::V40, 4);
    let mut t5 = Table::new(&data, "ks", "sai", Ver::V50Big, 5);
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    let s = t.flush();
    index(&store, &t.dir, &s.data()).await;
    let stats = t.dir.join(format!("{}Statistics.db", s.prefix));
    let before = std::fs::read(&stats).unwrap();
    t.rewrite_statistics(&s);
    let after = std::fs::read(&stats).unwrap();
    assert_eq!(before.len(), after.len());
    assert_ne!(before, after);
    eventually(
        Duration::from_secs(30),
        "Statistics.db shipped again",
        || async {
            store
                .get_bytes(&key(&stats))
                .await
                .is_ok_and(|b| b[..] == after[..])
        },
    )
    .await;
    t.recreate_summary(&s);
    let summary = t.dir.join(format!("{}Summary.db", s.prefix));
    let new_summary = std::fs::read(&summary).unwrap();
    eventually(
        Duration::from_secs(30),
        "Summary.db shipped again",
        || async {
            store
                .get_bytes(&key(&summary))
                .await
                .is_ok_and(|b| b[..] == new_summary[..])
        },
    )
    .await;

    let mut s5 = t5.flush();
    index(&store, &t5.dir, &s5.data()).await;
    t5.add_sai(&mut s5, "v_idx");
    let toc = t5.dir.join(format!("{}TOC.txt", s5.prefix));
    let toc_now = std::fs::read(&toc).unwrap();
    eventually(
        Duration::from_secs(30),
        "appended TOC.txt shipped again",
        || async {
            store
                .get_bytes(&key(&toc))
                .await
                .is_ok_and(|b| b[..] == toc_now[..])
        },
    )
    .await;
    let live = t5.live_files();
    eventually(
        Duration::from_secs(30),
        "index names the SAI components",
        || async {
            let k = format!("{}-listdir.json", key(&t5.dir.join(s5.data())));
            store.get_bytes(&k).await.is_ok_and(|b| {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                v[t5.dir.to_str().unwrap()].as_array().unwrap().len() == live.len()
            })
        },
    )
    .await;
    assert_shipped(&store, &t5.dir, &live).await;
    agent.stop();
}

async fn backups_drain_with_delete_on_backup(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "inc", Ver::V41, 6);
    t.incremental_backups = true;
    let agent = start(&b, &[&data], &["--delete-on-backup"]);
    let store = b.store().await;
    let mut all = BTreeMap::new();
    let backups = t.dir.join("backups");
    let mut last = None;
    for _ in 0..3 {
        let s = t.flush();
        for n in s.names() {
            all.insert(n.clone(), std::fs::read(backups.join(&n)).unwrap());
        }
        last = Some(s);
    }
    eventually(Duration::from_secs(30), "backups/ drained", || async {
        std::fs::read_dir(&backups).unwrap().count() == 0
    })
    .await;
    assert_shipped(&store, &backups, &all).await;
    let listed = index(&store, &backups, &last.unwrap().data()).await;
    assert_eq!(
        listed,
        all.keys().cloned().collect::<Vec<_>>(),
        "the backups index is cumulative; log: {}",
        agent.log()
    );
    // The live table directory itself is never deleted from.
    assert_eq!(t.live_files().len(), all.len());
    agent.stop();
}

async fn snapshots_ship_with_manifest_and_schema(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "snap", Ver::V50Bti, 7);
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    t.flush();
    let s = t.flush();
    index(&store, &t.dir, &s.data()).await;
    let eph = t.snapshot("ephemeral-1", true);
    let snap = t.snapshot("s1", false);
    let listed = index(&store, &snap, "manifest.json").await;
    let mut expected: Vec<String> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert!(expected.contains(&"schema.cql".to_string()));
    assert_eq!(listed, expected);
    let files: BTreeMap<String, Vec<u8>> = expected
        .iter()
        .map(|n| (n.clone(), std::fs::read(snap.join(n)).unwrap()))
        .collect();
    assert_shipped(&store, &snap, &files).await;
    let keys = all_keys(&store).await;
    assert!(
        !keys.iter().any(|k| k.starts_with(&key(&eph))),
        "ephemeral snapshot shipped"
    );
    agent.stop();
}

/// Regression (fact sheet, corrected): up to 4.1 an ephemeral (repair) snapshot is marked by
/// `ephemeral.snapshot`, written after manifest.json and schema.cql. Shipping on the manifest
/// alone ships a repair's snapshot.
async fn ephemeral_marker_after_the_manifest_is_respected(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "eph", Ver::V41, 8);
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    let s = t.flush();
    index(&store, &t.dir, &s.data()).await;
    let eph = t.snapshot("repair-1", false);
    // The agent has looked at the snapshot (and shipped some of it, or decided to wait) before
    // Cassandra writes the marker.
    let prefix = key(&eph);
    eventually(
        Duration::from_secs(30),
        "agent looked at the snapshot",
        || async {
            !agent
                .messages("snapshot not settled (schema.cql, ephemeral marker); deciding later")
                .is_empty()
                || all_keys(&store)
                    .await
                    .iter()
                    .any(|k| k.starts_with(&prefix))
        },
    )
    .await;
    t.mark_ephemeral(&eph);
    let snap = t.snapshot("s1", false);
    index(&store, &snap, "manifest.json").await;
    assert!(
        !all_keys(&store)
            .await
            .iter()
            .any(|k| k.starts_with(&prefix)),
        "ephemeral snapshot shipped"
    );
    agent.stop();
}

async fn random_interleavings_rebuild_the_live_set(b: Backend) {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("TABLESNAP_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261126);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let vers = [Ver::V311, Ver::V41, Ver::V22];
    let mut t = Table::new(
        &data,
        "ks",
        "prop",
        vers[rng.random_range(0..vers.len())],
        seed,
    );
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    let mut pending = vec![];
    for _ in 0..40 {
        match rng.random_range(0..10) {
            0..=3 => {
                t.flush();
            }
            4 if t.live.len() >= 2 => {
                let k = rng.random_range(2..=t.live.len());
                let inputs: Vec<_> = t.live.iter().take(k).cloned().collect();
                t.compact(inputs);
            }
            5 if !t.live.is_empty() => {
                let s = t.live[rng.random_range(0..t.live.len())].clone();
                t.rewrite_statistics(&s);
            }
            6 if !t.live.is_empty() => {
                let s = t.live[rng.random_range(0..t.live.len())].clone();
                t.recreate_summary(&s);
            }
            7 => pending.push(t.begin("flush", vec![])),
            8 if !pending.is_empty() => {
                let p = pending.remove(0);
                t.abort(p);
            }
            9 if !pending.is_empty() => {
                let p = pending.remove(0);
                t.commit(p, true);
            }
            _ => {}
        }
    }
    for p in pending.drain(..) {
        t.abort(p);
    }
    // A last flush: once its index is in, the agent has seen everything before it.
    let last = t.flush();
    let listed = index(&store, &t.dir, &last.data()).await;
    let live = t.live_files();
    assert_eq!(
        listed,
        live.keys().cloned().collect::<Vec<_>>(),
        "seed {seed}: index != live set"
    );
    // Rebuild the table from the bucket as of that index: byte-identical to the disk.
    assert_shipped(&store, &t.dir, &live).await;
    // Every index ever written names only objects that exist.
    for line in agent.messages("index written") {
        let k = line["key"].as_str().unwrap();
        let body = store.get_bytes(k).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for n in v[t.dir.to_str().unwrap()].as_array().unwrap() {
            let obj = key(&t.dir.join(n.as_str().unwrap()));
            assert!(
                store.head(&obj).await.unwrap().is_some(),
                "seed {seed}: {k} names missing {obj}"
            );
        }
    }
    assert!(
        !all_keys(&store).await.iter().any(|k| {
            let name = k.rsplit('/').next().unwrap();
            name.contains("tmp") || name.contains("_txn_")
        }),
        "seed {seed}"
    );
    agent.stop();
}

async fn several_data_directories_and_staging_cleanup(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let (d1, d2) = (d.path().join("data1"), d.path().join("data2"));
    let mut t1 = Table::new(&d1, "ks", "j", Ver::V40, 8);
    std::fs::create_dir_all(&d2).unwrap();
    let left = d1.join(".tablesnap-staging/123-deadbeef");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("0"), b"left over").unwrap();
    let agent = start(&b, &[&d1, &d2], &[]);
    assert!(!left.exists(), "left-over staging cleaned at start");
    let store = b.store().await;
    let s1 = t1.flush();
    // A keyspace directory created after start on the second disk.
    let mut t2 = Table::new(&d2, "ks", "j", Ver::V40, 9);
    let s2 = t2.flush();
    index(&store, &t1.dir, &s1.data()).await;
    index(&store, &t2.dir, &s2.data()).await;
    assert_shipped(&store, &t1.dir, &t1.live_files()).await;
    assert_shipped(&store, &t2.dir, &t2.live_files()).await;
    assert_eq!(
        std::fs::read_dir(d1.join(".tablesnap-staging"))
            .unwrap()
            .count(),
        0,
        "staging emptied after upload"
    );
    assert!(
        !all_keys(&store)
            .await
            .iter()
            .any(|k| k.contains(".tablesnap-staging"))
    );
    agent.stop();
}

/// Regression (fact sheet, corrected): with several data directories a snapshot's SSTable links
/// land on every disk, but manifest.json and schema.cql on one only. The part without a manifest
/// is shipped too.
async fn jbod_snapshot_spans_every_data_directory(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let (d1, d2) = (d.path().join("data1"), d.path().join("data2"));
    // The same table on both disks (same directory name).
    let mut t1 = Table::new(&d1, "ks", "j", Ver::V50Big, 12);
    let mut t2 = Table::new(&d2, "ks", "j", Ver::V50Big, 12);
    let agent = start(&b, &[&d1, &d2], &[]);
    let store = b.store().await;
    let s1 = t1.flush();
    let s2 = t2.flush();
    index(&store, &t1.dir, &s1.data()).await;
    index(&store, &t2.dir, &s2.data()).await;
    // Links on disk 2 first, then disk 1 with the manifest.
    let part = t2.dir.join("snapshots/s1");
    std::fs::create_dir_all(&part).unwrap();
    for n in s2.names() {
        std::fs::hard_link(t2.dir.join(&n), part.join(&n)).unwrap();
    }
    let home = t1.snapshot("s1", false);
    index(&store, &home, "manifest.json").await;
    let files: BTreeMap<String, Vec<u8>> = s2
        .names()
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(part.join(&n)).unwrap()))
        .collect();
    eventually(
        Duration::from_secs(30),
        "the snapshot's part on the second disk shipped",
        || async {
            for (n, body) in &files {
                match store.get_bytes(&key(&part.join(n))).await {
                    Ok(got) if got[..] == body[..] => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
    agent.stop();
}

/// Regression: `-B` at start compared listed objects by reading and hashing every file (MD5
/// against the ETag): a restart read the whole data set. Immutable components of the same size
/// are the same (the Python rule); only mutable ones, which are small, are read.
async fn restart_with_b_compares_by_list_without_reading_files(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "big", Ver::V40, 13);
    let agent = start(&b, &[&data], &[]);
    let store = b.store().await;
    let mut bytes = 0;
    let mut last = None;
    while bytes < 3 << 20 {
        let s = t.flush();
        bytes += std::fs::metadata(t.dir.join(s.data())).unwrap().len();
        last = Some(s);
    }
    index(&store, &t.dir, &last.unwrap().data()).await;
    agent.stop();

    let agent = start(&b, &[&data], &["-B", "--rescan-interval", "0"]);
    agent.first_scan(Duration::from_secs(30));
    // A new SSTable in the same directory: its index is written by a job after the start-up one.
    let s = t.flush();
    let listed = index(&store, &t.dir, &s.data()).await;
    assert_eq!(listed, t.live_files().keys().cloned().collect::<Vec<_>>());
    let io = std::fs::read_to_string(format!("/proc/{}/io", agent.child.id())).unwrap();
    let rchar: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        rchar < bytes / 2,
        "the restart read {rchar} bytes for {bytes} bytes of Data.db already in the bucket"
    );
    agent.stop();
}

/// Filter.db rewritten in place at load (same inode) and 2.1's Summary.db written in place under
/// its final name: a job that runs mid-write ships a truncated file; the object must end up equal
/// to the file once its write ends (IN_CLOSE_WRITE), and the index must name it.
async fn in_place_rewrites_are_shipped_when_their_write_ends(b: Backend) {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let data_dir = d.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let agent = start(&b, &[&data_dir], &[]);
    let store = b.store().await;
    for (ver, comp, seed) in [(Ver::V40, "Filter.db", 14), (Ver::V21, "Summary.db", 15)] {
        let mut t = Table::new(&data_dir, "ks", &format!("inplace{seed}"), ver, seed);
        let s = t.flush();
        index(&store, &t.dir, &s.data()).await;
        let path = t.dir.join(format!("{}{comp}", s.prefix));
        let full = data(60_000, seed);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&full[..20_000]).unwrap();
        f.sync_all().unwrap();
        // Another SSTable's commit runs a job over the directory while the write is half done.
        let s2 = t.flush();
        index(&store, &t.dir, &s2.data()).await;
        f.write_all(&full[20_000..]).unwrap();
        drop(f);
        eventually(
            Duration::from_secs(30),
            &format!("{ver:?} {comp} shipped again when its write ended"),
            || async {
                store
                    .get_bytes(&key(&path))
                    .await
                    .is_ok_and(|got| got[..] == full[..])
            },
        )
        .await;
    }
    agent.stop();
}

async fn include_rule_selects_whole_sstables(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut keep = Table::new(&data, "ks1", "t", Ver::V40, 10);
    let mut skip = Table::new(&data, "ks2", "t", Ver::V40, 11);
    let agent = start(&b, &[&data], &["-i", "/ks1/"]);
    let store = b.store().await;
    skip.flush();
    let s = keep.flush();
    index(&store, &keep.dir, &s.data()).await;
    assert_shipped(&store, &keep.dir, &keep.live_files()).await;
    let keys = all_keys(&store).await;
    assert!(!keys.iter().any(|k| k.contains("/ks2/")), "{keys:#?}");
    agent.stop();
}

/// Ordering, checked while it happens: a watcher lists the bucket over and over during flushes
/// and compactions (one compaction held pending across a flush and its index), and the moment an
/// index is first seen, every file it names must already be in the bucket. The index written
/// while the compaction is pending names its inputs (still live), never its output.
async fn indexes_never_precede_their_files_while_they_happen(b: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "order", Ver::V50Big, 11);
    let agent = start(&b, &[&data], &[]);
    let store = Arc::new(b.store().await);
    let dir = t.dir.to_str().unwrap().to_string();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, done, dir) = (store.clone(), done.clone(), dir.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut violations = Vec::new();
            let mut rounds = 0u64;
            // Until told to stop, and one listing more, so that every index is checked.
            loop {
                let last_round = done.load(Ordering::SeqCst);
                rounds += 1;
                for o in store.list("testhost:").await.unwrap_or_default() {
                    if !o.key.ends_with("-listdir.json") || !seen.insert(o.key.clone()) {
                        continue;
                    }
                    let body = store.get_bytes(&o.key).await.unwrap();
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    for n in v[dir.as_str()].as_array().into_iter().flatten() {
                        let file = format!("testhost:{dir}/{}", n.as_str().unwrap());
                        if store.head(&file).await.unwrap().is_none() {
                            violations.push(format!(
                                "{} named {file} before it was in the bucket",
                                o.key
                            ));
                        }
                    }
                }
                if last_round {
                    break;
                }
            }
            (seen.len(), violations, rounds)
        })
    };
    let mut flushed = vec![];
    for _ in 0..6 {
        flushed.push(t.flush());
    }
    // A compaction written but not committed, and a flush (and its index) meanwhile.
    let pending = t.begin("compaction", flushed[..3].to_vec());
    let during = t.flush();
    let listed = index(&store, &t.dir, &during.data()).await;
    for input in &flushed[..3] {
        assert!(
            listed.contains(&input.data()),
            "a pending compaction's input is live: {listed:?}"
        );
    }
    assert!(
        !listed.contains(&pending.sstable.data()),
        "the index named an uncommitted compaction's output: {listed:?}"
    );
    let compacted = t.commit(pending, false);
    for _ in 0..4 {
        t.flush();
    }
    let after = index(&store, &t.dir, &compacted.data()).await;
    assert!(!after.contains(&flushed[0].data()), "{after:?}");
    let last = t.flush();
    let listed = index(&store, &t.dir, &last.data()).await;
    assert_eq!(listed, t.live_files().keys().cloned().collect::<Vec<_>>());
    done.store(true, Ordering::SeqCst);
    let (indexes, violations, rounds) = watcher.await.unwrap();
    eprintln!("{indexes} indexes seen in {rounds} listings");
    // One index per flush and per compaction (13), each checked when first seen.
    let written = all_keys(&store)
        .await
        .iter()
        .filter(|k| k.ends_with("-listdir.json"))
        .count();
    assert_eq!(indexes, written, "every index was checked");
    assert!(written >= 13, "{written} indexes");
    assert!(violations.is_empty(), "{violations:#?}");
    agent.stop();
}
