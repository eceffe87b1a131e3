//! Where objects go: an S3 bucket or a local directory, behind one interface with the same keys
//! and metadata. Callers see [`Store`]; the backends are [`s3::S3Store`] and [`local::LocalStore`].

pub mod local;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::checksum::{ChecksumKind, Digest};
use crate::config::{StoreLocation, UploadSizing, WriteOptions};
use crate::error::Result;
use crate::meta::ObjectMeta;

/// One object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The ETag without quotes, when the store has one (for a single PUT it is the MD5).
    pub etag: Option<String>,
    /// Last modification, seconds since the epoch.
    pub modified: Option<i64>,
}

/// One object's head: size and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes.
    pub etag: Option<String>,
    /// Content type and user metadata.
    pub meta: ObjectMeta,
}

/// What an upload reads from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Bytes already in memory (small files, indexes).
    Memory(Bytes),
    /// `len` bytes of the file at `path`, streamed from disk.
    File {
        /// The file.
        path: PathBuf,
        /// How many bytes to send from its start.
        len: u64,
    },
}

impl Source {
    /// Bytes the upload sends.
    pub fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            Source::File { len, .. } => *len,
        }
    }

    /// Whether the source is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an object was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// In one request.
    Single,
    /// In this many parts.
    Multipart(u32),
}

/// The kinds of request counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Listing pages.
    List,
    /// HEAD of an object or bucket.
    Head,
    /// PUT, multipart create/part/complete/abort.
    Put,
    /// GET of an object or a range.
    Get,
    /// Deletes (batches).
    Delete,
}

/// Counts the requests a store makes, by kind, for summaries and tests.
#[derive(Debug, Default)]
pub struct RequestCounter([AtomicU64; 5]);

impl RequestCounter {
    /// Counts `n` requests of `kind`.
    pub fn add(&self, kind: RequestKind, n: u64) {
        self.0[kind as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// Requests of `kind` so far.
    pub fn get(&self, kind: RequestKind) -> u64 {
        self.0[kind as usize].load(Ordering::Relaxed)
    }
    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl std::fmt::Display for RequestCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use RequestKind::*;
        write!(
            f,
            "list={} head={} put={} get={} delete={}",
            self.get(List),
            self.get(Head),
            self.get(Put),
            self.get(Get),
            self.get(Delete)
        )
    }
}

/// A store of objects.
#[derive(Debug, Clone)]
pub enum Store {
    /// S3 or an S3-compatible server.
    S3(s3::S3Store),
    /// A local directory.
    Local(local::LocalStore),
}

/// Settings every backend shares.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Single PUT versus multipart.
    pub sizing: UploadSizing,
    /// Storage class and encryption.
    pub write: WriteOptions,
    /// Parts in flight at once across all uploads.
    pub max_parts_in_flight: usize,
}

impl Store {
    /// Opens the store named by `loc`. Reaches no server yet: see [`Store::check`].
    pub async fn open(loc: &StoreLocation, opts: StoreOptions) -> Result<Self> {
        Ok(match loc {
            StoreLocation::S3(s) => Store::S3(s3::S3Store::new(s, opts).await?),
            StoreLocation::Local(dir) => Store::Local(local::LocalStore::new(dir.clone())),
        })
    }

    /// Checks that the bucket exists and accepts our credentials.
    pub async fn check(&self) -> Result<()> {
        match self {
            Store::S3(s) => s.check().await,
            Store::Local(l) => l.check().await,
        }
    }

    /// Writes an object from `src` with `meta`. The `digest` (when known) goes with it: an MD5 as
    /// Content-MD5 of a single PUT, a CRC64NVME in S3's checksum fields (each part's and the whole
    /// object's), which the server checks.
    pub async fn put(
        &self,
        key: &str,
        src: Source,
        meta: &ObjectMeta,
        digest: Option<&Digest>,
    ) -> Result<Written> {
        match self {
            Store::S3(s) => s.put(key, src, meta, digest).await,
            Store::Local(l) => l.put(key, src, meta, digest).await,
        }
    }

    /// How files are split into multipart uploads; `None` when the store writes every object in
    /// one request.
    pub fn multipart_sizing(&self) -> Option<UploadSizing> {
        match self {
            Store::S3(s) => Some(s.sizing()),
            Store::Local(_) => None,
        }
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        match self {
            Store::S3(s) => s.list(prefix).await,
            Store::Local(l) => l.list(prefix).await,
        }
    }

    /// The head of `key`, or `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<Head>> {
        match self {
            Store::S3(s) => s.head(key).await,
            Store::Local(l) => l.head(key).await,
        }
    }

    /// The whole body of `key`.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        match self {
            Store::S3(s) => s.get_bytes(key).await,
            Store::Local(l) => l.get_bytes(key).await,
        }
    }

    /// Writes bytes `range` of `key` (or all of it) to `file` at the range's offset; returns how
    /// many, and with `hash` their checksum of that kind, computed as they arrive.
    pub async fn download_range(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        file: &Path,
        hash: Option<ChecksumKind>,
    ) -> Result<(u64, Option<Digest>)> {
        match self {
            Store::S3(s) => s.download_range(key, range, file, hash).await,
            Store::Local(l) => l.download_range(key, range, file, hash).await,
        }
    }

    /// Deletes `keys` (at most 1,000 per request on S3); returns the keys that failed.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<String>> {
        match self {
            Store::S3(s) => s.delete_many(keys).await,
            Store::Local(l) => l.delete_many(keys).await,
        }
    }

    /// Aborts multipart uploads below `prefix` that nobody will finish (left by a killed run or a
    /// failed abort); returns how many. Nothing to do for a local store.
    pub async fn tidy(&self, prefix: &str) -> Result<usize> {
        match self {
            Store::S3(s) => s.tidy(prefix).await,
            Store::Local(_) => Ok(0),
        }
    }

    /// Requests made so far, by kind.
    pub fn requests(&self) -> &RequestCounter {
        match self {
            Store::S3(s) => &s.requests,
            Store::Local(l) => &l.requests,
        }
    }
}
