//! Credentials never leave the agent: it runs with known secrets (from the environment and from
//! -k/-s) through connection resets, stalls and 503s, with debug logging, and every output it
//! gives (stderr, /metrics, /healthz, error lines of refused credentials) is searched for them.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::fault::*;
use support::variant::*;
use support::*;

const WARNING: &str = "-s/--aws-secret puts the secret on the command line";

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what} contains a secret ({} chars); text:\n{text}",
            s.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_any_output() {
    secrets_searched(Variant::Generic).await;
}

/// The same in cassandra mode with `--checksum crc64nvme`: flushed SSTables through the same faults.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_any_output_cassandra() {
    secrets_searched(Variant::Cassandra).await;
}

async fn secrets_searched(v: Variant) {
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
    let b = Backend::garage().await;
    let Backend::Garage { endpoint, bucket } = &b else {
        unreachable!()
    };
    let plan = Plan {
        reset_pct: 20,
        stall_pct: 10,
        slowdown_pct: 20,
        flip_pct: 0,
        stall: Duration::from_secs(5),
        rate: None,
        pass_budget: Some((64 << 10, 4 << 20)),
        record: false,
    };
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").into(), plan, 42).await;
    let c = shared_client(endpoint);
    let mut outputs = 0;
    let mut all = BTreeMap::new();

    for (run, on_command_line) in [("env", false), ("flags", true)] {
        let d = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(bin());
        cmd.env("RUST_LOG", "debug");
        cmd.args(["--log-format", "json", "-n", "testhost"]);
        cmd.args(["--request-timeout", "2", "--http-listen", &addr]);
        cmd.args(v.args());
        if on_command_line {
            cmd.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .args(["-k", &key, "-s", &secret]);
        }
        cmd.args([bucket.as_str(), "--endpoint-url", &proxy.endpoint()])
            .arg(d.path());
        let agent = Agent::spawn(cmd);
        agent.wait_for(Duration::from_secs(60), |l| {
            l.iter().any(|v| v["message"] == "watching")
        });
        // About 20 files: small ones (generic), or three flushed SSTables (cassandra).
        let seed = u64::from(on_command_line);
        let want = v
            .load(d.path(), 20, 0, seed, Duration::ZERO)
            .join()
            .unwrap();
        wait_all(&c, bucket, &want, Duration::from_secs(120)).await;
        all.extend(want);
        let metrics = http_get(&addr, "/metrics").await;
        let health = http_get(&addr, "/healthz").await;
        assert!(
            metrics.contains("tablesnap_files_shipped_total"),
            "{metrics}"
        );
        let log = agent.stop();
        assert!(
            log.contains("will retry") || log.contains("storage does not answer"),
            "{run}: the run must have gone through failures"
        );
        assert_eq!(log.contains(WARNING), on_command_line, "{run}: warning");
        for (what, text) in [
            ("stderr", &log),
            ("/metrics", &metrics),
            ("/healthz", &health),
        ] {
            assert_clean(&format!("{run} {what}"), text, &[&secret]);
            outputs += 1;
        }
    }

    // Refused credentials: the error names the problem, never the secret.
    let canary = "tsCANARYwrongSecret0123456789abcdefCANARY0";
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .env("RUST_LOG", "debug")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args([
            "--log-format",
            "json",
            "-n",
            "testhost",
            "-k",
            &key,
            "-s",
            canary,
        ])
        .args([bucket.as_str(), "--endpoint-url", endpoint.as_str()])
        .arg(d.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains(WARNING), "{stderr}");
    assert_clean("refused run stderr", &stderr, &[canary, &secret]);
    outputs += 1;

    let (verified, lost) = verify(&c, bucket, &all).await;
    report(&Outcome {
        fault: v.fault("secrets searched in every output (env, -k/-s, refused key)"),
        injected: outputs,
        expected: all.len(),
        verified,
        lost,
        open_uploads: open_uploads_of(&c, bucket, "").await,
        note: "injected: outputs searched (stderr with debug, /metrics, /healthz, errors)".into(),
    });
    assert_eq!((verified, lost), (all.len(), 0));
}
