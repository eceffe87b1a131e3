//! The agent's behaviour, one suite run against both store backends: a real Garage S3 server and
//! the local directory store.

#[macro_use]
mod support;

use std::time::Duration;

use support::*;
use tablesnap::meta::StatMeta;

const T: Duration = Duration::from_secs(30);

both_backends!(
    rename_gives_key_metadata_and_index,
    close_write_ships_in_place_writes,
    recursive_and_auto_add_watch_new_directories,
    include_and_exclude,
    multipart_streams_parts,
    delete_on_backup_removes_after_upload,
    file_deleted_while_queued_is_dropped_quietly,
    sigterm_lets_inflight_upload_finish,
    backup_at_start_lists_instead_of_heads,
    health_and_metrics_endpoint,
    md5_on_start_compares_content,
    index_queues_the_files_it_finds_missing,
    cassandra_b_scan_lists_once_and_ships_what_no_event_announced,
    b_at_start_writes_a_missing_index_and_a_rescan_counts_its_own_list,
);

/// Issue 13 (mutation testing): `-B` at start writes the index that a data file in the bucket
/// lacks (the agent stopped between the file's upload and its index), and a periodic scan reports
/// its own LIST, not the agent's since the start (two survivors of `scan::reconcile`).
async fn b_at_start_writes_a_missing_index_and_a_rescan_counts_its_own_list(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-5");
    std::fs::create_dir_all(&dir).unwrap();
    let store = b.store().await;
    let first = Agent::start(&b, &[], &[&dir]);
    let f = write_rename(&dir, "nb-1-big-Data.db", &data(900, 3));
    let index = format!("testhost:{}-listdir.json", f.display());
    wait_key(&store, &index).await;
    first.stop();
    store
        .delete_many(std::slice::from_ref(&index))
        .await
        .unwrap();
    let second = Agent::start(&b, &["-B", "--rescan-interval", "1"], &[&dir]);
    wait_key(&store, &index).await;
    second.wait_for(T, |l| {
        l.iter().filter(|v| v["message"] == "scan finished").count() >= 2
    });
    let again = second.messages("scan finished").remove(1);
    assert_eq!(again["list_requests"], 1, "{again}");
    second.stop();
}

/// Issue 13 (mutation testing): in cassandra mode, `-B` at start learns the bucket from one LIST
/// of the root and queues every directory below it; the SSTable flushed while no agent ran ships
/// with its index. What the scan says (present, queued, LISTs, also of a periodic scan) is checked:
/// `scan::reconcile_dirs` had no test that fails without it.
async fn cassandra_b_scan_lists_once_and_ships_what_no_event_announced(b: Backend) {
    use support::sim::{Table, Ver};
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut t = Table::new(&data, "ks", "tb", Ver::V40, 21);
    let cassandra = ["--mode", "cassandra", "-r", "-a"];
    let store = b.store().await;
    let index = |dir: &std::path::Path, s: &support::sim::SSTable| {
        format!("testhost:{}-listdir.json", dir.join(s.data()).display())
    };
    let first = Agent::start(&b, &cassandra, &[&data]);
    let s1 = t.flush();
    wait_key(&store, &index(&t.dir, &s1)).await;
    first.stop();
    let before: Vec<String> = store
        .list("testhost:")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.ends_with("-listdir.json"))
        .collect();
    let s2 = t.flush(); // no agent runs: no event announces it
    let args = [&cassandra[..], &["-B", "--rescan-interval", "1"]].concat();
    let second = Agent::start(&b, &args, &[&data]);
    let scan = second.first_scan(T);
    // The directories below the root, the root included, staging not: each is queued.
    let mut dirs = 0;
    let mut todo = vec![data.clone()];
    while let Some(dir) = todo.pop() {
        dirs += 1;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() && e.file_name() != tablesnap::agent::STAGING_NAME {
                todo.push(e.path());
            }
        }
    }
    assert_eq!(scan["present"], before.len(), "{scan}");
    assert_eq!(scan["queued"], dirs, "{scan}");
    assert_eq!(scan["list_requests"], 1, "{scan}");
    wait_key(&store, &index(&t.dir, &s2)).await;
    for (name, body) in t.live_files() {
        let got = store
            .get_bytes(&format!("testhost:{}", t.dir.join(&name).display()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got[..] == body[..], "{name}: object differs from the file");
    }
    // A periodic scan counts its own LIST, not the agent's since the start.
    second.wait_for(T, |l| {
        l.iter().filter(|v| v["message"] == "scan finished").count() >= 2
    });
    let again = second.messages("scan finished").remove(1);
    assert_eq!(again["list_requests"], 1, "{again}");
    second.stop();
}

/// Issue 13 (mutation testing): a file of the directory that no event announced (on disk before
/// the agent started, without -B) is queued by the index that needs it, and the index follows.
async fn index_queues_the_files_it_finds_missing(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-0123");
    std::fs::create_dir_all(&dir).unwrap();
    let early = data(3000, 7);
    std::fs::write(dir.join("nb-1-big-Index.db"), &early).unwrap();
    let _agent = Agent::start(&b, &[], &[&dir]);
    let dat = write_rename(&dir, "nb-1-big-Data.db", &data(5000, 8));
    let store = b.store().await;
    wait_key(&store, &format!("testhost:{}-listdir.json", dat.display())).await;
    let early_key = format!("testhost:{}", dir.join("nb-1-big-Index.db").display());
    assert_eq!(&store.get_bytes(&early_key).await.unwrap()[..], &early[..]);
}

async fn rename_gives_key_metadata_and_index(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-0123");
    std::fs::create_dir_all(&dir).unwrap();
    let agent = Agent::start(&b, &[], &[&dir]);
    let index_data = data(1000, 1);
    let data_data = data(5000, 2);
    let idx = write_rename(&dir, "nb-1-big-Index.db", &index_data);
    let dat = write_rename(&dir, "nb-1-big-Data.db", &data_data);
    let store = b.store().await;
    let key = format!("testhost:{}", dat.display());
    wait_key(&store, &format!("{key}-listdir.json")).await;

    // Data object: content, md5sum and stat metadata.
    assert_eq!(&store.get_bytes(&key).await.unwrap()[..], &data_data[..]);
    let h = store.head(&key).await.unwrap().unwrap();
    assert_eq!(h.meta.md5sum(), Some(md5_hex(&data_data).as_str()));
    let stat =
        StatMeta::parse(h.meta.user.get("stat").expect("stat metadata")).expect("stat is JSON");
    let m = std::fs::metadata(&dat).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (stat.uid, stat.gid, stat.mode),
        (m.uid(), m.gid(), m.mode())
    );
    assert_eq!(stat.user.as_deref(), Some("root"));

    // The index lists the directory and was written after both files were in the bucket.
    let body = store
        .get_bytes(&format!("{key}-listdir.json"))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "one top-level key: {v}");
    assert_eq!(
        v[dir.to_str().unwrap()],
        serde_json::json!(["nb-1-big-Data.db", "nb-1-big-Index.db"])
    );
    let ih = store
        .head(&format!("{key}-listdir.json"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ih.meta.content_type.as_deref(), Some("application/json"));
    assert!(
        store
            .head(&format!("testhost:{}", idx.display()))
            .await
            .unwrap()
            .is_some()
    );
    // No index for non-Data files, and the temporary names never shipped.
    assert!(
        store
            .head(&format!("testhost:{}-listdir.json", idx.display()))
            .await
            .unwrap()
            .is_none()
    );
    let keys: Vec<String> = store
        .list("testhost:")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    agent.stop();
}

async fn close_write_ships_in_place_writes(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &["--listen-events", "IN_CLOSE_WRITE"], &[d.path()]);
    let p = d.path().join("me-7-big-Statistics.db");
    std::fs::write(&p, data(777, 3)).unwrap();
    let store = b.store().await;
    wait_object(&store, &format!("testhost:{}", p.display()), 777).await;
    // A rename is not listened to now.
    let r = write_rename(d.path(), "renamed.db", b"x");
    let p2 = d.path().join("second.db");
    std::fs::write(&p2, b"yy").unwrap();
    wait_object(&store, &format!("testhost:{}", p2.display()), 2).await;
    assert!(
        store
            .head(&format!("testhost:{}", r.display()))
            .await
            .unwrap()
            .is_none()
    );
    agent.stop();
}

async fn recursive_and_auto_add_watch_new_directories(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("data");
    std::fs::create_dir_all(root.join("ks1/old")).unwrap();
    let agent = Agent::start(&b, &["-r", "-a"], &[&root]);
    let store = b.store().await;
    // An existing subdirectory is watched with -r.
    let f1 = write_rename(&root.join("ks1/old"), "a.db", b"1");
    wait_object(&store, &format!("testhost:{}", f1.display()), 1).await;
    // A directory tree that already holds files when it appears (files landed before the watch).
    let staging = d.path().join("elsewhere/ks2/t-9");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("nb-1-big-Data.db"), data(300, 4)).unwrap();
    std::fs::rename(d.path().join("elsewhere/ks2"), root.join("ks2")).unwrap();
    let moved = root.join("ks2/t-9/nb-1-big-Data.db");
    wait_object(&store, &format!("testhost:{}", moved.display()), 300).await;
    wait_key(
        &store,
        &format!("testhost:{}-listdir.json", moved.display()),
    )
    .await;
    // A directory created empty and filled afterwards: its watch catches the rename.
    std::fs::create_dir_all(root.join("ks3/t")).unwrap();
    let f3 = root.join("ks3/t/x.db");
    support::eventually(T, "file in new dir", || {
        let f3 = f3.clone();
        let s = &store;
        let r = root.clone();
        async move {
            if !f3.exists() {
                write_rename(&r.join("ks3/t"), "x.db", b"333");
            }
            matches!(s.head(&format!("testhost:{}", f3.display())).await, Ok(Some(h)) if h.size == 3)
        }
    })
    .await;
    agent.stop();

    // Without -a, a new directory is not watched.
    let b2 = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &["-r"], &[b2.path()]);
    std::fs::create_dir(b2.path().join("late")).unwrap();
    let late = write_rename(&b2.path().join("late"), "late.db", b"z");
    let marker = write_rename(b2.path(), "marker.db", b"m");
    wait_object(&store, &format!("testhost:{}", marker.display()), 1).await;
    assert!(
        store
            .head(&format!("testhost:{}", late.display()))
            .await
            .unwrap()
            .is_none()
    );
    agent.stop();
}

async fn include_and_exclude(b: Backend) {
    let store = b.store().await;
    let d = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &["-e", "Index", "-e", r"\.log$"], &[d.path()]);
    let skipped = write_rename(d.path(), "nb-1-big-Index.db", b"i");
    let skipped2 = write_rename(d.path(), "nb_txn_flush_1.log", b"l");
    let tmpname = write_rename(d.path(), "x-tmp-Data.db", b"t"); // -e replaces the -tmp default
    let kept = write_rename(d.path(), "nb-1-big-Filter.db", b"f");
    wait_object(&store, &format!("testhost:{}", kept.display()), 1).await;
    wait_object(&store, &format!("testhost:{}", tmpname.display()), 1).await;
    agent.stop();
    for s in [&skipped, &skipped2] {
        assert!(
            store
                .head(&format!("testhost:{}", s.display()))
                .await
                .unwrap()
                .is_none(),
            "{}",
            s.display()
        );
    }

    let d2 = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &["-i", "Data", "-i", "TOC"], &[d2.path()]);
    let no = write_rename(d2.path(), "nb-2-big-Filter.db", b"f");
    let yes = write_rename(d2.path(), "nb-2-big-TOC.txt", b"toc");
    let yes2 = write_rename(d2.path(), "nb-2-big-Data.db", b"data");
    wait_object(&store, &format!("testhost:{}", yes.display()), 3).await;
    wait_key(&store, &format!("testhost:{}-listdir.json", yes2.display())).await;
    let body = store
        .get_bytes(&format!("testhost:{}-listdir.json", yes2.display()))
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The index names only what the rule ships.
    assert_eq!(
        v[d2.path().to_str().unwrap()],
        serde_json::json!(["nb-2-big-Data.db", "nb-2-big-TOC.txt"])
    );
    agent.stop();
    assert!(
        store
            .head(&format!("testhost:{}", no.display()))
            .await
            .unwrap()
            .is_none()
    );

    // The default skips -tmp.
    let d3 = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &[], &[d3.path()]);
    let t = write_rename(d3.path(), "ks-t-tmp-ka-1-Data.db", b"t");
    let ok = write_rename(d3.path(), "ks-t-ka-1-Filter.db", b"o");
    wait_object(&store, &format!("testhost:{}", ok.display()), 1).await;
    agent.stop();
    assert!(
        store
            .head(&format!("testhost:{}", t.display()))
            .await
            .unwrap()
            .is_none()
    );
}

async fn multipart_streams_parts(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &b,
        &["--max-upload-size", "5", "--multipart-chunk-size", "5"],
        &[d.path()],
    );
    let content = data(64 << 20, 5);
    let p = write_rename(d.path(), "big-Data.db", &content);
    let store = b.store().await;
    let key = format!("testhost:{}", p.display());
    wait_key(&store, &format!("{key}-listdir.json")).await;
    let got = store.get_bytes(&key).await.unwrap();
    assert!(
        got[..] == content[..],
        "downloaded bytes differ from the source"
    );
    let h = store.head(&key).await.unwrap().unwrap();
    assert_eq!(h.meta.md5sum(), Some(md5_hex(&content).as_str()));
    let uploaded = agent.messages("uploaded");
    let line = uploaded
        .iter()
        .find(|v| v["key"] == key.as_str())
        .expect("upload logged");
    if b.is_s3() {
        // 64 MiB in 5 MiB parts: 13 parts, and S3's multipart ETag says so.
        assert_eq!(line["written"], "Multipart(13)", "{line}");
        assert!(
            h.etag.as_deref().unwrap_or("").ends_with("-13"),
            "etag {:?}",
            h.etag
        );
    } else {
        assert_eq!(line["written"], "Single", "{line}");
    }
    agent.stop();
}

async fn delete_on_backup_removes_after_upload(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &["--delete-on-backup"], &[d.path()]);
    let store = b.store().await;
    let other = write_rename(d.path(), "nb-3-big-Index.db", b"idx");
    let dat = write_rename(d.path(), "nb-3-big-Data.db", b"data");
    let key = format!("testhost:{}", dat.display());
    wait_key(&store, &format!("{key}-listdir.json")).await;
    support::eventually(T, "local files deleted", || async {
        !dat.exists() && !other.exists()
    })
    .await;
    assert_eq!(&store.get_bytes(&key).await.unwrap()[..], b"data");
    assert_eq!(
        &store
            .get_bytes(&format!("testhost:{}", other.display()))
            .await
            .unwrap()[..],
        b"idx"
    );
    agent.stop();
}

async fn file_deleted_while_queued_is_dropped_quietly(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    // One upload at a time: the big file holds the only slot while the small one waits.
    let agent = Agent::start(
        &b,
        &[
            "-t",
            "1",
            "--max-upload-size",
            "5",
            "--multipart-chunk-size",
            "5",
        ],
        &[d.path()],
    );
    let big = write_rename(d.path(), "big.db", &data(48 << 20, 6));
    let gone = write_rename(d.path(), "gone.db", b"soon deleted");
    std::fs::remove_file(&gone).unwrap();
    let after = write_rename(d.path(), "after.db", b"after");
    let store = b.store().await;
    wait_object(&store, &format!("testhost:{}", after.display()), 5).await;
    wait_object(&store, &format!("testhost:{}", big.display()), 48 << 20).await;
    let log = agent.stop();
    assert!(
        store
            .head(&format!("testhost:{}", gone.display()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(log.contains("vanished"), "the drop is logged: {log}");
    assert!(
        !log.contains("\"level\":\"ERROR\""),
        "no error for a vanished file: {log}"
    );
}

async fn sigterm_lets_inflight_upload_finish(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        &b,
        &["--max-upload-size", "5", "--multipart-chunk-size", "5"],
        &[d.path()],
    );
    let content = data(96 << 20, 7);
    let p = write_rename(d.path(), "sigterm.db", &content);
    // Terminate as soon as the upload has started.
    let key = format!("testhost:{}", p.display());
    agent.wait_for(T, |l| {
        l.iter()
            .any(|v| v["message"] == "uploading" && v["key"] == key.as_str())
    });
    agent.term();
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}: {}", agent.log());
    let store = b.store().await;
    let got = store
        .get_bytes(&format!("testhost:{}", p.display()))
        .await
        .unwrap();
    assert!(got[..] == content[..], "object complete after SIGTERM");
    assert!(agent.log().contains("shutting down"), "{}", agent.log());
}

async fn backup_at_start_lists_instead_of_heads(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let store = b.store().await;
    // 1,500 files already in the bucket, 20 missing, 5 present with a different size.
    let present = 1500;
    let mut futs = Vec::new();
    for i in 0..present {
        let p = d.path().join(format!("f-{i:05}.bin"));
        std::fs::write(&p, b"x").unwrap();
        futs.push((
            format!("testhost:{}", p.display()),
            bytes::Bytes::from_static(b"x"),
        ));
    }
    let meta = tablesnap::meta::ObjectMeta::default();
    futures::stream::iter(futs)
        .for_each_concurrent(32, |(k, body)| {
            let (store, meta) = (&store, &meta);
            async move {
                store
                    .put(&k, tablesnap::store::Source::Memory(body), meta, None)
                    .await
                    .unwrap();
            }
        })
        .await;
    for i in 0..20 {
        std::fs::write(d.path().join(format!("m-{i:05}.bin")), b"missing").unwrap();
    }
    for i in 0..5 {
        std::fs::write(d.path().join(format!("f-{i:05}.bin")), b"changed").unwrap();
    }
    let agent = Agent::start(&b, &["-B"], &[d.path()]);
    let scan = agent.first_scan(T);
    assert_eq!(scan["files"], 1520, "{scan}");
    assert_eq!(scan["present"], 1495, "{scan}");
    assert_eq!(scan["queued"], 25, "{scan}");
    // 1,500 keys: two LIST pages on S3 (1,000 keys each); the local store lists in one go.
    assert_eq!(
        scan["list_requests"],
        if b.is_s3() { 2 } else { 1 },
        "{scan}"
    );
    for i in 0..20 {
        wait_object(
            &store,
            &format!(
                "testhost:{}",
                d.path().join(format!("m-{i:05}.bin")).display()
            ),
            7,
        )
        .await;
    }
    for i in 0..5 {
        wait_object(
            &store,
            &format!(
                "testhost:{}",
                d.path().join(format!("f-{i:05}.bin")).display()
            ),
            7,
        )
        .await;
    }
    let log = agent.stop();
    // Requests grow with LIST pages, not with files: no HEAD per file, one PUT per missing file.
    let done = log
        .lines()
        .find(|l| l.contains("all uploads finished"))
        .expect("summary line");
    let heads = if b.is_s3() { "head=1 " } else { "head=0 " };
    assert!(
        done.contains(heads),
        "no HEAD per file (S3: one HeadBucket at start): {done}"
    );
    assert!(done.contains("put=25 "), "one PUT per missing file: {done}");
}

use futures::StreamExt;

async fn health_and_metrics_endpoint(b: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = tempfile::tempdir().unwrap();
    let agent = Agent::start(&b, &["--http-listen", &addr], &[d.path()]);
    let (code, body) = support::fault::http_response(&addr, "/healthz").await;
    assert_eq!((code, body.trim()), (200, "ok"));
    let f = write_rename(d.path(), "m-Data.db", &data(1234, 11));
    let store = b.store().await;
    wait_key(&store, &format!("testhost:{}-listdir.json", f.display())).await;
    let (code, m) = support::fault::http_response(&addr, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "tablesnap_files_shipped_total 1",
        "tablesnap_bytes_shipped_total 1234",
        "tablesnap_indexes_written_total 1",
        "tablesnap_queue_depth 0",
        "tablesnap_oldest_unshipped_seconds 0",
    ] {
        assert!(m.lines().any(|l| l == line), "{line:?} missing from:\n{m}");
    }
    assert!(
        m.contains("tablesnap_storage_requests{kind=\"put\"} 2"),
        "{m}"
    );
    assert!(!m.contains("m-Data.db"), "no per-file labels");
    assert!(m.lines().any(|l| l == "tablesnap_storage_ready 1"), "{m}");
    // The report the operator reads: shipping, nothing waits, so the recovery point is now.
    let (code, body) = support::fault::http_response(&addr, "/status").await;
    assert_eq!(code, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&r["storageReady"], &r["healthy"], &r["queueDepth"]),
        (&true.into(), &true.into(), &0.into()),
        "{r}"
    );
    assert_eq!(r["filesShipped"], 1, "{r}");
    assert_eq!(r["recoveryPoint"], r["time"], "{r}");
    assert!(r["lastSuccess"].as_i64().unwrap() > 0, "{r}");
    agent.stop();
}

async fn md5_on_start_compares_content(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("same-size.db");
    std::fs::write(&p, b"local content").unwrap();
    let store = b.store().await;
    let key = format!("testhost:{}", p.display());
    let old = b"other content";
    let mut meta = tablesnap::meta::ObjectMeta::default();
    meta.user.insert("md5sum".into(), md5_hex(old));
    store
        .put(
            &key,
            tablesnap::store::Source::Memory(bytes::Bytes::from_static(old)),
            &meta,
            None,
        )
        .await
        .unwrap();

    // Same size is "already there" by default, as in the Python tool.
    let agent = Agent::start(&b, &["-B"], &[d.path()]);
    let scan = agent.first_scan(T);
    assert_eq!(
        (scan["present"].as_u64(), scan["queued"].as_u64()),
        (Some(1), Some(0)),
        "{scan}"
    );
    agent.stop();
    assert_eq!(&store.get_bytes(&key).await.unwrap()[..], old);

    // --md5-on-start sees that the content differs and ships the local file.
    let agent = Agent::start(&b, &["-B", "--md5-on-start"], &[d.path()]);
    let scan = agent.first_scan(T);
    assert_eq!(
        (scan["present"].as_u64(), scan["queued"].as_u64()),
        (Some(0), Some(1)),
        "{scan}"
    );
    eventually(T, "local content shipped", || async {
        store
            .get_bytes(&key)
            .await
            .is_ok_and(|b| &b[..] == b"local content")
    })
    .await;
    const DIFFERS: &str = "checksum differs from the bucket's copy; uploading the local file";
    assert_eq!(agent.messages(DIFFERS).len(), 1);
    agent.stop();

    // Issue 13 (mutation testing): the same content is left alone, with no warning, and on S3
    // known from the listing's plain-MD5 ETag without a HEAD of the object (its one HEAD is the
    // bucket's, at start); the local store lists no ETags: one HEAD of the object.
    use support::fault::{free_port, http_get, metric};
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start(
        &b,
        &["-B", "--md5-on-start", "--http-listen", &addr],
        &[d.path()],
    );
    let scan = agent.first_scan(T);
    assert_eq!(
        (scan["present"].as_u64(), scan["queued"].as_u64()),
        (Some(1), Some(0)),
        "{scan}"
    );
    assert_eq!(agent.messages(DIFFERS), Vec::<serde_json::Value>::new());
    let m = http_get(&addr, "/metrics").await;
    let heads = metric(&m, "tablesnap_storage_requests{kind=\"head\"}");
    assert_eq!(heads, Some(1.0), "{m}");
    agent.stop();
}
