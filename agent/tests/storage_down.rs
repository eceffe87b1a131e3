//! S3-only behaviour: a storage endpoint that does not answer is waited for, never a reason to
//! exit; the file arrives once the endpoint is back. A second signal during a long multipart upload
//! exits at once, and the unfinished upload never shows under its key.

mod support;

use std::time::Duration;

use support::*;
use tokio::net::{TcpListener, TcpStream};

/// Forwards every connection on `listener` to `target` (a plain TCP proxy in the test code).
async fn proxy(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_down_at_start_then_back() {
    let Backend::Garage { endpoint, bucket } = Backend::garage().await else {
        unreachable!()
    };
    let target = endpoint.trim_start_matches("http://").to_string();
    // A port with nothing behind it yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = tempfile::tempdir().unwrap();
    let down = Backend::Garage {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: bucket.clone(),
    };
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["--log-format", "json", "-n", "testhost"]);
    cmd.args(down.args());
    cmd.arg(d.path());
    let mut agent = Agent::spawn(cmd);
    agent.wait_for(Duration::from_secs(30), |l| {
        l.iter()
            .filter(|v| v["message"] == "storage does not answer; waiting for it")
            .count()
            >= 2
    });
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent must not exit while storage is down"
    );
    let f = d.path().join("waiting-Data.db");
    std::fs::write(&f, data(4096, 9)).unwrap();

    // Storage comes back.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(proxy(listener, target));
    let store = Backend::Garage { endpoint, bucket }.store().await;
    wait_object(&store, &format!("testhost:{}", f.display()), 4096).await;
    wait_key(&store, &format!("testhost:{}-listdir.json", f.display())).await;
    let status = {
        agent.term();
        agent.wait_exit(Duration::from_secs(30))
    };
    assert!(status.success(), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn second_signal_exits_at_once() {
    let b = Backend::garage().await;
    let d = tempfile::tempdir().unwrap();
    // Small parts, one at a time: the upload of 256 MiB takes many requests.
    let mut agent = Agent::start(
        &b,
        &[
            "--max-upload-size",
            "5",
            "--multipart-chunk-size",
            "5",
            "-t",
            "1",
        ],
        &[d.path()],
    );
    let p = write_rename(d.path(), "slow.db", &data(256 << 20, 12));
    let key = format!("testhost:{}", p.display());
    agent.wait_for(Duration::from_secs(30), |l| {
        l.iter()
            .any(|v| v["message"] == "uploading" && v["key"] == key.as_str())
    });
    agent.term();
    agent.wait_for(Duration::from_secs(10), |l| {
        l.iter().any(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        })
    });
    let started = std::time::Instant::now();
    agent.term();
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{}", agent.log());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(agent.log().contains("second signal"), "{}", agent.log());
    // The interrupted multipart upload never became an object under the final key.
    let store = b.store().await;
    assert!(store.head(&key).await.unwrap().is_none());
}
