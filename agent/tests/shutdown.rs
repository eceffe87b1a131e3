//! Staged shutdown with work still queued: every queued file lands before the agent exits (within
//! `--shutdown-timeout`), what cannot land in time is logged by name; and the recovery-point
//! metric while a file waits.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::fault::*;
use support::*;

const T: Duration = Duration::from_secs(60);

/// The same bucket behind a 256 KiB/s link (a 16 MiB file takes about a minute): the proxy, kept
/// alive by the caller, and the backend that goes through it.
async fn slow_link(b: &Backend) -> (Proxy, Backend) {
    let Backend::Garage { endpoint, bucket } = b else {
        unreachable!()
    };
    let proxy = Proxy::start(
        endpoint.trim_start_matches("http://").into(),
        Plan::clean(Some(256 << 10)),
        1,
    )
    .await;
    let via = Backend::Garage {
        endpoint: proxy.endpoint(),
        bucket: bucket.clone(),
    };
    (proxy, via)
}

/// SIGTERM right after a burst, with one upload at a time: the queue is drained before exit, and
/// an independent client finds every file in the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ships_every_queued_file_before_exit() {
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let d = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        &b,
        &["-t", "1", "--without-index", "--shutdown-timeout", "120"],
        &[d.path()],
    );
    let mut want = BTreeMap::new();
    for i in 0..200 {
        let body = data(50_000 + i, i as u64);
        let p = write_rename(d.path(), &format!("q-{i:04}.db"), &body);
        want.insert(format!("testhost:{}", p.display()), body);
    }
    // Every file has been seen (queued) but not all shipped when the signal comes.
    let last = format!("{}/q-0199.db", d.path().display());
    agent.wait_for(T, |l| {
        l.iter().any(|v| {
            v["message"] == "uploaded" && v["key"].as_str().is_some_and(|k| k.contains("q-0000"))
        })
    });
    let shipped_before = agent.messages("uploaded").len();
    agent.term();
    let status = agent.wait_exit(Duration::from_secs(150));
    let log = agent.log();
    assert!(status.success(), "exit {status:?}:\n{log}");
    assert!(
        shipped_before < want.len(),
        "the signal came with work queued ({shipped_before} of {} shipped)",
        want.len()
    );
    assert!(log.contains("all uploads finished"), "{log}");
    let c = shared_client(endpoint);
    let (verified, lost) = verify(&c, bucket, &want).await;
    assert_eq!((verified, lost), (want.len(), 0), "last queued: {last}");
}

/// A grace period too short for a throttled upload: the agent exits in time and names the file
/// it could not ship.
#[tokio::test(flavor = "multi_thread")]
async fn files_not_shipped_in_the_grace_period_are_named() {
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let (_proxy, via) = slow_link(&b).await;
    let d = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        &via,
        &["--without-index", "--shutdown-timeout", "2"],
        &[d.path()],
    );
    let p = write_rename(d.path(), "slow-Data.db", &data(16 << 20, 5));
    let path = p.display().to_string();
    agent.wait_for(T, |l| {
        l.iter()
            .any(|v| v["message"] == "uploading" && v["key"] == format!("testhost:{path}"))
    });
    agent.term();
    let status = agent.wait_exit(T);
    assert!(status.success(), "exit {status:?}:\n{}", agent.log());
    let named = agent
        .messages("not shipped before exit")
        .iter()
        .any(|v| v["path"] == path.as_str());
    assert!(named, "the unshipped file is named:\n{}", agent.log());
    let c = shared_client(endpoint);
    assert!(
        c.head_object()
            .bucket(bucket)
            .key(format!("testhost:{path}"))
            .send()
            .await
            .is_err(),
        "nothing partial under the key"
    );
}

/// The recovery-point metric (`tablesnap_oldest_unshipped_seconds`) grows while a file waits:
/// a 16 MiB file through a 256 KiB/s link takes about a minute.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_point_grows_while_a_file_waits() {
    let b = Backend::garage().await;
    let (_proxy, via) = slow_link(&b).await;
    let d = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start(
        &via,
        &["--without-index", "--http-listen", &addr],
        &[d.path()],
    );
    let age = || async {
        metric(
            &http_get(&addr, "/metrics").await,
            "tablesnap_oldest_unshipped_seconds",
        )
    };
    assert_eq!(age().await, Some(0.0), "nothing waits yet");
    write_rename(d.path(), "slow-Data.db", &data(16 << 20, 6));
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        let a = age().await.expect("metric present");
        seen.push(a);
        if a >= 3.0 {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the recovery point did not grow: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "it only grows while the file waits: {seen:?}"
    );
    drop(agent);
}
