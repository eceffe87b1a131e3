//! A Cassandra write simulator: reproduces, file by file and event by event, how each version
//! family writes, commits, compacts, rewrites and backs up SSTables (see cassandra-files.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Version families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ver {
    /// 2.1, `ka`: `<ks>-<table>-ka-<gen>-<C>`, tmp names then renames.
    V21,
    /// 2.2, `lb`: `lb-<gen>-big-<C>`, `tmp-` names then renames.
    V22,
    /// 3.11, `me`: written in place, transaction logs.
    V311,
    /// 4.0, `nb` with numeric ids.
    V40,
    /// 4.1, `nb` with UUID-like ids.
    V41,
    /// 5.0 BIG, `oa`.
    V50Big,
    /// 5.0 BTI, `da`.
    V50Bti,
}

pub const ALL: [Ver; 7] = [
    Ver::V21,
    Ver::V22,
    Ver::V311,
    Ver::V40,
    Ver::V41,
    Ver::V50Big,
    Ver::V50Bti,
];

impl Ver {
    fn transactional(self) -> bool {
        !matches!(self, Ver::V21 | Ver::V22)
    }
    fn code(self) -> &'static str {
        match self {
            Ver::V21 => "ka",
            Ver::V22 => "lb",
            Ver::V311 => "me",
            Ver::V40 | Ver::V41 => "nb",
            Ver::V50Big => "oa",
            Ver::V50Bti => "da",
        }
    }
    /// Components in write order (TOC.txt last for 3.0+; for 2.x the rename order, Summary last).
    pub fn components(self) -> Vec<&'static str> {
        match self {
            Ver::V21 | Ver::V22 => vec![
                "Index.db",
                "Filter.db",
                "Statistics.db",
                "CompressionInfo.db",
                "Digest.sha1",
                "TOC.txt",
                "Data.db",
                "Summary.db",
            ],
            // 5.0 with an SAI index on a column that has no value in this SSTable: the SAI files
            // come after TOC.txt (before COMMIT), and of the column index only ColumnComplete.db
            // is written (see `toc_only`).
            Ver::V50Bti => {
                vec![
                    "Partitions.db",
                    "Rows.db",
                    "Data.db",
                    "Digest.crc32",
                    "Filter.db",
                    "Statistics.db",
                    "TOC.txt",
                    "SAI+aa+GroupComplete.db",
                    "SAI+aa+GroupMeta.db",
                    "SAI+aa+PartitionToSize.db",
                    "SAI+aa+sparse_idx+ColumnComplete.db",
                ]
            }
            Ver::V50Big => vec![
                "Index.db",
                "Data.db",
                "CRC.db",
                "Digest.crc32",
                "Filter.db",
                "Summary.db",
                "Statistics.db",
                "TOC.txt",
                "SAI+aa+GroupComplete.db",
                "SAI+aa+GroupMeta.db",
                "SAI+aa+PartitionToSize.db",
                "SAI+aa+sparse_idx+ColumnComplete.db",
            ],
            _ => vec![
                "Index.db",
                "Data.db",
                "CRC.db",
                "Digest.crc32",
                "Filter.db",
                "Summary.db",
                "Statistics.db",
                "TOC.txt",
            ],
        }
    }
}

impl Ver {
    /// Components the TOC lists that are never written (5.0 SAI, an empty column index).
    fn toc_only(self) -> Vec<&'static str> {
        match self {
            Ver::V50Big | Ver::V50Bti => vec![
                "SAI+aa+sparse_idx+Meta.db",
                "SAI+aa+sparse_idx+PostingLists.db",
                "SAI+aa+sparse_idx+TermsData.db",
            ],
            _ => vec![],
        }
    }

    /// Components written but not listed in the TOC (5.0.9's SAI PartitionToSize.db).
    fn unlisted(self) -> Vec<&'static str> {
        match self {
            Ver::V50Big | Ver::V50Bti => vec!["SAI+aa+PartitionToSize.db"],
            _ => vec![],
        }
    }
}

/// One SSTable of a simulated table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SSTable {
    pub prefix: String,
    pub components: Vec<String>,
}

impl SSTable {
    pub fn names(&self) -> Vec<String> {
        self.components
            .iter()
            .map(|c| format!("{}{c}", self.prefix))
            .collect()
    }
    pub fn data(&self) -> String {
        format!("{}Data.db", self.prefix)
    }
}

/// A table directory and the way its Cassandra version writes into it.
pub struct Table {
    pub dir: PathBuf,
    pub ver: Ver,
    ks: String,
    name: String,
    generation: u64,
    pub live: Vec<SSTable>,
    pub rng: StdRng,
    pub incremental_backups: bool,
    /// The size range of Data.db, when not the default (a few hundred KB).
    pub data_len: Option<std::ops::Range<usize>>,
}

fn append_record(log: &Path, record: &str) {
    // Each record is appended, flushed and the file closed (IN_CLOSE_WRITE per record).
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let crc = record
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    writeln!(f, "{record}[{crc}]").unwrap();
    f.sync_all().unwrap();
}

/// A flush or compaction whose files are written but that is neither committed nor aborted yet.
pub struct Pending {
    pub sstable: SSTable,
    log: Option<PathBuf>,
    removes: Vec<SSTable>,
    tmp_names: Vec<(String, String)>,
}

impl Table {
    /// Creates `<data>/<ks>/<name>-<32 hex>/`.
    pub fn new(data: &Path, ks: &str, name: &str, ver: Ver, seed: u64) -> Table {
        let mut rng = StdRng::seed_from_u64(seed);
        let id: String = (0..32)
            .map(|_| format!("{:x}", rng.random_range(0..16u8)))
            .collect();
        let dir = data.join(ks).join(format!("{name}-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Table {
            dir,
            ver,
            ks: ks.into(),
            name: name.into(),
            generation: 0,
            live: vec![],
            rng,
            incremental_backups: false,
            data_len: None,
        }
    }

    fn next_prefix(&mut self) -> String {
        self.generation += 1;
        let g = self.generation;
        match self.ver {
            Ver::V21 => format!("{}-{}-ka-{g}-", self.ks, self.name),
            Ver::V41 => {
                let id: String = (0..4)
                    .map(|_| {
                        (0..4)
                            .map(|_| char::from_digit(self.rng.random_range(0..36), 36).unwrap())
                            .collect::<String>()
                    })
                    .collect::<Vec<_>>()
                    .join("_");
                format!("nb-{id}{g}-big-")
            }
            Ver::V50Bti => format!("da-{g}-bti-"),
            v => format!("{}-{g}-big-", v.code()),
        }
    }

    fn tmp_name(&self, prefix: &str, comp: &str) -> String {
        match self.ver {
            Ver::V21 => format!(
                "{}-{}-tmp-{}{comp}",
                self.ks,
                self.name,
                &prefix[self.ks.len() + self.name.len() + 2..]
            ),
            _ => format!("tmp-{prefix}{comp}"),
        }
    }

    /// The path a transaction record names: canonical (symlinks resolved); 3.0/3.11 without the
    /// prefix's trailing `-`, 4.0+ with it.
    fn record_path(&self, prefix: &str) -> String {
        let dir = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let p = if self.ver == Ver::V311 {
            prefix.strip_suffix('-').unwrap_or(prefix)
        } else {
            prefix
        };
        format!("{}/{p}", dir.display())
    }

    fn content(&mut self, comp: &str) -> Vec<u8> {
        let len = match comp {
            "Data.db" => {
                let range = self.data_len.clone().unwrap_or(1_000..200_000);
                self.rng.random_range(range)
            }
            "Index.db" | "Partitions.db" | "Rows.db" => self.rng.random_range(100..20_000),
            _ => self.rng.random_range(8..2_000),
        };
        (0..len).map(|_| self.rng.random()).collect()
    }

    /// Writes an SSTable's files the way its version does, without committing.
    pub fn begin(&mut self, op: &str, removes: Vec<SSTable>) -> Pending {
        let prefix = self.next_prefix();
        let comps: Vec<String> = self
            .ver
            .components()
            .iter()
            .map(|c| c.to_string())
            .collect();
        let sstable = SSTable {
            prefix: prefix.clone(),
            components: comps.clone(),
        };
        let unlisted = self.ver.unlisted();
        let toc: String = comps
            .iter()
            .map(String::as_str)
            .filter(|c| !unlisted.contains(c))
            .chain(self.ver.toc_only())
            .map(|c| format!("{c}\n"))
            .collect();
        if self.ver.transactional() {
            let uuid = format!(
                "{:08x}-0000-11ee-8000-{:012x}",
                self.rng.random::<u32>(),
                self.rng.random::<u64>() >> 16
            );
            // BTI logs are named `bti-da_txn_…`; BIG ones `<ver>_txn_…`.
            let log = self.dir.join(match self.ver {
                Ver::V50Bti => format!("bti-da_txn_{op}_{uuid}.log"),
                v => format!("{}_txn_{op}_{uuid}.log", v.code()),
            });
            append_record(
                &log,
                &format!("ADD:[{},0,{}]", self.record_path(&prefix), comps.len()),
            );
            for r in &removes {
                append_record(
                    &log,
                    &format!(
                        "REMOVE:[{},0,{}]",
                        self.record_path(&r.prefix),
                        r.components.len()
                    ),
                );
            }
            for c in &comps {
                let body = if c == "TOC.txt" {
                    toc.clone().into_bytes()
                } else {
                    self.content(c)
                };
                std::fs::write(self.dir.join(format!("{prefix}{c}")), body).unwrap();
            }
            Pending {
                sstable,
                log: Some(log),
                removes,
                tmp_names: vec![],
            }
        } else {
            // Written under temporary names; 2.1 also opens early through a tmplink hard link.
            let mut tmp_names = vec![];
            for c in &comps {
                let body = if c == "TOC.txt" {
                    toc.clone().into_bytes()
                } else {
                    self.content(c)
                };
                let t = self.tmp_name(&prefix, c);
                std::fs::write(self.dir.join(&t), body).unwrap();
                tmp_names.push((t, format!("{prefix}{c}")));
            }
            let link = self.dir.join(format!("tmplink-{prefix}Data.db"));
            let link = if self.ver == Ver::V21 {
                self.dir.join(format!(
                    "{}-{}-tmplink-{}Data.db",
                    self.ks,
                    self.name,
                    &prefix[self.ks.len() + self.name.len() + 2..]
                ))
            } else {
                link
            };
            std::fs::hard_link(
                self.dir.join(
                    &tmp_names
                        .iter()
                        .find(|(_, f)| f.ends_with("Data.db"))
                        .unwrap()
                        .0,
                ),
                &link,
            )
            .unwrap();
            Pending {
                sstable,
                log: None,
                removes,
                tmp_names,
            }
        }
    }

    /// Commits: 2.x renames into place (Summary last); 3.0+ appends COMMIT. Then the inputs of a
    /// compaction are deleted, the log is deleted, and flushed SSTables are linked into backups/.
    pub fn commit(&mut self, p: Pending, flush: bool) -> SSTable {
        if let Some(log) = &p.log {
            append_record(log, "COMMIT:[,0,0]");
        } else {
            for (t, f) in &p.tmp_names {
                std::fs::rename(self.dir.join(t), self.dir.join(f)).unwrap();
            }
            for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
                if e.file_name().to_string_lossy().contains("tmplink") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        for r in &p.removes {
            for n in r.names() {
                std::fs::remove_file(self.dir.join(n)).unwrap();
            }
            self.live.retain(|s| s.prefix != r.prefix);
        }
        if let Some(log) = &p.log {
            std::fs::remove_file(log).unwrap();
        }
        if flush && self.incremental_backups {
            self.link_backups(&p.sstable);
        }
        self.live.push(p.sstable.clone());
        p.sstable
    }

    /// Aborts: appends ABORT (3.0+), deletes the new files, then the log.
    pub fn abort(&mut self, p: Pending) {
        if let Some(log) = &p.log {
            append_record(log, "ABORT:[,0,0]");
            for n in p.sstable.names() {
                let _ = std::fs::remove_file(self.dir.join(n));
            }
            std::fs::remove_file(log).unwrap();
        } else {
            for (t, _) in &p.tmp_names {
                let _ = std::fs::remove_file(self.dir.join(t));
            }
            for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
                if e.file_name().to_string_lossy().contains("tmplink") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }

    /// A committed flush.
    pub fn flush(&mut self) -> SSTable {
        let p = self.begin("flush", vec![]);
        self.commit(p, true)
    }

    /// A committed compaction of `inputs` into one new SSTable, deleting the inputs.
    pub fn compact(&mut self, inputs: Vec<SSTable>) -> SSTable {
        let p = self.begin("compaction", inputs);
        self.commit(p, false)
    }

    /// Incremental backup: hard links of every component into backups/, in random order.
    pub fn link_backups(&mut self, s: &SSTable) {
        let b = self.dir.join("backups");
        std::fs::create_dir_all(&b).unwrap();
        // Cassandra links the components its TOC knows: not 5.0.9's unlisted PartitionToSize.db.
        let unlisted = self.ver.unlisted();
        let mut names: Vec<String> = s
            .names()
            .into_iter()
            .filter(|n| !unlisted.iter().any(|u| n.ends_with(u)))
            .collect();
        names.shuffle(&mut self.rng);
        for n in names {
            std::fs::hard_link(self.dir.join(&n), b.join(&n)).unwrap();
        }
    }

    /// Statistics.db rewritten (repair): the same size, new content, through a `.tmp` rename.
    pub fn rewrite_statistics(&mut self, s: &SSTable) {
        let path = self.dir.join(format!("{}Statistics.db", s.prefix));
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        let body: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
        let tmp = self.dir.join(format!("{}Statistics.db.tmp", s.prefix));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Summary.db deleted and re-created (index summary redistribution; BIG only).
    pub fn recreate_summary(&mut self, s: &SSTable) {
        let path = self.dir.join(format!("{}Summary.db", s.prefix));
        if !path.exists() {
            return;
        }
        std::fs::remove_file(&path).unwrap();
        let body = self.content("Summary.db");
        std::fs::write(&path, body).unwrap();
    }

    /// 5.0: SAI components written, then appended to TOC.txt.
    pub fn add_sai(&mut self, s: &mut SSTable, index: &str) {
        let comps = [
            format!("SAI+aa+{index}+TermsData.db"),
            format!("SAI+aa+{index}+Meta.db"),
        ];
        for c in &comps {
            let body = self.content(c);
            std::fs::write(self.dir.join(format!("{}{c}", s.prefix)), body).unwrap();
        }
        let mut toc = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(format!("{}TOC.txt", s.prefix)))
            .unwrap();
        for c in &comps {
            writeln!(toc, "{c}").unwrap();
        }
        drop(toc);
        s.components.extend(comps.iter().cloned());
        for l in self.live.iter_mut().filter(|l| l.prefix == s.prefix) {
            l.components = s.components.clone();
        }
    }

    /// `nodetool snapshot`: hard links of every live file, then manifest.json, then schema.cql.
    pub fn snapshot(&mut self, tag: &str, ephemeral: bool) -> PathBuf {
        let d = self.dir.join("snapshots").join(tag);
        std::fs::create_dir_all(&d).unwrap();
        let mut files = vec![];
        let unlisted = self.ver.unlisted();
        for s in &self.live {
            for n in s.names() {
                if unlisted.iter().any(|u| n.ends_with(u)) {
                    continue;
                }
                std::fs::hard_link(self.dir.join(&n), d.join(&n)).unwrap();
                files.push(n);
            }
        }
        // ≤4.0: `files` only; 4.1 adds `created_at`, `expires_at` (and marks an ephemeral
        // snapshot with a file written after manifest and schema: see `mark_ephemeral`); 5.0
        // adds `ephemeral`.
        let manifest = match self.ver {
            Ver::V21 | Ver::V22 | Ver::V311 | Ver::V40 => serde_json::json!({ "files": files }),
            Ver::V41 => serde_json::json!({
                "files": files,
                "created_at": "2026-11-26T12:00:00Z",
                "expires_at": null,
            }),
            Ver::V50Big | Ver::V50Bti => serde_json::json!({
                "files": files,
                "created_at": "2026-11-26T12:00:00Z",
                "expires_at": null,
                "ephemeral": ephemeral,
            }),
        };
        std::fs::write(
            d.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        std::fs::write(
            d.join("schema.cql"),
            format!(
                "CREATE TABLE IF NOT EXISTS {}.{} (k int PRIMARY KEY);\n",
                self.ks, self.name
            ),
        )
        .unwrap();
        d
    }

    /// Up to 4.1: the `ephemeral.snapshot` marker, written after manifest.json and schema.cql.
    pub fn mark_ephemeral(&self, snapshot: &Path) {
        std::fs::write(snapshot.join("ephemeral.snapshot"), b"").unwrap();
    }

    /// The files of the live SSTables, as they are on disk now.
    pub fn live_files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        for s in &self.live {
            for n in s.names() {
                m.insert(n.clone(), std::fs::read(self.dir.join(&n)).unwrap());
            }
        }
        m
    }
}
