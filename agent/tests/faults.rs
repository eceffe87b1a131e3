//! The fault suite: real faults against real parts, and afterwards every file the test wrote is
//! read back from the bucket and compared byte for byte. Each test writes one line per fault to
//! `$TABLESNAP_FAULT_REPORT` (JSON lines; e2e/scripts/fault-report.py makes the README table).
//! Randomness is seeded (`TABLESNAP_FAULT_SEED`); every wait has a deadline.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::fault::*;
use support::variant::*;
use support::*;

/// Flags that make faults show quickly: small parts so that multipart uploads happen, short
/// request timeouts so that stalls are detected, frequent rescans so that tidying happens.
const FAST: &[&str] = &[
    "--max-upload-size",
    "4",
    "--multipart-chunk-size",
    "5",
    "--request-timeout",
    "5",
    "--rescan-interval",
    "3",
];

/// The agent on `endpoint` with the credentials of `g` (only), watching `dir`.
fn agent_on(g: &Garage, endpoint: &str, args: &[&str], dir: &Path) -> Agent {
    let mut cmd = Command::new(bin());
    cmd.env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .envs(g.agent_env());
    cmd.args(["--log-format", "json", "-n", "testhost"])
        .args(args)
        .arg(g.bucket())
        .args(["--endpoint-url", endpoint])
        .arg(dir);
    let agent = Agent::spawn(cmd);
    agent.wait_for(Duration::from_secs(60), |l| {
        l.iter().any(|v| v["message"] == "watching")
    });
    agent
}

/// Waits until no multipart upload is open in `bucket`.
/// Waits up to `timeout` for the bucket to hold no open multipart upload; returns how many are
/// still open (`usize::MAX` when the server never answered). Never panics: the count goes into
/// the report row first, and the test asserts after.
async fn wait_no_uploads(c: &aws_sdk_s3::Client, bucket: &str, timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let open = open_uploads_of(c, bucket, "").await;
        if open == 0 || start.elapsed() >= timeout {
            if open != 0 {
                eprintln!("multipart uploads still open after {timeout:?}: {open}");
            }
            return open;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Fault 1: the only Garage server SIGKILLed and restarted several times during an ingest.
#[tokio::test(flavor = "multi_thread")]
async fn garage_killed_and_restarted_during_ingest() {
    garage_killed_and_restarted(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garage_killed_and_restarted_during_ingest_cassandra() {
    garage_killed_and_restarted(Variant::Cassandra).await;
}

async fn garage_killed_and_restarted(v: Variant) {
    let seed = seed("garage_killed_and_restarted_during_ingest");
    let mut rng = Rng::new(seed);
    let g = Garage::start(1);
    let d = tempfile::tempdir().unwrap();
    let args = [FAST, &v.args()].concat();
    let agent = agent_on(&g, &g.endpoint(1), &args, d.path());
    let w = v.load(d.path(), 300, 30, seed, Duration::from_millis(20));

    let mut restarts = 0u64;
    while restarts < 4 || (!w.is_finished() && restarts < 8) {
        tokio::time::sleep(rng.millis(300, 1500)).await;
        g.kill(1);
        tokio::time::sleep(rng.millis(200, 1500)).await;
        g.restart(1);
        restarts += 1;
    }
    let want = w.join().unwrap();

    let c = g.client(1).await;
    wait_all(&c, &g.bucket(), &want, Duration::from_secs(180)).await;
    let (verified, lost) = verify(&c, &g.bucket(), &want).await;
    let open = wait_no_uploads(&c, &g.bucket(), Duration::from_secs(60)).await;
    report(&Outcome {
        fault: v.fault("Garage server SIGKILLed and restarted during ingest"),
        injected: restarts,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: String::new(),
    });
    assert_eq!((verified, lost, open), (want.len(), 0, 0));
    let log = agent.stop();
    assert!(
        log.contains("will retry") || log.contains("scan failed"),
        "the restarts must have been noticed by the agent"
    );
}

/// Fault 2: a three-node Garage (replication factor 3); one node killed mid-run.
#[tokio::test(flavor = "multi_thread")]
async fn three_node_garage_loses_a_node() {
    three_node_garage(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_node_garage_loses_a_node_cassandra() {
    three_node_garage(Variant::Cassandra).await;
}

async fn three_node_garage(v: Variant) {
    let seed = seed("three_node_garage_loses_a_node");
    let g = Garage::start(3);
    let d = tempfile::tempdir().unwrap();
    let args = [FAST, &v.args()].concat();
    let agent = agent_on(&g, &g.endpoint(1), &args, d.path());
    let c = g.client(1).await;
    let w = v.load(d.path(), 200, 40, seed, Duration::from_millis(20));

    // Kill node 3 once some files have landed.
    let start = Instant::now();
    let before = loop {
        let n = list_all(&c, &g.bucket()).await.map_or(0, |m| m.len());
        if n >= 20 {
            break n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload before the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    g.kill(3);
    let want = w.join().unwrap();
    wait_all(&c, &g.bucket(), &want, Duration::from_secs(180)).await;
    let (verified, lost) = verify(&c, &g.bucket(), &want).await;
    let open = open_uploads_of(&c, &g.bucket(), "").await;
    report(&Outcome {
        fault: v.fault("3-node Garage (RF 3), one node SIGKILLed mid-run"),
        injected: 1,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: format!(
            "{} of the expected files landed after the kill",
            want.len().saturating_sub(before)
        ),
    });
    assert!(before < want.len(), "the kill must happen mid-run");
    assert_eq!((verified, lost), (want.len(), 0));
    agent.stop();
}

/// Fault 3: a fault proxy between agent and Garage: connections reset mid-request, stalls longer
/// than the request timeout, 503 SlowDown answers.
#[tokio::test(flavor = "multi_thread")]
async fn fault_proxy_resets_stalls_and_slowdowns() {
    fault_proxy(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_proxy_resets_stalls_and_slowdowns_cassandra() {
    fault_proxy(Variant::Cassandra).await;
}

async fn fault_proxy(v: Variant) {
    let seed = seed("fault_proxy_resets_stalls_and_slowdowns");
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let plan_ = Plan {
        reset_pct: 15,
        stall_pct: 10,
        slowdown_pct: 20,
        flip_pct: 0,
        stall: Duration::from_secs(8),
        rate: None,
        pass_budget: Some((256 << 10, 24 << 20)),
        record: false,
    };
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").into(), plan_, seed).await;
    let via = Backend::Garage {
        endpoint: proxy.endpoint(),
        bucket: bucket.clone(),
    };
    let d = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args[5] = "3"; // --request-timeout 3: the 8 s stalls are detected
    args.extend(v.args());
    let agent = Agent::start(&via, &args, &[d.path()]);
    let want = v
        .load(d.path(), 250, 40, seed, Duration::from_millis(10))
        .join()
        .unwrap();

    let c = shared_client(endpoint);
    wait_all(&c, bucket, &want, Duration::from_secs(240)).await;
    let (verified, lost) = verify(&c, bucket, &want).await;
    let open = wait_no_uploads(&c, bucket, Duration::from_secs(60)).await;
    let inj = &proxy.injected;
    let (resets, stalls, slowdowns, cuts) = (
        inj.resets.load(Ordering::Relaxed),
        inj.stalls.load(Ordering::Relaxed),
        inj.slowdowns.load(Ordering::Relaxed),
        inj.budget_cuts.load(Ordering::Relaxed),
    );
    let conns = inj.connections.load(Ordering::Relaxed);
    // One run, one row: the three faults are mixed in it, so they share the outcome.
    report(&Outcome {
        fault: v.fault(
            "fault proxy: TCP resets mid-request, stalls beyond --request-timeout, 503 SlowDown",
        ),
        injected: resets + cuts + stalls + slowdowns,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: format!(
            "{} resets, {stalls} stalls, {slowdowns} SlowDowns hit requests, of {conns} connections",
            resets + cuts
        ),
    });
    let log = agent.stop();
    assert!(
        resets + cuts >= 1 && stalls >= 1 && slowdowns >= 1,
        "{inj:?}"
    );
    assert_eq!((verified, lost, open), (want.len(), 0, 0));
    // A 503 to a HEAD carries no body, so no error code: the status is all the log can show.
    assert!(
        log.contains("SlowDown") || log.contains("HTTP 503"),
        "503 SlowDown must reach the log"
    );
    assert!(
        log.contains("request timeout"),
        "stalls must be detected by the request timeout"
    );
}

/// Fault 3b: one byte of a request body flipped in transit. Every single PUT and every multipart
/// part carries a checksum the server checks (Content-MD5 or the SigV4 payload hash with md5,
/// CRC64NVME with crc64nvme, a CRC64NVME per part in both), so each corrupt request is refused
/// and sent again: every object ends equal to its file. One run per checksum mode.
async fn corrupt_bytes_in_transit_are_refused(checksum: &str, v: Variant) {
    let seed = seed("corrupt_bytes_in_transit_are_refused");
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let plan_ = Plan {
        flip_pct: 35,
        ..Plan::clean(None)
    };
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").into(), plan_, seed).await;
    let via = Backend::Garage {
        endpoint: proxy.endpoint(),
        bucket: bucket.clone(),
    };
    let d = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    match v {
        Variant::Generic => args.extend(["--checksum", checksum]),
        Variant::Cassandra => {
            assert_eq!(checksum, "crc64nvme", "the cassandra variant is crc64nvme");
            args.extend(v.args());
        }
    }
    let agent = Agent::start(&via, &args, &[d.path()]);
    // Small files (from memory), mid-size single PUTs streamed from disk, multipart files.
    let want = v
        .load(d.path(), 60, 10, seed, Duration::from_millis(10))
        .join()
        .unwrap();
    let c = shared_client(endpoint);
    wait_all(&c, bucket, &want, Duration::from_secs(180)).await;
    let (verified, lost) = verify(&c, bucket, &want).await;
    let open = wait_no_uploads(&c, bucket, Duration::from_secs(60)).await;
    let flips = proxy.injected.flips.load(Ordering::Relaxed);
    let log = agent.stop();
    let refused = log
        .lines()
        .filter(|l| l.contains("upload failed") || l.contains("index not written yet"))
        .count();
    report(&Outcome {
        fault: match v {
            Variant::Generic => format!(
                "one byte flipped in request bodies in transit (proxy), --checksum {checksum}"
            ),
            Variant::Cassandra => v.fault("one byte flipped in request bodies in transit (proxy)"),
        },
        injected: flips,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: format!("{refused} refused requests logged and sent again"),
    });
    assert!(flips >= 3, "the proxy flipped {flips} bytes");
    assert!(
        refused as u64 >= flips.min(1),
        "the server refused the corrupt requests:\n{log}"
    );
    assert_eq!((verified, lost, open), (want.len(), 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_bytes_in_transit_are_refused_md5() {
    corrupt_bytes_in_transit_are_refused("md5", Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_bytes_in_transit_are_refused_cassandra() {
    corrupt_bytes_in_transit_are_refused("crc64nvme", Variant::Cassandra).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_bytes_in_transit_are_refused_crc64nvme() {
    corrupt_bytes_in_transit_are_refused("crc64nvme", Variant::Generic).await;
}

/// Fault 4: the agent SIGKILLed at random moments and restarted with -B.
#[tokio::test(flavor = "multi_thread")]
async fn agent_sigkilled_and_restarted() {
    agent_sigkilled(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_sigkilled_and_restarted_cassandra() {
    agent_sigkilled(Variant::Cassandra).await;
}

async fn agent_sigkilled(v: Variant) {
    let seed = seed("agent_sigkilled_and_restarted");
    let mut rng = Rng::new(seed);
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let d = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.push("-B");
    args.extend(v.args());
    let mut agent = Agent::start(&b, &args, &[d.path()]);
    let w = v.load(d.path(), 300, 25, seed, Duration::from_millis(15));
    let mut kills = 0u64;
    while kills < 5 || (!w.is_finished() && kills < 10) {
        tokio::time::sleep(rng.millis(200, 1500)).await;
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
        kills += 1;
        agent = Agent::start(&b, &args, &[d.path()]);
    }
    let want = w.join().unwrap();

    let c = shared_client(endpoint);
    wait_all(&c, bucket, &want, Duration::from_secs(180)).await;
    let (verified, lost) = verify(&c, bucket, &want).await;
    // Nothing else under a final key (no stray or partial object).
    let listed = list_all(&c, bucket).await.unwrap();
    // An index (cassandra mode writes one per SSTable, named after its Data.db) is expected
    // only beside a file the test wrote.
    let strays: Vec<_> = listed
        .keys()
        .filter(|k| {
            !want.contains_key(*k)
                && !k
                    .strip_suffix("-listdir.json")
                    .is_some_and(|f| want.contains_key(f))
        })
        .collect();
    let open = wait_no_uploads(&c, bucket, Duration::from_secs(60)).await;
    report(&Outcome {
        fault: v.fault("agent SIGKILLed at random moments, restarted with -B"),
        injected: kills,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: format!("{} objects under no expected key", strays.len()),
    });
    assert!(strays.is_empty(), "unexpected objects: {strays:?}");
    assert_eq!((verified, lost, open), (want.len(), 0, 0));
    agent.stop();
}

/// Fault 5: the inotify queue overflows (max_queued_events lowered) under a burst of files.
#[tokio::test(flavor = "multi_thread")]
async fn inotify_overflow_burst_lands_by_rescan() {
    inotify_overflow(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn inotify_overflow_burst_lands_by_rescan_cassandra() {
    inotify_overflow(Variant::Cassandra).await;
}

async fn inotify_overflow(v: Variant) {
    let b = Backend::local();
    let d = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // Cassandra mode: 300 flushed SSTables (about 3,600 files) made beforehand beside the watched
    // tree, on the same filesystem, then renamed into the watched table directory as fast as the
    // kernel allows (as `nodetool import` or streaming lands files): the simulator itself writes
    // too slowly to outrun the agent's reading of 16 queued events.
    let side = tempfile::tempdir_in(d.path().parent().unwrap()).unwrap();
    let staged = match v {
        Variant::Generic => None,
        Variant::Cassandra => {
            let mut t = sim::Table::new(side.path(), "ks", "events", sim::Ver::V50Big, 5);
            for _ in 0..300 {
                t.flush();
            }
            let rel = t.dir.strip_prefix(side.path()).unwrap().to_path_buf();
            std::fs::create_dir_all(d.path().join(&rel)).unwrap();
            Some((t.dir.clone(), d.path().join(rel), t.live_files()))
        }
    };
    let agent = {
        // Only the agent's inotify instance, created while the limit is low, is bound by it.
        let _limit = QueuedEventsLimit::set(16);
        let mut args = vec![
            "--rescan-interval",
            "0",
            "--without-index",
            "--http-listen",
            &addr,
        ];
        args.extend(v.args());
        Agent::start(&b, &args, &[d.path()])
    };
    let t0 = Instant::now();
    let mut want = BTreeMap::new();
    match staged {
        // 20,000 small files written in place.
        None => {
            for i in 0..20_000 {
                let body = format!("small file {i}\n").into_bytes();
                let p = d.path().join(format!("s-{i:05}"));
                std::fs::write(&p, &body).unwrap();
                want.insert(format!("testhost:{}", p.display()), body);
            }
        }
        Some((from, to, files)) => {
            for (name, body) in files {
                std::fs::rename(from.join(&name), to.join(&name)).unwrap();
                want.insert(format!("testhost:{}", to.join(&name).display()), body);
            }
        }
    }
    let n = want.len();
    agent.wait_for(Duration::from_secs(60), |l| {
        l.iter()
            .any(|v| v["message"] == "inotify queue overflowed; rescanning every watched path")
    });
    eprintln!("burst written, overflow seen after {:?}", t0.elapsed());
    // Read back independently of the agent's store code: a directory store keeps each object
    // as the file <root>/<key>.
    let Backend::Local { dir: root } = &b else {
        unreachable!()
    };
    let object = |k: &str| root.path().join("store").join(k.trim_start_matches('/'));
    let landed = || {
        want.iter()
            .filter(|(k, body)| std::fs::read(object(k)).is_ok_and(|got| got == **body))
            .count()
    };
    let t = Instant::now();
    let mut verified = landed();
    while verified < n && t.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        verified = landed();
    }
    eprintln!(
        "{verified} of {n} verified {:?} after the overflow",
        t.elapsed()
    );
    eprintln!("burst verified {:?} after the overflow", t.elapsed());
    let m = http_get(&addr, "/metrics").await;
    let overflows = metric(&m, "tablesnap_inotify_overflows_total").unwrap_or(0.0);
    report(&Outcome {
        fault: v.fault("inotify queue overflow (max_queued_events 16), a burst of small files"),
        injected: overflows as u64,
        expected: want.len(),
        verified,
        lost: want.len() - verified,
        open_uploads: 0,
        note: format!("{n} files; periodic rescans off, so they landed by the overflow rescan"),
    });
    assert!(overflows >= 1.0, "metrics:\n{m}");
    assert!(
        m.contains("tablesnap_scan_duration_milliseconds{why=\"overflow\"}"),
        "{m}"
    );
    assert_eq!(verified, n);
    let log = agent.stop();
    eprintln!("agent stopped {:?} after the overflow", t.elapsed());
    let scans = log.matches("\"why\":\"overflow\"").count();
    eprintln!("{scans} overflow scans for {overflows} overflows");
    drop(d);
    eprintln!("dir removed {:?} after the overflow", t.elapsed());
    drop(b);
    eprintln!("store removed {:?} after the overflow", t.elapsed());
}

/// Fault 6: files deleted ("compacted") during their upload, and a file the agent cannot read:
/// the rest continues, the error is in the log and the metrics, nothing partial under a key.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_deletes_and_unreadable_file() {
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    // Throttled so that a 30 MiB upload takes about a second.
    let proxy = Proxy::start(
        endpoint.trim_start_matches("http://").into(),
        Plan::clean(Some(32 << 20)),
        1,
    )
    .await;
    let d = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // Root reads any file; without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (as a non-root sidecar)
    // a mode-000 file cannot be opened.
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--bounding-set",
        "-dac_override,-dac_read_search",
        "--inh-caps",
        "-dac_override,-dac_read_search",
        "--",
        bin(),
        "--log-format",
        "json",
        "-n",
        "testhost",
        "-t",
        "1",
        "--max-upload-size",
        "4",
        "--multipart-chunk-size",
        "5",
        "--request-timeout",
        "10",
        "--http-listen",
        &addr,
        bucket,
        "--endpoint-url",
        &proxy.endpoint(),
    ])
    .arg(d.path());
    let agent = Agent::spawn(cmd);
    agent.wait_for(Duration::from_secs(60), |l| {
        l.iter().any(|v| v["message"] == "watching")
    });

    // The unreadable file: mode 000 before it appears in the watched directory.
    let outside = tempfile::tempdir().unwrap();
    let locked_tmp = outside.path().join("locked.db");
    std::fs::write(&locked_tmp, data(1000, 7)).unwrap();
    std::fs::set_permissions(
        &locked_tmp,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let locked = d.path().join("locked.db");
    std::fs::rename(&locked_tmp, &locked).unwrap();

    // Large files, each deleted as soon as its upload starts.
    let mut compacted = Vec::new();
    for i in 0..3u64 {
        let body = data(30 << 20, 100 + i);
        let p = write_rename(d.path(), &format!("big-{i}-Data.db"), &body);
        let key = format!("testhost:{}", p.display());
        let k = key.clone();
        agent.wait_for(Duration::from_secs(60), move |l| {
            l.iter()
                .any(|v| v["message"] == "uploading" && v["key"] == k.as_str())
        });
        std::fs::remove_file(&p).unwrap();
        compacted.push((p, key, body));
    }
    // The rest carries on.
    let files = plan(30, 0, 5);
    let want = wanted(d.path(), &files);
    writer(d.path().to_path_buf(), files, Duration::from_millis(5))
        .join()
        .unwrap();
    let c = shared_client(endpoint);
    wait_all(&c, bucket, &want, Duration::from_secs(120)).await;
    let (verified, lost) = verify(&c, bucket, &want).await;
    for (p, _, _) in &compacted {
        let path = p.display().to_string();
        agent.wait_for(Duration::from_secs(60), |l| {
            l.iter().any(|v| {
                v["message"] == "file vanished before it was shipped; dropped"
                    && v["path"] == path.as_str()
            })
        });
    }
    let locked_s = locked.display().to_string();
    agent.wait_for(Duration::from_secs(30), |l| {
        l.iter()
            .any(|v| v["level"] == "ERROR" && v["path"] == locked_s.as_str() && v["reason"] == "io")
    });
    let m = http_get(&addr, "/metrics").await;
    let io_failures = metric(&m, "tablesnap_upload_failures_total{reason=\"io\"}").unwrap_or(0.0);

    // Nothing partial: a deleted file's key is absent, or holds the whole file.
    let mut cut_mid_upload = 0;
    let mut partial = Vec::new();
    for (_, key, body) in &compacted {
        match c.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => {
                let got = o.body.collect().await.map(|b| b.into_bytes()).ok();
                if got.as_deref() != Some(&body[..]) {
                    partial.push(key.clone());
                }
            }
            Err(_) => cut_mid_upload += 1,
        }
    }
    let locked_key = format!("testhost:{}", locked.display());
    let locked_obj = c.head_object().bucket(bucket).key(&locked_key).send().await;
    let open = wait_no_uploads(&c, bucket, Duration::from_secs(30)).await;
    report(&Outcome {
        fault: "files deleted (compaction) during their multipart upload, and an unreadable file"
            .into(),
        injected: compacted.len() as u64 + 1,
        expected: want.len(),
        verified,
        lost: lost + partial.len(),
        open_uploads: open,
        note: format!(
            "{cut_mid_upload} of {} deleted files left no object, {} partial; unreadable file: \
             upload_failures{{reason=io}} = {io_failures}, {}",
            compacted.len(),
            partial.len(),
            if locked_obj.is_err() {
                "no object"
            } else {
                "AN OBJECT"
            }
        ),
    });
    assert!(
        partial.is_empty(),
        "partial or different objects: {partial:?}"
    );
    assert!(locked_obj.is_err(), "an unreadable file must not be stored");
    assert!(io_failures >= 1.0, "metrics:\n{m}");
    assert!(cut_mid_upload >= 1, "no upload was cut mid-way");
    assert_eq!((verified, lost, open), (want.len(), 0, 0));
    agent.stop();
}

/// Fault 6 in cassandra mode: SSTables with large Data.db files (multipart, streamed from the
/// pinned file) compacted away while their uploads run through a slow link, the staging directory
/// on another filesystem (/dev/shm: hard links fail with EXDEV, files are pinned by open
/// descriptors). Every input lands with the bytes it had, and the compaction's output too.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_deletes_pinned_sstables_during_their_upload_cassandra() {
    let v = Variant::Cassandra;
    let seed = seed("compaction_deletes_pinned_sstables_during_their_upload");
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    // 2 MiB/s: a 5 MiB Data.db takes about 2.5 s to send.
    let proxy = Proxy::start(
        endpoint.trim_start_matches("http://").into(),
        Plan::clean(Some(2 << 20)),
        seed,
    )
    .await;
    let via = Backend::Garage {
        endpoint: proxy.endpoint(),
        bucket: bucket.clone(),
    };
    let d = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir_in("/dev/shm").unwrap();
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap());
    assert_ne!(
        dev(staging.path()),
        dev(d.path()),
        "/dev/shm is another filesystem"
    );
    let staging_dir = staging.path().join("staging");
    let mut args = FAST.to_vec();
    args.extend(v.args());
    args.extend(["--staging-dir", staging_dir.to_str().unwrap()]);
    // One upload at a time: while the first Data.db is sent, the others wait in the queue with
    // only their pins (no open upload, no open read) to keep them.
    args.extend(["--threads", "1"]);
    let agent = Agent::start(&via, &args, &[d.path()]);
    let mut t = sim::Table::new(d.path(), "ks", "big", sim::Ver::V50Big, seed);
    t.data_len = Some((5 << 20)..(6 << 20));
    let mut inputs = Vec::new();
    for _ in 0..3 {
        inputs.push(t.flush());
    }
    let table_dir = t.dir.clone();
    let key = |name: &str| format!("testhost:{}", table_dir.join(name).display());
    // What the inputs held, read before the compaction deletes them.
    let mut want: BTreeMap<String, Vec<u8>> = t
        .live_files()
        .into_iter()
        .map(|(n, body)| (key(&n), body))
        .collect();
    let c = shared_client(endpoint);
    // Compact once an input's multipart upload is open (mid-upload) and the agent holds every
    // input: each Data.db is in the bucket or open in the agent's process (its pin). An input
    // the agent has not seen yet when it is deleted cannot be shipped by anyone.
    let fds = format!("/proc/{}/fd", agent.child.id());
    let held = |p: &Path| {
        std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == p))
    };
    let start = Instant::now();
    let (uploading, waiting) = loop {
        let open = open_uploads_of(&c, bucket, "").await;
        let landed = list_all(&c, bucket).await.unwrap_or_default();
        let pending: Vec<_> = inputs
            .iter()
            .filter(|s| !landed.contains_key(&key(&s.data())))
            .collect();
        if open > 0 && pending.iter().all(|s| held(&table_dir.join(s.data()))) {
            break (open, pending.len());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent never held every input mid-upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let output = t.compact(inputs.clone());
    let deleted = inputs.iter().all(|s| !t.dir.join(s.data()).exists());
    want.extend(
        t.live_files()
            .into_iter()
            .filter(|(n, _)| n.starts_with(output.prefix.as_str()))
            .map(|(n, body)| (key(&n), body)),
    );
    wait_all(&c, bucket, &want, Duration::from_secs(180)).await;
    let (verified, lost) = verify(&c, bucket, &want).await;
    let open = wait_no_uploads(&c, bucket, Duration::from_secs(60)).await;
    let staged_left = std::fs::read_dir(&staging_dir).map_or(0, |r| r.count());
    report(&Outcome {
        fault: v.fault(
            "SSTables compacted away during their multipart upload, staging on another filesystem",
        ),
        injected: inputs.len() as u64,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: format!(
            "{uploading} upload(s) open and {waiting} input Data.db not yet in the bucket when the compaction deleted them; {staged_left} staged entries left"
        ),
    });
    assert!(deleted, "the compaction deleted its inputs");
    assert!(
        waiting >= 1,
        "the compaction came too late: {waiting} inputs still to send"
    );
    assert_eq!((verified, lost, open), (want.len(), 0, 0));
    agent.stop();
}

/// The periodic rescan: an object lost from the bucket behind the agent's back is uploaded again
/// at the next `--rescan-interval`, without any inotify event.
#[tokio::test(flavor = "multi_thread")]
async fn periodic_rescan_restores_a_lost_object() {
    periodic_rescan(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_rescan_restores_a_lost_object_cassandra() {
    periodic_rescan(Variant::Cassandra).await;
}

async fn periodic_rescan(v: Variant) {
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let d = tempfile::tempdir().unwrap();
    let mut args = vec!["--rescan-interval", "1", "--without-index"];
    args.extend(v.args());
    let agent = Agent::start(&b, &args, &[d.path()]);
    // One file (generic) or one flushed SSTable's Data.db (cassandra) is deleted from the bucket.
    let all = v.load(d.path(), 1, 0, 3, Duration::ZERO).join().unwrap();
    let (key, body) = all
        .iter()
        .find(|(k, _)| k.ends_with("Data.db"))
        .map(|(k, b)| (k.clone(), b.clone()))
        .unwrap_or_else(|| {
            all.iter()
                .next()
                .map(|(k, b)| (k.clone(), b.clone()))
                .unwrap()
        });
    let store = b.store().await;
    wait_object(&store, &key, body.len() as u64).await;
    let c = shared_client(endpoint);
    let deleted = c
        .delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .is_ok();
    let want = BTreeMap::from([(key.clone(), body)]);
    wait_all(&c, bucket, &want, Duration::from_secs(30)).await;
    let (verified, lost) = verify(&c, bucket, &want).await;
    let periodic = agent
        .messages("scan finished")
        .iter()
        .filter(|v| v["why"] == "periodic")
        .count();
    report(&Outcome {
        fault: v.fault("object deleted from the bucket behind the agent"),
        injected: u64::from(deleted),
        expected: want.len(),
        verified,
        lost,
        open_uploads: open_uploads_of(&c, bucket, "").await,
        note: format!("{periodic} periodic rescans ran meanwhile"),
    });
    assert!(deleted, "the object could not be deleted");
    assert_eq!((verified, lost), (1, 0));
    assert!(periodic >= 1, "the periodic rescan brought it back");
    agent.stop();
}

/// Permanent failures: the bucket's grant revoked (access denied), then the bucket deleted (bucket
/// gone). Each is an ERROR with its reason in the log and the metrics, retried slowly, and the file
/// lands once a person has fixed it.
#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_are_loud_and_never_abandoned() {
    permanent_errors(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_are_loud_and_never_abandoned_cassandra() {
    permanent_errors(Variant::Cassandra).await;
}

async fn permanent_errors(v: Variant) {
    // A bucket with a global name, so that the garage CLI can change its grants.
    let garage = std::env::var("TABLESNAP_TEST_GARAGE_BIN").expect("TABLESNAP_TEST_GARAGE_BIN");
    let cfg = PathBuf::from(std::env::var("TABLESNAP_TEST_GARAGE_DIR").expect("GARAGE_DIR"))
        .join("node1/garage.toml");
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    let endpoint = &std::env::var("TABLESNAP_TEST_S3_ENDPOINT").unwrap();
    let bucket = &format!("perm-{:016x}", rand::random::<u64>());
    let cli = |args: &[&str]| {
        let out = Command::new(&garage)
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "garage {args:?}: {out:?}");
    };
    let grant = |verb: &str| {
        cli(&[
            "bucket", verb, "--read", "--write", "--owner", bucket, "--key", &key,
        ]);
    };
    cli(&["bucket", "create", bucket]);
    grant("allow");
    let b = Backend::Garage {
        endpoint: endpoint.clone(),
        bucket: bucket.clone(),
    };
    let c = shared_client(endpoint);
    let d = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--without-index", "--http-listen", &addr];
    args.extend(v.args());
    let agent = Agent::start(&b, &args, &[d.path()]);
    let mut table = sim::Table::new(d.path(), "ks", "perm", sim::Ver::V50Big, 7);
    // Cassandra mode ships a directory at a time: its refusals name the table directory.
    let table_dir = table.dir.display().to_string();
    let mut want = BTreeMap::new();
    let mut hits = 0.0;
    for (i, reason) in ["permission", "not_found"].into_iter().enumerate() {
        if reason == "permission" {
            grant("deny");
        } else {
            // Empty it (the first file), then delete it.
            for k in list_all(&c, bucket).await.unwrap().keys() {
                c.delete_object()
                    .bucket(bucket)
                    .key(k)
                    .send()
                    .await
                    .unwrap();
            }
            cli(&["bucket", "delete", "--yes", bucket]);
            want.clear();
        }
        // What this step writes: one file (generic), or one flushed SSTable (cassandra): the
        // paths whose refusals the log must show, and what the bucket must hold afterwards.
        let written: BTreeMap<String, Vec<u8>> = match v {
            Variant::Generic => {
                let body = data(3000, i as u64);
                let p = write_rename(d.path(), &format!("perm-{i}.db"), &body);
                BTreeMap::from([(p.display().to_string(), body)])
            }
            Variant::Cassandra => {
                let s = table.flush();
                s.names()
                    .into_iter()
                    .map(|n| {
                        let p = table.dir.join(&n);
                        let body = std::fs::read(&p).unwrap();
                        (p.display().to_string(), body)
                    })
                    .collect()
            }
        };
        let refused = |v: &serde_json::Value| {
            v["level"] == "ERROR"
                && v["reason"] == reason
                && v["path"]
                    .as_str()
                    .is_some_and(|p| written.contains_key(p) || p == table_dir)
        };
        agent.wait_for(Duration::from_secs(30), |l| {
            l.iter().filter(|v| refused(v)).count() >= 2
        });
        let m = http_get(&addr, "/metrics").await;
        let n = metric(
            &m,
            &format!("tablesnap_upload_failures_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0);
        assert!(n >= 2.0, "{reason} failures in metrics: {m}");
        hits += n;
        // A person fixes it; the agent has not given up.
        if reason == "permission" {
            grant("allow");
        } else {
            cli(&["bucket", "create", bucket]);
            grant("allow");
        }
        want.extend(
            written
                .into_iter()
                .map(|(path, body)| (format!("testhost:{path}"), body)),
        );
        wait_all(&c, bucket, &want, Duration::from_secs(60)).await;
    }
    // The first step's files went with the deleted bucket; the second's must be there.
    let (verified, lost) = verify(&c, bucket, &want).await;
    report(&Outcome {
        fault: v.fault("access denied, then bucket deleted (permanent errors)"),
        injected: hits as u64,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open_uploads_of(&c, bucket, "").await,
        note: "injected: refused requests counted by the agent's upload_failures metric".into(),
    });
    assert_eq!((verified, lost), (want.len(), 0));
    agent.stop();
}

/// Multipart uploads nobody will finish (left by a killed run) are aborted by the rescans; those
/// of other hosts' prefixes are left alone.
#[tokio::test(flavor = "multi_thread")]
async fn rescans_abort_multipart_uploads_left_by_a_killed_run() {
    multipart_left_open(Variant::Generic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rescans_abort_multipart_uploads_left_by_a_killed_run_cassandra() {
    multipart_left_open(Variant::Cassandra).await;
}

async fn multipart_left_open(v: Variant) {
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let c = shared_client(endpoint);
    let d = tempfile::tempdir().unwrap();
    // Generic: a file in the watched directory. Cassandra: the Data.db of an SSTable in a table
    // directory (one flushed SSTable there, shipped meanwhile).
    let (ours, theirs) = match v {
        Variant::Generic => (
            format!("testhost:{}/left-by-a-killed-run.db", d.path().display()),
            format!("otherhost:{}/in-progress-elsewhere.db", d.path().display()),
        ),
        Variant::Cassandra => {
            let mut table = sim::Table::new(d.path(), "ks", "open", sim::Ver::V50Big, 9);
            table.flush();
            let dir = table.dir.display();
            (
                format!("testhost:{dir}/nb-7-big-Data.db"),
                format!("otherhost:{dir}/nb-7-big-Data.db"),
            )
        }
    };
    let mut planted = 0u64;
    for k in [&ours, &theirs] {
        c.create_multipart_upload()
            .bucket(bucket)
            .key(k)
            .send()
            .await
            .unwrap();
        planted += u64::from(k == &ours);
    }
    // --request-timeout 1: an upload older than 6 s cannot be one this run is still creating.
    let mut args = vec!["--rescan-interval", "1", "--request-timeout", "1"];
    args.extend(v.args());
    let agent = Agent::start(&b, &args, &[d.path()]);
    let start = Instant::now();
    while open_uploads_of(&c, bucket, "testhost:").await != 0
        && start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let theirs_open = open_uploads_of(&c, bucket, "otherhost:").await;
    report(&Outcome {
        fault: v.fault("multipart upload left open by a killed run"),
        injected: planted,
        expected: 0,
        verified: 0,
        lost: 0,
        open_uploads: open_uploads_of(&c, bucket, "testhost:").await,
        note: format!("another host's uploads still open (must stay): {theirs_open}"),
    });
    let open = open_uploads(&c, bucket).await.unwrap_or_default();
    assert_eq!(
        open,
        vec![theirs.clone()],
        "ours aborted, another host's left"
    );
    agent.wait_for(Duration::from_secs(5), |l| {
        l.iter().any(|v| {
            v["message"] == "aborting an unfinished multipart upload" && v["key"] == ours.as_str()
        })
    });
    agent.stop();
}
