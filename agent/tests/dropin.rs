//! Issue 15: the differences found by running the Python tablesnap, tableslurp and tablechop beside
//! ours, each pinned: indexes with `--delete-on-backup`, IN_CREATE of a file still being written,
//! a wrong region, and the Content-Type of data objects. (The invocations the Python tools accept
//! are pinned in `cli.rs`.)

#[macro_use]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;
use tablesnap::store::Store;

const T: Duration = Duration::from_secs(30);

both_backends!(
    delete_on_backup_index_lists_what_the_directory_held,
    delete_on_backup_index_after_a_restart,
    delete_on_backup_index_after_a_restart_names_no_earlier_index,
    a_directory_is_listed_once_a_run_and_nothing_shipped_is_sent_again,
    in_create_reships_a_file_whose_write_ends_later,
    toc_is_text_plain_like_the_python_tool,
);

/// The names of the index written for `data`.
async fn index_names(store: &Store, data: &Path) -> Vec<String> {
    let key = format!("testhost:{}-listdir.json", data.display());
    wait_key(store, &key).await;
    let v: serde_json::Value =
        serde_json::from_slice(&store.get_bytes(&key).await.unwrap()).expect("index is JSON");
    let dir = data.parent().unwrap().to_str().unwrap();
    let mut names: Vec<String> = v[dir]
        .as_array()
        .unwrap_or_else(|| panic!("index has no key {dir}: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Writes `name` by rename and waits until the agent has shipped and deleted it.
async fn ship_and_delete(store: &Store, dir: &Path, name: &str, body: &[u8]) {
    let p = write_rename(dir, name, body);
    wait_object(
        store,
        &format!("testhost:{}", p.display()),
        body.len() as u64,
    )
    .await;
    eventually(T, &format!("{name} deleted after backup"), || async {
        !p.exists()
    })
    .await;
}

const COMPONENTS: [&str; 4] = [
    "nb-2-big-Filter.db",
    "nb-2-big-Index.db",
    "nb-2-big-Statistics.db",
    "nb-2-big-TOC.txt",
];

/// 15.1: the Python run listed only the files still on disk (often Data.db alone) because the
/// other components had been shipped and deleted first. The index names them all.
async fn delete_on_backup_index_lists_what_the_directory_held(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-1");
    std::fs::create_dir_all(&dir).unwrap();
    let agent = Agent::start(&b, &["--delete-on-backup"], &[&dir]);
    let store = b.store().await;
    for (i, c) in COMPONENTS.iter().enumerate() {
        ship_and_delete(&store, &dir, c, &data(100 + i, i as u64)).await;
    }
    let dat = write_rename(&dir, "nb-2-big-Data.db", &data(5000, 9));
    let mut want: Vec<String> = COMPONENTS.iter().map(|s| s.to_string()).collect();
    want.push("nb-2-big-Data.db".into());
    want.sort();
    assert_eq!(index_names(&store, &dat).await, want);
    eventually(T, "Data.db deleted after its index", || async {
        !dat.exists()
    })
    .await;
    agent.stop();
    // Every file the index names is in the bucket with its content.
    for (i, c) in COMPONENTS.iter().enumerate() {
        let got = store
            .get_bytes(&format!("testhost:{}", dir.join(c).display()))
            .await
            .unwrap();
        assert_eq!(&got[..], &data(100 + i, i as u64)[..], "{c}");
    }
}

/// 15.1 across a restart: the components were shipped and deleted by an earlier run; the index
/// the next run writes still names them (learnt from the bucket).
async fn delete_on_backup_index_after_a_restart(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-2");
    std::fs::create_dir_all(&dir).unwrap();
    let store = b.store().await;
    let first = Agent::start(&b, &["--delete-on-backup"], &[&dir]);
    for (i, c) in COMPONENTS.iter().enumerate() {
        ship_and_delete(&store, &dir, c, &data(200 + i, i as u64)).await;
    }
    first.stop();
    let _second = Agent::start(&b, &["--delete-on-backup"], &[&dir]);
    let dat = write_rename(&dir, "nb-2-big-Data.db", &data(3000, 7));
    let mut want: Vec<String> = COMPONENTS.iter().map(|s| s.to_string()).collect();
    want.push("nb-2-big-Data.db".into());
    want.sort();
    assert_eq!(index_names(&store, &dat).await, want);
}

/// With `--delete-on-backup` the next run learns the directory's earlier files from one LIST of
/// the bucket, which also returns the earlier run's index objects; those are not files of the
/// directory and no index names them (issue 13: the mutant `|| with && in settle`, which recorded
/// them as shipped files, survived the suite).
async fn delete_on_backup_index_after_a_restart_names_no_earlier_index(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-4");
    std::fs::create_dir_all(&dir).unwrap();
    let store = b.store().await;
    let first = Agent::start(&b, &["--delete-on-backup"], &[&dir]);
    let mut want: Vec<String> = Vec::new();
    for (i, c) in COMPONENTS.iter().enumerate() {
        ship_and_delete(&store, &dir, c, &data(300 + i, i as u64)).await;
        want.push(c.to_string());
    }
    let dat = write_rename(&dir, "nb-2-big-Data.db", &data(2000, 5));
    want.push("nb-2-big-Data.db".into());
    want.sort();
    assert_eq!(index_names(&store, &dat).await, want);
    eventually(T, "Data.db deleted after its index", || async {
        !dat.exists()
    })
    .await;
    first.stop();
    let _second = Agent::start(&b, &["--delete-on-backup"], &[&dir]);
    let dat = write_rename(&dir, "nb-3-big-Data.db", &data(2500, 6));
    want.push("nb-3-big-Data.db".into());
    want.sort();
    assert_eq!(
        index_names(&store, &dat).await,
        want,
        "the earlier run's files, and not its index nb-2-big-Data.db-listdir.json"
    );
}

/// 15.3: with `--listen-events IN_CREATE` the Python tool shipped the first 1,000 bytes of a file
/// written after its creation and never corrected it. The object ends equal to the whole file.
async fn in_create_reships_a_file_whose_write_ends_later(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let _agent = Agent::start(&b, &["--listen-events", "IN_CREATE"], &[d.path()]);
    let store = b.store().await;
    let path = d.path().join("CommitLog-7-1.log");
    let body = data(2000, 3);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&body[..1000]).unwrap();
    f.flush().unwrap();
    let key = format!("testhost:{}", path.display());
    // Shipped on IN_CREATE, while still open for writing (empty or partial).
    wait_key(&store, &key).await;
    f.write_all(&body[1000..]).unwrap();
    drop(f);
    eventually(T, "the object holds the whole file", || async {
        store
            .get_bytes(&key)
            .await
            .is_ok_and(|got| got[..] == body[..])
    })
    .await;
}

/// 15.5: boto guesses the Content-Type from the name: `TOC.txt` is text/plain; SSTable
/// components keep the default.
async fn toc_is_text_plain_like_the_python_tool(b: Backend) {
    let d = tempfile::tempdir().unwrap();
    let _agent = Agent::start(&b, &[], &[d.path()]);
    let store = b.store().await;
    let toc = write_rename(d.path(), "nb-4-big-TOC.txt", b"Data.db\nTOC.txt\n");
    let dat = write_rename(d.path(), "nb-4-big-Data.db", b"data");
    let toc_key = format!("testhost:{}", toc.display());
    let dat_key = format!("testhost:{}", dat.display());
    wait_key(&store, &format!("{dat_key}-listdir.json")).await;
    wait_key(&store, &toc_key).await;
    let (toc_type, dat_type) = match &b {
        Backend::Garage { endpoint, bucket } => {
            // An independent client: what any S3 reader sees.
            let c = s3_client(endpoint).await;
            let h = |k: String| {
                let c = c.clone();
                let bucket = bucket.clone();
                async move {
                    c.head_object()
                        .bucket(bucket)
                        .key(k)
                        .send()
                        .await
                        .unwrap()
                        .content_type()
                        .map(str::to_string)
                }
            };
            (h(toc_key).await, h(dat_key).await)
        }
        Backend::Local { .. } => (
            store
                .head(&toc_key)
                .await
                .unwrap()
                .unwrap()
                .meta
                .content_type,
            store
                .head(&dat_key)
                .await
                .unwrap()
                .unwrap()
                .meta
                .content_type,
        ),
    };
    assert_eq!(toc_type.as_deref(), Some("text/plain"));
    if b.is_s3() {
        assert_eq!(dat_type.as_deref(), Some("application/octet-stream"));
    } else {
        assert_eq!(
            dat_type, None,
            "the local store records no type: the default"
        );
    }
}

/// 15.4: a region the server does not serve is a wrong request, not an outage: one line naming
/// the region and exit code 2; with `--wait-for-bucket`, an ERROR with the reason, still running.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_region_is_a_config_error_not_an_outage() {
    let b = Backend::garage().await;
    let d = tempfile::tempdir().unwrap();
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let mut cmd = Command::new(bin());
    cmd.args(["-n", "testhost", "--aws-region", "mars-north-7"])
        .args([bucket.as_str(), "--endpoint-url", endpoint.as_str()])
        .arg(d.path());
    // Bounded: the old code waited for ever, as for an outage.
    let mut agent = Agent::spawn(cmd);
    let status = agent.wait_exit(T);
    let err = agent.log();
    assert_eq!(status.code(), Some(2), "stderr:\n{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("mars-north-7") && last.contains("--aws-region"),
        "the error names the region: {err}"
    );
    assert!(
        !err.contains("does not answer"),
        "not reported as an outage: {err}"
    );

    let mut cmd = Command::new(bin());
    cmd.args([
        "--log-format",
        "json",
        "-n",
        "testhost",
        "--wait-for-bucket",
    ])
    .args(["--aws-region", "mars-north-7"])
    .args([bucket.as_str(), "--endpoint-url", endpoint.as_str()])
    .arg(d.path());
    let mut agent = Agent::spawn(cmd);
    agent.wait_for(T, |l| {
        l.iter().any(|v| {
            v["level"] == "ERROR"
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("mars-north-7"))
        })
    });
    assert!(agent.child.try_wait().unwrap().is_none(), "still running");
    agent.term();
    agent.wait_exit(T);
}

/// The index writer learns what an earlier run shipped from one LIST of the directory per run
/// (issue 13: two mutants of `settle` survived, one LISTing at every index, one never, which
/// uploads files of the earlier run again). Counted by the agent's own request metrics.
async fn a_directory_is_listed_once_a_run_and_nothing_shipped_is_sent_again(b: Backend) {
    use support::fault::{free_port, http_get, metric};
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("ks").join("t-3");
    std::fs::create_dir_all(&dir).unwrap();
    let store = b.store().await;
    let first = Agent::start(&b, &[], &[&dir]);
    let f = write_rename(&dir, "f-Data.db", &data(700, 1));
    index_names(&store, &f).await;
    first.stop();
    let addr = format!("127.0.0.1:{}", free_port());
    let second = Agent::start(&b, &["--http-listen", &addr], &[&dir]);
    let mut want = vec!["f-Data.db".to_string()];
    for i in 0..3 {
        let name = format!("g{i}-Data.db");
        let g = write_rename(&dir, &name, &data(800 + i, 2 + i as u64));
        want.push(name);
        want.sort();
        assert_eq!(index_names(&store, &g).await, want);
    }
    let m = http_get(&addr, "/metrics").await;
    let count = |kind: &str| {
        metric(
            &m,
            &format!("tablesnap_storage_requests{{kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(
        count("list"),
        Some(1.0),
        "one LIST for the directory in this run:\n{m}"
    );
    assert_eq!(
        count("put"),
        Some(6.0),
        "three files and their three indexes, f-Data.db not again:\n{m}"
    );
    second.stop();
}
