//! Fault injection for the fault suite: a private Garage whose nodes the test kills and restarts,
//! a TCP fault proxy (resets, stalls, 503 SlowDown, throttling), a seeded random source, checks
//! that read every object back, and the machine-readable report (`TABLESNAP_FAULT_REPORT`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A small seeded random source (xorshift64*), so that a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

/// The seed of this run: `TABLESNAP_FAULT_SEED` or a fixed default, printed so it can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("TABLESNAP_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_126);
    eprintln!("{test}: seed {s} (set TABLESNAP_FAULT_SEED to replay another)");
    s
}

/// One line of the fault report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The fault, in words.
    pub fault: String,
    /// How many times it was injected.
    pub injected: u64,
    /// Files that had to land.
    pub expected: usize,
    /// Files read back from the bucket identical to the disk.
    pub verified: usize,
    /// Files missing or different.
    pub lost: usize,
    /// Multipart uploads of the agent still open in the bucket at the end (measured).
    pub open_uploads: usize,
    /// Anything else worth a column.
    pub note: String,
}

/// Appends `o` as one JSON line to `$TABLESNAP_FAULT_REPORT`, when set.
pub fn report(o: &Outcome) {
    eprintln!("fault report: {}", serde_json::to_string(o).unwrap());
    let Ok(path) = std::env::var("TABLESNAP_FAULT_REPORT") else {
        return;
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("TABLESNAP_FAULT_REPORT {path}: {e}"));
    writeln!(f, "{}", serde_json::to_string(o).unwrap()).unwrap();
}

/// A Garage of `nodes` nodes of its own (replication factor `nodes`), started by
/// e2e/scripts/garage.sh under a temporary directory; the shared one is never touched.
pub struct Garage {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
    pub nodes: usize,
    children: Mutex<Vec<std::process::Child>>,
}

pub fn garage_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/scripts/garage.sh")
}

impl Garage {
    pub fn start(nodes: usize) -> Garage {
        // garage.sh picks free ports by binding and releasing them: two starts at once can pick
        // the same port, so starts are serialised, and one that lost a port race is retried.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new(garage_sh())
                .arg("start")
                .arg(dir.path())
                .arg(nodes.to_string())
                .output()
                .expect("run garage.sh");
            if !out.status.success() {
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                let _ = Command::new(garage_sh())
                    .arg("stop")
                    .arg(dir.path())
                    .output();
                continue;
            }
            let env = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("export "))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return Garage {
                dir,
                env,
                nodes,
                children: Mutex::default(),
            };
        }
        panic!("garage.sh start failed three times; last error: {last}");
    }

    pub fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("garage env lacks {k}"))
    }

    fn node(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("node{n}"))
    }

    pub fn port(&self, n: usize) -> u16 {
        std::fs::read_to_string(self.node(n).join("s3_port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn endpoint(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", self.port(n))
    }

    fn pid(&self, n: usize) -> i32 {
        std::fs::read_to_string(self.node(n).join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// SIGKILLs node `n` and waits until its process is gone.
    pub fn kill(&self, n: usize) {
        let pid = self.pid(n);
        let p = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        // Our own children must be reaped; the first ones belong to init.
        for c in self.children.lock().unwrap().iter_mut() {
            if c.id() as i32 == pid {
                let _ = c.wait();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z');
            if gone {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "garage node {n} (pid {pid}) did not die"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts node `n` again with its own configuration and data, and waits until it accepts
    /// connections on its S3 port.
    pub fn restart(&self, n: usize) {
        let nd = self.node(n);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(nd.join("log"))
            .unwrap();
        let child = Command::new(self.var("TABLESNAP_TEST_GARAGE_BIN"))
            .arg("-c")
            .arg(nd.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restart garage");
        std::fs::write(nd.join("pid"), child.id().to_string()).unwrap();
        self.children.lock().unwrap().push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port(n))).is_err() {
            assert!(
                Instant::now() < deadline,
                "garage node {n} did not come back"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment the agent needs to reach this Garage (credentials, region).
    pub fn agent_env(&self) -> Vec<(String, String)> {
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
            .iter()
            .map(|k| (k.to_string(), self.var(k).to_string()))
            .collect()
    }

    pub fn bucket(&self) -> String {
        self.var("TABLESNAP_TEST_BUCKET").to_string()
    }

    pub async fn client(&self, node: usize) -> aws_sdk_s3::Client {
        client(
            &self.endpoint(node),
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
            self.var("AWS_REGION"),
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new(garage_sh())
            .arg("stop")
            .arg(self.dir.path())
            .output();
        for c in self.children.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An S3 client with explicit credentials, independent of the agent's code.
pub fn client(endpoint: &str, key: &str, secret: &str, region: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "fault-test",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The client of the shared test Garage (env of e2e/test.sh).
pub fn shared_client(endpoint: &str) -> aws_sdk_s3::Client {
    let v = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    client(
        endpoint,
        &v("AWS_ACCESS_KEY_ID"),
        &v("AWS_SECRET_ACCESS_KEY"),
        &v("AWS_REGION"),
    )
}

/// Every key in `bucket` with its size (all pages); `None` while the server does not answer.
pub async fn list_all(c: &aws_sdk_s3::Client, bucket: &str) -> Option<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .ok()?;
        for o in page.contents() {
            out.insert(o.key()?.to_string(), o.size().unwrap_or(-1));
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Some(out),
        }
    }
}

/// Open multipart uploads in `bucket`; `None` while the server does not answer.
pub async fn open_uploads(c: &aws_sdk_s3::Client, bucket: &str) -> Option<Vec<String>> {
    let out = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .ok()?;
    Some(
        out.uploads()
            .iter()
            .map(|u| u.key().unwrap_or("?").to_string())
            .collect(),
    )
}

/// Waits until every `(key, size)` of `want` is listed in `bucket`, at most `timeout`; returns
/// whether they all are. It never panics: the caller measures what landed, writes its report row,
/// and only then asserts, so that a run that loses files still reports them.
pub async fn wait_all(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    want: &BTreeMap<String, Vec<u8>>,
    timeout: Duration,
) -> bool {
    let start = Instant::now();
    loop {
        let missing: Option<Vec<&String>> = list_all(c, bucket).await.map(|have| {
            want.iter()
                .filter(|(k, d)| have.get(*k) != Some(&(d.len() as i64)))
                .map(|(k, _)| k)
                .collect()
        });
        match missing {
            Some(m) if m.is_empty() => return true,
            Some(m) if start.elapsed() >= timeout => {
                eprintln!(
                    "{} of {} objects missing after {timeout:?}, e.g. {:?}",
                    m.len(),
                    want.len(),
                    &m[..m.len().min(5)]
                );
                return false;
            }
            None if start.elapsed() >= timeout => {
                eprintln!("bucket not listable within {timeout:?}");
                return false;
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Open multipart uploads in `bucket` whose key starts with `prefix` (the agent's `-n` name);
/// counts an unanswering server as unknown, reported as `usize::MAX` so that it cannot pass.
pub async fn open_uploads_of(c: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> usize {
    match open_uploads(c, bucket).await {
        Some(v) => v.iter().filter(|k| k.starts_with(prefix)).count(),
        None => usize::MAX,
    }
}

/// Reads every object of `want` back and compares it with the bytes written: returns (verified,
/// lost) where lost counts missing or different objects.
pub async fn verify(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    want: &BTreeMap<String, Vec<u8>>,
) -> (usize, usize) {
    let mut ok = 0;
    let mut lost = Vec::new();
    for (key, d) in want {
        let got = match c.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => o.body.collect().await.map(|b| b.into_bytes().to_vec()).ok(),
            Err(_) => None,
        };
        if got.as_deref() == Some(&d[..]) {
            ok += 1;
        } else {
            lost.push(key.clone());
        }
    }
    if !lost.is_empty() {
        eprintln!("lost or different: {lost:?}");
    }
    (ok, lost.len())
}

/// GET `path` from an HTTP server on `addr`; the body.
pub async fn http_get(addr: &str, path: &str) -> String {
    http_response(addr, path).await.1
}

/// GET `path` from the agent's HTTP server at `addr`: the status code and the body.
pub async fn http_response(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{addr} does not serve {path}: {e}"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response from {addr}{path}: {out}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of metric line `name` (exact name with labels) in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the fault proxy does, in percent of new connections; the rest pass (and are cut after a
/// random byte budget, so that connections keep turning over and faults keep coming).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub reset_pct: u64,
    pub stall_pct: u64,
    pub slowdown_pct: u64,
    /// Percent of request bodies that get one byte flipped in transit (every connection is then
    /// a flipping one; the other faults are off).
    pub flip_pct: u64,
    /// How long a stalled connection is held silent (longer than the agent's request timeout).
    pub stall: Duration,
    /// Bytes per second from client to server, if throttled.
    pub rate: Option<u64>,
    /// Cut passing connections after a random budget of bytes in this range, if set.
    pub pass_budget: Option<(u64, u64)>,
    /// Keep the head (request line and headers) of every request in [`Injected::heads`]; every
    /// connection then goes through the request parser (with `flip_pct` 0 it changes nothing).
    pub record: bool,
}

impl Plan {
    /// A plain (optionally throttled) pipe.
    pub fn clean(rate: Option<u64>) -> Plan {
        Plan {
            reset_pct: 0,
            stall_pct: 0,
            slowdown_pct: 0,
            flip_pct: 0,
            stall: Duration::ZERO,
            rate,
            pass_budget: None,
            record: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pass,
    Reset,
    Stall,
    SlowDown,
    Flip,
}

/// Counts of the faults the proxy injected.
#[derive(Debug, Default)]
pub struct Injected {
    pub connections: AtomicU64,
    pub resets: AtomicU64,
    pub stalls: AtomicU64,
    pub slowdowns: AtomicU64,
    pub budget_cuts: AtomicU64,
    /// Request bodies that had a byte flipped.
    pub flips: AtomicU64,
    /// Request heads, with `Plan::record`.
    pub heads: Mutex<Vec<String>>,
}

/// A TCP proxy on a loopback port in front of `target` that injects faults by `plan`.
pub struct Proxy {
    pub port: u16,
    pub injected: Arc<Injected>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: String, plan: Plan, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let injected = Arc::new(Injected::default());
        let inj = injected.clone();
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let n = inj.connections.fetch_add(1, Ordering::Relaxed);
                let (kind, budget) = {
                    let mut r = rng.lock().unwrap();
                    let budget = plan.pass_budget.map(|(lo, hi)| r.range(lo, hi));
                    let roll = r.range(0, 100);
                    // The first connections get one fault of each kind planned, whatever the dice say.
                    let kind = match n {
                        _ if plan.flip_pct > 0 || plan.record => Kind::Flip,
                        0 if plan.stall_pct > 0 => Kind::Stall,
                        1 if plan.slowdown_pct > 0 => Kind::SlowDown,
                        2 if plan.reset_pct > 0 => Kind::Reset,
                        _ if roll < plan.reset_pct => Kind::Reset,
                        _ if roll < plan.reset_pct + plan.stall_pct => Kind::Stall,
                        _ if roll < plan.reset_pct + plan.stall_pct + plan.slowdown_pct => {
                            Kind::SlowDown
                        }
                        _ => Kind::Pass,
                    };
                    let early = r.range(512, 256 << 10);
                    (
                        kind,
                        if kind == Kind::Reset {
                            Some(early)
                        } else {
                            budget
                        },
                    )
                };
                let inj = inj.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    match kind {
                        // Each counter counts a fault that hit a request: a reset only when the
                        // connection was torn mid-request, a stall only once a request arrived,
                        // a SlowDown only once it was answered.
                        Kind::Reset => {
                            pipe(inbound, &target, plan.rate, budget, Some(&inj.resets)).await;
                        }
                        Kind::Stall => {
                            if stall(inbound, plan.stall).await {
                                inj.stalls.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Kind::SlowDown => {
                            if slow_down(inbound).await {
                                inj.slowdowns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Kind::Pass => {
                            pipe(inbound, &target, plan.rate, budget, Some(&inj.budget_cuts)).await
                        }
                        Kind::Flip => {
                            flip_bytes(inbound, &target, plan.flip_pct, seed ^ n, &inj).await
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            injected,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; client → server throttled to `rate` and cut with a reset after `budget`
/// bytes.
async fn pipe(
    inbound: TcpStream,
    target: &str,
    rate: Option<u64>,
    budget: Option<u64>,
    cuts: Option<&AtomicU64>,
) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        reset(&inbound);
        return;
    };
    let (mut ci, mut co) = inbound.into_split();
    let (mut si, mut so) = outbound.into_split();
    let down = async {
        let _ = tokio::io::copy(&mut si, &mut co).await;
    };
    let up = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut sent = 0u64;
        let start = Instant::now();
        loop {
            let want = match budget {
                Some(b) if sent >= b => return true,
                Some(b) => ((b - sent) as usize).min(buf.len()),
                None => buf.len(),
            };
            let n = match ci.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if so.write_all(&buf[..n]).await.is_err() {
                return false;
            }
            sent += n as u64;
            if let Some(r) = rate {
                let due = Duration::from_secs_f64(sent as f64 / r as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    };
    let cut = tokio::select! {
        c = up => c,
        _ = down => false,
    };
    if cut {
        if let Some(c) = cuts {
            c.fetch_add(1, Ordering::Relaxed);
        }
        // A reset, not a clean close: both sides see the connection torn mid-request.
        reset(&ci.reunite(co).unwrap());
        reset(&si.reunite(so).unwrap());
    }
}

/// Copies both ways, and flips one byte in the middle of each request body (a `Content-Length`
/// above 0) with probability `pct`, as a bad NIC or a broken middlebox would; counts each flip.
/// Requests on one connection follow each other (keep-alive): each is parsed in turn.
async fn flip_bytes(inbound: TcpStream, target: &str, pct: u64, seed: u64, inj: &Injected) {
    let flips = &inj.flips;
    let Ok(outbound) = TcpStream::connect(target).await else {
        reset(&inbound);
        return;
    };
    let (mut ci, mut co) = inbound.into_split();
    let (mut si, mut so) = outbound.into_split();
    let down = async {
        let _ = tokio::io::copy(&mut si, &mut co).await;
    };
    let up = async {
        let mut rng = Rng::new(seed);
        let mut head = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut body_left = 0usize;
        let mut flip_at: Option<usize> = None;
        loop {
            let n = match ci.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut i = 0;
            while i < n {
                if body_left > 0 {
                    let take = body_left.min(n - i);
                    if let Some(f) = flip_at {
                        if f < take {
                            buf[i + f] ^= 0x01;
                            flips.fetch_add(1, Ordering::Relaxed);
                            flip_at = None;
                        } else {
                            flip_at = Some(f - take);
                        }
                    }
                    body_left -= take;
                    i += take;
                } else {
                    head.push(buf[i]);
                    i += 1;
                    if head.ends_with(b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                        inj.heads.lock().unwrap().push(text.clone());
                        body_left = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        flip_at =
                            (body_left > 0 && rng.range(0, 100) < pct).then_some(body_left / 2);
                        head.clear();
                    }
                }
            }
            if so.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}

/// Makes the close of `s` a reset (RST). A zero linger time never blocks, which is what tokio's
/// deprecation of `set_linger` warns about.
#[allow(deprecated)]
fn reset(s: &TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
}

/// Reads and discards what the client sends, answers nothing for `how_long`, then closes.
/// Returns whether a request arrived (the stall hit one).
async fn stall(mut inbound: TcpStream, how_long: Duration) -> bool {
    let mut buf = vec![0u8; 64 << 10];
    let mut got = false;
    let _ = tokio::time::timeout(how_long, async {
        while let Ok(n) = inbound.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got = true;
        }
    })
    .await;
    got
}

/// Reads one request (head and body, unless it asks `Expect: 100-continue`) and answers
/// 503 SlowDown, as S3 does when throttling.
/// Returns whether the 503 reached the client.
async fn slow_down(mut inbound: TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let body_start = loop {
        match inbound.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 1 << 20 {
            return false;
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_string())
        })
    };
    if header("expect").is_none_or(|v| v != "100-continue") {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut have = head.len() - body_start;
        while have < len {
            match inbound.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => have += n,
            }
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    let resp = format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = inbound.write_all(resp.as_bytes()).await.is_ok();
    let _ = inbound.shutdown().await;
    sent
}

/// Lowers `fs.inotify.max_queued_events` and puts the old value back when dropped (also when the
/// test panics). The limit binds inotify instances created while it is in force.
pub struct QueuedEventsLimit {
    old: String,
}

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

impl QueuedEventsLimit {
    pub fn set(n: u32) -> QueuedEventsLimit {
        let old = std::fs::read_to_string(MAX_QUEUED).expect("read max_queued_events");
        std::fs::write(MAX_QUEUED, n.to_string())
            .expect("write max_queued_events (the fault suite runs as root)");
        QueuedEventsLimit { old }
    }
}

impl Drop for QueuedEventsLimit {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(MAX_QUEUED, self.old.trim()) {
            eprintln!("could not restore {MAX_QUEUED} to {}: {e}", self.old.trim());
        }
    }
}
