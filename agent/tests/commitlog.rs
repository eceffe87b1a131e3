//! `--commitlog-archive` on a local directory store and against storage that does not answer: the
//! agent ships each complete segment once with its metadata and removes it from the archive, and
//! while the bucket cannot be reached the archive is a spool whose cap holds, each dropped segment
//! named. (The real Cassandra node's archive is in `real_cassandra.rs`.)

#[macro_use]
mod support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;
use tablesnap::segment::{META_KEY, SegmentMeta};

const WAIT: Duration = Duration::from_secs(30);

fn wait_until(what: &str, agent: &Agent, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < WAIT,
            "{what} not within {WAIT:?}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn segment(dir: &Path, id: u64, len: usize) -> std::path::PathBuf {
    let p = dir.join(format!("CommitLog-7-{id}.log"));
    std::fs::write(&p, data(len, id)).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn segments_ship_once_complete_with_their_metadata_and_leave_the_archive() {
    let b = Backend::local();
    let d = tempfile::tempdir().unwrap();
    let (data_dir, live, arch) = (
        d.path().join("data"),
        d.path().join("live"),
        d.path().join("archive"),
    );
    for p in [&data_dir, &live, &arch] {
        std::fs::create_dir_all(p).unwrap();
    }
    // Cassandra's live directory holds 10..=12; 10 and 11 are archived by /bin/ln.
    for id in 10..=12 {
        segment(&live, id, 4096);
    }
    let addr = format!("127.0.0.1:{}", support::fault::free_port());
    let (a, l) = (arch.display().to_string(), live.display().to_string());
    let agent = Agent::start(
        &b,
        &[
            "--commitlog-archive",
            &a,
            "--commitlog-dir",
            &l,
            "--cassandra-version",
            "5.0.9",
            "--http-listen",
            &addr,
        ],
        &[&data_dir],
    );
    std::fs::hard_link(
        live.join("CommitLog-7-10.log"),
        arch.join("CommitLog-7-10.log"),
    )
    .unwrap();
    std::fs::hard_link(
        live.join("CommitLog-7-11.log"),
        arch.join("CommitLog-7-11.log"),
    )
    .unwrap();
    // A copy being written (one link, just modified): complete only once closed.
    let mut copy = std::fs::File::create(arch.join("CommitLog-7-9.log")).unwrap();
    copy.write_all(&data(1000, 9)).unwrap();
    copy.flush().unwrap();
    // Not a segment: left alone.
    std::fs::write(arch.join("notes.txt"), b"x").unwrap();
    let store = b.store().await;
    let key = |id: u64| format!("testhost:{}/CommitLog-7-{id}.log", arch.display());
    wait_until("10 and 11 shipped and removed", &agent, || {
        !arch.join("CommitLog-7-10.log").exists() && !arch.join("CommitLog-7-11.log").exists()
    });
    assert!(
        arch.join("CommitLog-7-9.log").exists(),
        "a segment still open for writing waits"
    );
    copy.write_all(&data(24, 99)).unwrap();
    drop(copy);
    wait_until("9 shipped once closed", &agent, || {
        !arch.join("CommitLog-7-9.log").exists()
    });
    assert!(arch.join("notes.txt").exists());
    assert!(
        live.join("CommitLog-7-10.log").exists(),
        "Cassandra's own file stays"
    );
    for id in [9, 10, 11] {
        let head = store.head(&key(id)).await.unwrap().expect("shipped");
        let m = SegmentMeta::from_user(&head.meta.user)
            .unwrap_or_else(|| panic!("{id}: no {META_KEY} metadata: {:?}", head.meta.user));
        assert_eq!((m.id, m.version), (id, 7));
        assert_eq!(m.node, "testhost");
        assert_eq!(m.cassandra_version.as_deref(), Some("5.0.9"));
        assert_eq!(
            m.oldest_live,
            Some(10),
            "the oldest id in the live directory"
        );
        assert!(m.live_at.is_some() && m.seen <= m.live_at.unwrap());
        let body = store.get_bytes(&key(id)).await.unwrap();
        let expected = if id == 9 {
            [data(1000, 9), data(24, 99)].concat()
        } else {
            data(4096, id)
        };
        assert_eq!(body[..], expected[..], "segment {id} byte for byte");
        if id != 9 {
            let mtime = std::fs::metadata(live.join(format!("CommitLog-7-{id}.log"))).unwrap();
            assert_eq!(
                m.last_write,
                mtime.mtime() * 1000 + mtime.mtime_nsec() / 1_000_000
            );
        }
    }
    assert!(
        store.head(&key(12)).await.unwrap().is_none(),
        "12 was never archived"
    );
    let report: serde_json::Value =
        serde_json::from_str(&support::fault::http_get(&addr, "/status").await).unwrap();
    assert_eq!(report["commitlog"]["segmentsShipped"], 3, "{report}");
    assert_eq!(report["commitlog"]["segmentsDropped"], 0, "{report}");
    assert!(
        report["commitlog"]["windowEnd"].as_i64().unwrap() > 0,
        "{report}"
    );
    let metrics = support::fault::http_get(&addr, "/metrics").await;
    assert_eq!(
        support::fault::metric(&metrics, "tablesnap_commitlog_segments_shipped_total"),
        Some(3.0),
        "{metrics}"
    );
    agent.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spool_cap_holds_while_storage_does_not_answer() {
    let d = tempfile::tempdir().unwrap();
    let (data_dir, arch) = (d.path().join("data"), d.path().join("archive"));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&arch).unwrap();
    // Segments whose original Cassandra already removed (one link), written a minute ago.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    for id in 1..=4 {
        let p = segment(&arch, id, 400 << 10);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let addr = format!("127.0.0.1:{}", support::fault::free_port());
    let mut cmd = Command::new(bin());
    cmd.args([
        "--log-format",
        "json",
        "-n",
        "testhost",
        "--wait-for-bucket",
    ])
    .args([
        "--endpoint-url",
        "http://127.0.0.1:9",
        "--aws-region",
        "garage",
    ])
    .args(["--retries", "1", "--request-timeout", "2"])
    .args(["--commitlog-archive", arch.to_str().unwrap()])
    .args(["--commitlog-spool-max", "1", "--http-listen", &addr])
    .env("AWS_ACCESS_KEY_ID", "GKtest")
    .env("AWS_SECRET_ACCESS_KEY", "test")
    .arg("no-such-bucket")
    .arg(&data_dir);
    let agent = Agent::spawn(cmd);
    let left = || {
        let mut v: Vec<String> = std::fs::read_dir(&arch)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // 1.6 MiB of its own against a 1 MiB cap: the two oldest go, named.
    wait_until("the cap holds", &agent, || left().len() == 2);
    assert_eq!(left(), ["CommitLog-7-3.log", "CommitLog-7-4.log"]);
    let dropped: Vec<String> = agent
        .messages(
            "commit log spool full: segment deleted unshipped; point-in-time restore cannot cross it",
        )
        .iter()
        .map(|l| {
            assert_eq!(l["level"], "ERROR");
            l["segment"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(dropped, ["CommitLog-7-1.log", "CommitLog-7-2.log"]);
    let report: serde_json::Value =
        serde_json::from_str(&support::fault::http_get(&addr, "/status").await).unwrap();
    assert_eq!(report["storageReady"], false, "{report}");
    assert_eq!(report["commitlog"]["segmentsDropped"], 2, "{report}");
    assert!(report["commitlog"]["windowStart"].is_null(), "{report}");
    // The gauge is the agent's, set by its archive task after the drops: read until it is there.
    let (spool, held) = (
        "tablesnap_commitlog_spool_bytes",
        Some(f64::from(800u32 << 10)),
    );
    let start = Instant::now();
    let metrics = loop {
        let m = support::fault::http_get(&addr, "/metrics").await;
        if support::fault::metric(&m, spool) == held || start.elapsed() >= WAIT {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(support::fault::metric(&metrics, spool), held, "{metrics}");
    assert!(
        support::fault::metric(&metrics, "tablesnap_commitlog_archive_lag_seconds").is_some(),
        "{metrics}"
    );
    drop(agent);
}
