//! How the fault tests make their files: plain files for generic mode, or SSTables flushed the way
//! Cassandra 5.0 writes them (the write simulator) for cassandra mode, and the flags of each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fault::Rng;
use super::{data, sim, write_rename};

/// `n` files: mostly small, every `big_every`-th one of 6 to 11 MiB (a multipart upload).
pub fn plan(n: usize, big_every: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = if big_every > 0 && i % big_every == big_every - 1 {
                r.range(6 << 20, 11 << 20)
            } else {
                r.range(1, 64 << 10)
            };
            (format!("f-{i:05}.db"), data(len as usize, seed ^ i as u64))
        })
        .collect()
}

/// What the bucket must hold: key → bytes.
pub fn wanted(dir: &Path, files: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(n, d)| (format!("testhost:{}", dir.join(n).display()), d.clone()))
        .collect()
}

/// Writes the files one by one (temp name, then rename), `pace` apart, in a thread.
pub fn writer(
    dir: PathBuf,
    files: Vec<(String, Vec<u8>)>,
    pace: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for (n, d) in files {
            write_rename(&dir, &n, &d);
            std::thread::sleep(pace);
        }
    })
}

/// How a fault test makes its files. Each fault that concerns shipping runs twice: plain files in
/// generic mode with `--checksum md5`, and SSTables flushed the way Cassandra 5.0 writes them (the
/// write simulator: components, transaction log, COMMIT) shipped in cassandra mode (`-r -a`) with
/// `--checksum crc64nvme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Generic,
    Cassandra,
}

impl Variant {
    /// The agent's flags for this variant.
    pub fn args(self) -> Vec<&'static str> {
        match self {
            Variant::Generic => vec![],
            Variant::Cassandra => {
                vec!["--mode", "cassandra", "-r", "-a", "--checksum", "crc64nvme"]
            }
        }
    }

    /// The report row's name.
    pub fn fault(self, base: &str) -> String {
        match self {
            Variant::Generic => base.into(),
            Variant::Cassandra => format!("{base} [cassandra mode, --checksum crc64nvme]"),
        }
    }

    /// Writes about `n` files under `dir`, `pace` apart, in a thread that returns what the bucket
    /// must hold (key → bytes): generic files as [`plan`] makes them, or SSTables of about eight
    /// components each, flushed one by one (every component of every flushed SSTable).
    pub fn load(
        self,
        dir: &Path,
        n: usize,
        big_every: usize,
        seed: u64,
        pace: Duration,
    ) -> std::thread::JoinHandle<BTreeMap<String, Vec<u8>>> {
        let dir = dir.to_path_buf();
        match self {
            Variant::Generic => {
                let files = plan(n, big_every, seed);
                let want = wanted(&dir, &files);
                let w = writer(dir, files, pace);
                std::thread::spawn(move || {
                    w.join().unwrap();
                    want
                })
            }
            Variant::Cassandra => std::thread::spawn(move || {
                let mut table = sim::Table::new(&dir, "ks", "events", sim::Ver::V50Big, seed);
                let per = sim::Ver::V50Big.components().len();
                for _ in 0..n.div_ceil(per) {
                    table.flush();
                    std::thread::sleep(pace * per as u32);
                }
                table
                    .live_files()
                    .into_iter()
                    .map(|(name, body)| {
                        (format!("testhost:{}", table.dir.join(name).display()), body)
                    })
                    .collect()
            }),
        }
    }
}
