//! Test support: the two store backends of the conformance suite, the agent as a child process,
//! and waiting for conditions with a deadline (never a fixed sleep).
#![allow(dead_code, unused_macros)]

pub mod fault;
pub mod sim;
pub mod variant;

/// Runs each named `async fn(Backend)` twice: against a fresh Garage bucket and a fresh local
/// directory store (one conformance suite, two backends).
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod garage {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(super::Backend::garage().await).await } )*
        }
        mod local {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(super::Backend::local()).await } )*
        }
    };
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tablesnap::config::{S3Settings, StoreLocation, UploadSizing, WriteOptions};
use tablesnap::store::{Store, StoreOptions};

/// Where the agent under test writes.
pub enum Backend {
    /// A fresh bucket on the Garage server started by e2e/test.sh.
    Garage { endpoint: String, bucket: String },
    /// A fresh local directory store.
    Local { dir: tempfile::TempDir },
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the Garage server that e2e/test.sh installs and starts \
             (or run `eval \"$(e2e/scripts/garage.sh start /tmp/garage)\"` first)"
        )
    })
}

/// An S3 client for the test Garage, independent of the agent's configuration code.
pub async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(env("AWS_REGION")))
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

impl Backend {
    /// A new, empty bucket on the test Garage.
    pub async fn garage() -> Self {
        let endpoint = env("TABLESNAP_TEST_S3_ENDPOINT");
        let bucket = format!("t-{:016x}", rand::random::<u64>());
        s3_client(&endpoint)
            .await
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create test bucket");
        Backend::Garage { endpoint, bucket }
    }

    /// A new, empty local directory store.
    pub fn local() -> Self {
        Backend::Local {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The BUCKET argument and the flags that reach it.
    pub fn args(&self) -> Vec<String> {
        match self {
            Backend::Garage { endpoint, bucket } => {
                vec![bucket.clone(), "--endpoint-url".into(), endpoint.clone()]
            }
            Backend::Local { dir } => {
                vec![format!("file://{}", dir.path().join("store").display())]
            }
        }
    }

    /// Our own store handle on the same bucket, to read back what the agent wrote.
    pub async fn store(&self) -> Store {
        let loc = match self {
            Backend::Garage { endpoint, bucket } => StoreLocation::S3(S3Settings {
                bucket: bucket.clone(),
                region: Some(env("AWS_REGION")),
                endpoint: Some(endpoint.clone()),
                force_path_style: true,
                credentials: None,
                max_attempts: 3,
                request_timeout: None,
            }),
            Backend::Local { dir } => StoreLocation::Local(dir.path().join("store")),
        };
        let opts = StoreOptions {
            sizing: UploadSizing {
                max_single_put: 5 << 30,
                part_size: 8 << 20,
            },
            write: WriteOptions::default(),
            max_parts_in_flight: 4,
        };
        Store::open(&loc, opts).await.expect("open store")
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Backend::Garage { .. })
    }
}

/// The agent binary as a child process, its JSON log lines collected.
pub struct Agent {
    pub child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    raw: Arc<Mutex<String>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tablesnap")
}

impl Agent {
    /// Starts `tablesnap` with the backend's arguments, then `args`, then `paths`; waits until it
    /// watches every path.
    pub fn start(backend: &Backend, args: &[&str], paths: &[&Path]) -> Agent {
        let mut cmd = Command::new(bin());
        cmd.args(["--log-format", "json", "-n", "testhost"]);
        let b = backend.args();
        cmd.arg(&b[0]);
        cmd.args(&b[1..]);
        cmd.args(paths);
        // After the positionals: `-e`/`-i` take one or more values (argparse's nargs='+').
        cmd.args(args);
        let agent = Agent::spawn(cmd);
        agent.wait_for(Duration::from_secs(30), |l| {
            l.iter().filter(|v| v["message"] == "watching").count() >= paths.len()
        });
        agent
    }

    /// Spawns a prepared command with stderr collected.
    pub fn spawn(mut cmd: Command) -> Agent {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn tablesnap");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(String::new()));
        let (l, r) = (lines.clone(), raw.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                r.lock().unwrap().push_str(&line);
                r.lock().unwrap().push('\n');
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    l.lock().unwrap().push(v);
                }
            }
        });
        Agent { child, lines, raw }
    }

    /// Waits until `cond` holds over the log lines so far; panics with the log after `timeout`.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&[serde_json::Value]) -> bool) {
        let start = Instant::now();
        loop {
            if cond(&self.lines.lock().unwrap()) {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "condition not met within {timeout:?}; agent log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the start-up scan's "scan finished" line and returns it.
    pub fn first_scan(&self, timeout: Duration) -> serde_json::Value {
        self.wait_for(timeout, |l| {
            l.iter().any(|v| v["message"] == "scan finished")
        });
        self.messages("scan finished").remove(0)
    }

    /// Log lines whose message is `msg`.
    pub fn messages(&self, msg: &str) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["message"] == msg)
            .cloned()
            .collect()
    }

    /// The whole stderr so far.
    pub fn log(&self) -> String {
        self.raw.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
    }

    /// Waits for exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the reader thread collect the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "agent did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent with SIGTERM and checks that it exits 0.
    pub fn stop(mut self) -> String {
        self.term();
        let s = self.wait_exit(Duration::from_secs(60));
        assert!(s.success(), "agent exited with {s:?}; log:\n{}", self.log());
        self.log()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the async condition holds; panics after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `key` exists in the store with `size` bytes.
pub async fn wait_object(store: &Store, key: &str, size: u64) {
    eventually(
        Duration::from_secs(30),
        &format!("object {key} with {size} bytes"),
        || async { matches!(store.head(key).await, Ok(Some(h)) if h.size == size) },
    )
    .await
}

/// Waits until `key` exists in the store.
pub async fn wait_key(store: &Store, key: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("object {key}"),
        || async { matches!(store.head(key).await, Ok(Some(_))) },
    )
    .await
}

/// Writes `data` to `dir/.name.writing` then renames it to `dir/name` (IN_MOVED_TO).
pub fn write_rename(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let tmp = dir.join(format!(".{name}.writing-tmp"));
    std::fs::write(&tmp, data).unwrap();
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest).unwrap();
    dest
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn md5_hex(d: &[u8]) -> String {
    tablesnap::checksum::md5_hex(d)
}
