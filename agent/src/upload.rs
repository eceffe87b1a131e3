//! Shipping one file: read it once for its checksum (small files are sent from that same read),
//! upload it with the Python tool's metadata, and check that it did not change meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::agent::Ctx;
use crate::checksum::hash_file;
use crate::error::{Error, Result};
use crate::meta::ObjectMeta;
use crate::queue::Version;
use crate::store::{Source, Written};

/// Files up to this size are read into memory once and sent from there; larger ones are hashed,
/// then streamed from disk (the second read is usually served by the page cache).
pub const SMALL_FILE: u64 = 1 << 20;

/// Files from this size on get a log line when their upload starts.
pub const LARGE_FILE: u64 = 8 << 20;

/// What shipping a file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shipment {
    /// Uploaded under `key`.
    Uploaded {
        /// The object key.
        key: String,
        /// Bytes sent.
        bytes: u64,
        /// Single PUT or multipart.
        written: Written,
    },
    /// The bucket already holds this version.
    AlreadyThere,
    /// Not a regular file (a directory, a socket, ...).
    NotAFile,
    /// The file changed while it was uploaded; it has been queued again.
    Changed,
}

/// Ships the file at `path` (generic mode).
pub async fn ship(ctx: &Arc<Ctx>, path: &Path) -> Result<Shipment> {
    let disk = tokio::fs::symlink_metadata(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    if !disk.is_file() {
        return Ok(Shipment::NotAFile);
    }
    // Only our own record of this exact version counts: an event means the file may have new
    // content even when its size is the same (Statistics.db rewritten).
    if ctx.shipped.has_exact(path, &Version::of(&disk)) {
        return Ok(Shipment::AlreadyThere);
    }
    let key = ctx.cfg.keys.data_key(path);
    match send(ctx, &key, path).await? {
        Sent::Done {
            version,
            bytes,
            written,
        } => {
            ctx.shipped.insert(path.to_path_buf(), version);
            Ok(Shipment::Uploaded {
                key,
                bytes,
                written,
            })
        }
        Sent::Changed => {
            ctx.enqueue(path.to_path_buf()).await;
            Ok(Shipment::Changed)
        }
    }
}

/// The result of [`send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The object holds `version` of the file.
    Done {
        /// The version read and sent.
        version: Version,
        /// Bytes sent.
        bytes: u64,
        /// How.
        written: Written,
    },
    /// The file changed while it was read or sent: the object may not match it.
    Changed,
}

/// Uploads the file read from `read` under `key`: one read for the `--checksum` (small files
/// are sent from that same read; with CRC64NVME each multipart part gets its own CRC too), then the
/// upload with `stat` (and `md5sum`) metadata, then a check that the file did not change meanwhile.
pub async fn send(ctx: &Ctx, key: &str, read: &Path) -> Result<Sent> {
    send_with(ctx, key, read, &[]).await
}

/// [`send`] with more user metadata (`extra`: key and value) beside the Python tool's.
pub async fn send_with(
    ctx: &Ctx,
    key: &str,
    read: &Path,
    extra: &[(&str, String)],
) -> Result<Sent> {
    let p = read.to_path_buf();
    let kind = ctx.cfg.checksum;
    let sizing = ctx.store.multipart_sizing();
    let (digest, kept, meta) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
        let meta = f.metadata().map_err(|e| Error::io(&p, e))?;
        let small = meta.len() <= SMALL_FILE;
        let parts = sizing
            .filter(|_| !small)
            .and_then(|s| s.multipart_part_size(meta.len()));
        let (digest, kept) = hash_file(&mut f, &p, meta.len(), kind, parts, small)?;
        Ok((digest, kept, meta))
    })
    .await
    .expect("hashing task panicked")?;
    let hashed = Version::of(&meta);
    let len = meta.len();
    if len >= LARGE_FILE {
        tracing::info!(key, bytes = len, "uploading");
    }
    let src = match kept {
        Some(b) => Source::Memory(Bytes::from(b)),
        None => Source::File {
            path: read.to_path_buf(),
            len,
        },
    };
    let mut object_meta = ObjectMeta::for_file(key, &meta, &digest);
    for (k, v) in extra {
        object_meta.user.insert((*k).to_string(), v.clone());
    }
    let written = ctx.store.put(key, src, &object_meta, Some(&digest)).await?;
    let after = tokio::fs::metadata(read)
        .await
        .map_err(|e| Error::io(read, e))?;
    if Version::of(&after) != hashed {
        return Ok(Sent::Changed);
    }
    Ok(Sent::Done {
        version: hashed,
        bytes: len,
        written,
    })
}

/// Removes a shipped file for `--delete-on-backup`; a file already gone is fine.
///
/// The record of the shipped version stays: the object is still in the bucket, and the next index
/// of the directory lists it (a file of the same name written later has another version).
pub async fn delete_local(path: PathBuf) {
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {
            tracing::info!(path = %path.display(), "deleted after backup");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not delete after backup")
        }
    }
}
