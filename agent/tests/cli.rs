//! The command line: every flag of the Python tool parses to the same meaning and default, and bad
//! input gets one line naming the value, exit code 2, and nothing uploaded.

mod support;

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use tablesnap::cli::{Args, ListenEvent};
use tablesnap::config::{Config, Sse, StoreLocation};

fn parse(extra: &[&str]) -> Config {
    let d = std::env::temp_dir();
    // Flags after the positionals: `-e`/`-i` take one or more values, as argparse's `nargs='+'`.
    let mut argv = vec!["tablesnap", "bucket-name", d.to_str().unwrap()];
    argv.extend_from_slice(extra);
    Config::try_from(Args::try_parse_from(argv).expect("parses")).expect("valid")
}

#[test]
fn python_defaults() {
    let c = parse(&[]);
    let StoreLocation::S3(s3) = &c.store else {
        panic!("s3 expected")
    };
    assert_eq!(s3.bucket, "bucket-name");
    assert_eq!(s3.credentials, None, "no -k/-s: the AWS credential chain");
    assert_eq!(s3.endpoint, None);
    assert_eq!(
        c.keys.data_key(std::path::Path::new("/x")),
        format!("{}:/x", tablesnap::key::fqdn())
    );
    assert!(!c.recursive && !c.auto_add && !c.backup && !c.md5_on_start && !c.delete_on_backup);
    assert!(c.with_index);
    assert_eq!(c.threads, 4);
    assert_eq!(
        c.listen_events,
        vec![ListenEvent::IN_MOVED_TO, ListenEvent::IN_CLOSE_WRITE]
    );
    assert_eq!(c.sizing.max_single_put, 5120 << 20);
    assert_eq!(c.sizing.part_size, 256 << 20);
    assert_eq!(s3.max_attempts, 1, "--retries defaults to 1 as in Python");
    assert_eq!(c.write.storage_class, None);
    assert_eq!(c.write.sse, None);
    assert!(c.filter.accepts("/a/b-Data.db") && !c.filter.accepts("/a/b-tmp-Data.db"));
}

/// The fault-handling flags (not in the Python tool): defaults, and 0 turning rescans off.
#[test]
fn rescan_interval_and_request_timeout() {
    use std::time::Duration;
    let c = parse(&[]);
    assert_eq!(c.rescan_interval, Some(Duration::from_secs(300)));
    let StoreLocation::S3(s3) = &c.store else {
        panic!("s3 expected")
    };
    assert_eq!(s3.request_timeout, Some(Duration::from_secs(120)));
    let c = parse(&["--rescan-interval", "0", "--request-timeout", "7"]);
    assert_eq!(c.rescan_interval, None);
    let StoreLocation::S3(s3) = &c.store else {
        panic!("s3 expected")
    };
    assert_eq!(s3.request_timeout, Some(Duration::from_secs(7)));
}

/// Each Python flag, short and long, and what it must mean.
#[test]
fn python_flags_table() {
    type Check = fn(&Config) -> bool;
    let table: Vec<(&[&str], Check)> = vec![
        (&["-k", "AKID", "-s", "SECRET"], |c| {
            matches!(&c.store, StoreLocation::S3(s) if s.credentials.as_ref().is_some_and(|k| k.access_key == "AKID" && k.secret_key == "SECRET"))
                && c.secret_on_command_line
        }),
        (
            &[
                "--aws-key",
                "AKID",
                "--aws-secret",
                "S",
                "--aws-token",
                "TOK",
            ],
            |c| matches!(&c.store, StoreLocation::S3(s) if s.credentials.as_ref().is_some_and(|k| k.session_token.as_deref() == Some("TOK"))),
        ),
        (
            &["--aws-region", "eu-central-2"],
            |c| matches!(&c.store, StoreLocation::S3(s) if s.region.as_deref() == Some("eu-central-2")),
        ),
        (&["-r"], |c| c.recursive),
        (&["--recursive"], |c| c.recursive),
        (&["-a"], |c| c.auto_add),
        (&["--auto-add"], |c| c.auto_add),
        (&["-B"], |c| c.backup),
        (&["--backup"], |c| c.backup),
        (&["-R"], |c| {
            c.write.storage_class.as_deref() == Some("REDUCED_REDUNDANCY")
        }),
        (&["--reduced-redundancy"], |c| {
            c.write.storage_class.as_deref() == Some("REDUCED_REDUNDANCY")
        }),
        (&["-p", "pre/"], |c| {
            c.keys
                .data_key(std::path::Path::new("/x"))
                .starts_with("pre/")
        }),
        (&["--prefix", "pre/"], |c| {
            c.keys
                .data_key(std::path::Path::new("/x"))
                .starts_with("pre/")
        }),
        (&["--without-index"], |c| !c.with_index),
        (&["--with-sse"], |c| c.write.sse == Some(Sse::Aes256)),
        (&["--keyname-separator", "|", "-n", "h"], |c| {
            c.keys.data_key(std::path::Path::new("/x")) == "h|/x"
        }),
        (&["-t", "9"], |c| c.threads == 9),
        (&["--threads", "9"], |c| c.threads == 9),
        (&["-n", "node7"], |c| c.keys.name() == "node7"),
        (&["--name", "node7"], |c| c.keys.name() == "node7"),
        (&["--md5-on-start"], |c| c.md5_on_start),
        (&["--listen-events", "IN_CREATE"], |c| {
            c.listen_events == vec![ListenEvent::IN_CREATE]
        }),
        (
            &[
                "--listen-events",
                "IN_MOVED_TO",
                "--listen-events",
                "IN_CLOSE_WRITE",
            ],
            |c| c.listen_events == vec![ListenEvent::IN_MOVED_TO, ListenEvent::IN_CLOSE_WRITE],
        ),
        (&["--delete-on-backup"], |c| c.delete_on_backup),
        (&["-e", "Index"], |c| {
            !c.filter.accepts("/a-Index.db") && c.filter.accepts("/a-tmp-Data.db")
        }),
        (&["--exclude", "Index"], |c| {
            !c.filter.accepts("/a-Index.db")
        }),
        (&["-i", "Data"], |c| {
            c.filter.accepts("/a-Data.db") && !c.filter.accepts("/a-Index.db")
        }),
        (&["--include", "Data"], |c| !c.filter.accepts("/a-Index.db")),
        (&["--max-upload-size", "100"], |c| {
            c.sizing.max_single_put == 100 << 20
        }),
        (&["--multipart-chunk-size", "5"], |c| {
            c.sizing.part_size == 5 << 20
        }),
        (
            &["--retries", "7"],
            |c| matches!(&c.store, StoreLocation::S3(s) if s.max_attempts == 7),
        ),
        // Issue 15.2: invocations the Python tools accept. `--retries 0` is its documented
        // default (one attempt).
        (
            &["--retries", "0"],
            |c| matches!(&c.store, StoreLocation::S3(s) if s.max_attempts == 1),
        ),
        // Unambiguous abbreviations of long options, as argparse accepts them.
        (&["--md5"], |c| c.md5_on_start),
        (&["--recurs", "--auto", "--back"], |c| {
            c.recursive && c.auto_add && c.backup
        }),
        (&["--delete"], |c| c.delete_on_backup),
        (&["--without"], |c| !c.with_index),
        (&["--keyname", "|", "-n", "h"], |c| {
            c.keys.data_key(std::path::Path::new("/x")) == "h|/x"
        }),
        // Several values after one -e or -i (nargs='+').
        (&["-e", "Index", "Filter"], |c| {
            !c.filter.accepts("/a-Index.db")
                && !c.filter.accepts("/a-Filter.db")
                && c.filter.accepts("/a-Data.db")
        }),
        (&["-i", "Data", "TOC"], |c| {
            c.filter.accepts("/a-Data.db")
                && c.filter.accepts("/a-TOC.txt")
                && !c.filter.accepts("/a-Index.db")
        }),
        // Ours is better than Python's accident: `-e A -e B` keeps both (Python keeps the last).
        (&["-e", "Index", "-e", "Filter"], |c| {
            !c.filter.accepts("/a-Index.db") && !c.filter.accepts("/a-Filter.db")
        }),
        // Additions of ours.
        (
            &["--endpoint-url", "http://127.0.0.1:3900"],
            |c| matches!(&c.store, StoreLocation::S3(s) if s.endpoint.as_deref() == Some("http://127.0.0.1:3900") && s.force_path_style),
        ),
        (
            &[
                "--endpoint-url",
                "https://s3.example.com",
                "--virtual-hosted-style",
            ],
            |c| matches!(&c.store, StoreLocation::S3(s) if !s.force_path_style),
        ),
        (&["--storage-class", "STANDARD_IA", "-R"], |c| {
            c.write.storage_class.as_deref() == Some("STANDARD_IA")
        }),
        (&["--sse-kms-key-id", "k1"], |c| {
            c.write.sse == Some(Sse::Kms("k1".into()))
        }),
    ];
    for (flags, check) in table {
        let c = parse(flags);
        assert!(check(&c), "flags {flags:?} parsed to {c:?}");
    }
}

/// An abbreviation that fits two long options is refused, as argparse refuses it.
#[test]
fn ambiguous_abbreviation_is_refused() {
    let d = std::env::temp_dir();
    // --with-sse and --without-index
    let e = Args::try_parse_from(["tablesnap", "b", d.to_str().unwrap(), "--with"]).unwrap_err();
    assert!(e.to_string().contains("--with"), "{e}");
}

/// tablechop: `-j/--parallel`, abbreviations and a negative AGE, as the Python tool takes them;
/// tableslurp: abbreviations.
#[test]
fn tablechop_and_tableslurp_take_python_invocations() {
    use tablesnap::restore::args::SlurpArgs;
    use tablesnap::retention::args::{ChopArgs, ChopConfig};
    let a = ChopArgs::try_parse_from([
        "tablechop",
        "--parallel",
        "3",
        "--deb",
        "--list",
        "file:///tmp/x",
        "/var/lib/cassandra/data",
        "-1",
    ])
    .expect("parses");
    assert_eq!(a.jobs.get(), 3);
    assert!(a.debug && a.list_deletes);
    let c = ChopConfig::try_from(a).unwrap();
    assert_eq!(
        c.rule.age, -86_400,
        "a negative age keeps only the newest indexes"
    );
    let s = SlurpArgs::try_parse_from([
        "tableslurp",
        "--recur",
        "--preserve",
        "file:///tmp/x",
        "/var/lib/cassandra/data",
        "/tmp/target",
    ])
    .expect("parses");
    assert!(s.recursive && s.preserve);
}

#[test]
fn repeated_flags_are_accepted_as_in_argparse() {
    assert!(parse(&["-B", "-B", "-r", "-r"]).backup);
}

#[test]
fn file_url_is_a_local_store() {
    let d = tempfile::tempdir().unwrap();
    let c = Config::try_from(
        Args::try_parse_from([
            "tablesnap",
            "file:///var/backups/x",
            d.path().to_str().unwrap(),
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        c.store,
        StoreLocation::Local(PathBuf::from("/var/backups/x"))
    );
}

/// Runs the binary with `args`; returns (exit code, stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(support::bin())
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_one_line_exit_2_nothing_written() {
    let d = tempfile::tempdir().unwrap();
    let watched = d.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    std::fs::write(watched.join("existing-Data.db"), b"x").unwrap();
    let afile = d.path().join("a-file");
    std::fs::write(&afile, b"x").unwrap();
    let store = d.path().join("store");
    let bucket = format!("file://{}", store.display());
    let w = watched.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&bucket, w, "-i", "(unclosed"], "(unclosed"),
        (vec![&bucket, w, "-e", "[z-a]"], "[z-a]"),
        (vec![&bucket, w, "-i", "a", "-e", "b"], "--exclude"),
        (vec![&bucket, "/no/such/dir"], "/no/such/dir"),
        (vec![&bucket, afile.to_str().unwrap()], "a-file"),
        (vec!["-t", "0", &bucket, w], "'0'"),
        (
            vec!["--multipart-chunk-size", "4", &bucket, w],
            "--multipart-chunk-size 4",
        ),
        (
            vec!["--multipart-chunk-size", "5121", &bucket, w],
            "--multipart-chunk-size 5121",
        ),
        (
            vec!["--max-upload-size", "5121", &bucket, w],
            "--max-upload-size 5121",
        ),
        (
            vec!["--listen-events", "IN_DELETE", &bucket, w],
            "IN_DELETE",
        ),
        (
            vec!["--request-timeout", "0", &bucket, w],
            "--request-timeout 0",
        ),
        (
            vec!["--endpoint-url", "not a url", "bucket-x", w],
            "not a url",
        ),
        (
            vec!["--endpoint-url", "ftp://host", "bucket-x", w],
            "ftp://host",
        ),
        (vec!["-B", "file://host/x", w], "file://host/x"),
        (vec!["-B", "s3://bucket", w], "s3://bucket"),
        (vec!["-B", "Bad Bucket!", w], "Bad Bucket!"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["-B"];
        full.extend(args.iter().copied());
        let (code, err) = run(&full);
        assert_eq!(code, 2, "{args:?}: exit {code}, stderr: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected: {err}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: {err:?} does not name {needle:?}"
        );
        assert!(
            !store.exists(),
            "{args:?}: something was written to the store"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_bucket_and_refused_credentials_exit_2_with_the_server_reason() {
    let endpoint = std::env::var("TABLESNAP_TEST_S3_ENDPOINT")
        .expect("TABLESNAP_TEST_S3_ENDPOINT (run e2e/test.sh)");
    let d = tempfile::tempdir().unwrap();
    let w = d.path().to_str().unwrap();
    let (code, err) = run(&["-B", "--endpoint-url", &endpoint, "no-such-bucket-ts", w]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no-such-bucket-ts") && err.contains("not found"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let out = Command::new(support::bin())
        .args(["-B", "--endpoint-url", &endpoint, "tablesnap-test", w])
        .env("AWS_ACCESS_KEY_ID", "GK000000000000000000000000")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "0000000000000000000000000000000000000000000000000000000000000000",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        !err.contains("0000000000000000000000000000000000000000000000000000000000000000"),
        "secret leaked: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_bucket_keeps_running_and_ships_once_the_bucket_exists() {
    let endpoint = std::env::var("TABLESNAP_TEST_S3_ENDPOINT")
        .expect("TABLESNAP_TEST_S3_ENDPOINT (run e2e/test.sh)");
    let bucket = format!("late-{:012x}", rand::random::<u64>() >> 16);
    let d = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(support::bin());
    cmd.args([
        "--log-format",
        "json",
        "-n",
        "testhost",
        "--wait-for-bucket",
        "--http-listen",
        &addr,
        "--endpoint-url",
        &endpoint,
        &bucket,
    ])
    .arg(d.path());
    let mut agent = support::Agent::spawn(cmd);
    agent.wait_for(std::time::Duration::from_secs(30), |l| {
        l.iter().any(|v| {
            v["level"] == "ERROR"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("bucket refuses us"))
        })
    });
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "it must not exit: {}",
        agent.log()
    );
    // Alive while it waits: a liveness probe must not restart it into a crash loop (the
    // operator's sidecar probes /healthz; before, it was served only after the bucket check).
    let (health, _) = support::fault::http_response(&addr, "/healthz").await;
    assert_eq!(health, 200, "/healthz while waiting for the bucket");
    // ...but its report says it protects nothing yet: no recovery point while it waits.
    let (_, body) = support::fault::http_response(&addr, "/status").await;
    let r: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        (&r["storageReady"], &r["recoveryPoint"]),
        (&false.into(), &serde_json::Value::Null),
        "{r}"
    );
    let f = d.path().join("a-Data.db");
    std::fs::write(&f, b"late bucket").unwrap();
    support::s3_client(&endpoint)
        .await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let store = support::Backend::Garage { endpoint, bucket }.store().await;
    support::wait_object(&store, &format!("testhost:{}", f.display()), 11).await;
    agent.term();
    assert!(
        agent
            .wait_exit(std::time::Duration::from_secs(30))
            .success()
    );
}
