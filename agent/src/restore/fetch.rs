//! One file of a restore: HEAD, skip if already there, download (ranged parts in parallel for
//! large objects) under a temporary name, verify size and checksum (CRC64NVME or MD5, hashed as
//! the bytes arrive where possible), set owner and mode, rename.
//! A file never has its final name before it is complete and verified.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;

use super::args::Ownership;
use crate::checksum::{ChecksumKind, Digest, Expected, crc64_combine, hash_file};
use crate::error::{Error, Result};
use crate::meta::{STAT, StatMeta};
use crate::store::{Head, Store};

/// Marker in the names of files being downloaded.
pub const TMP_MARK: &str = ".tableslurp-tmp-";
/// Attempts of one GET before the file is reported as failed.
const ATTEMPTS: u32 = 3;

/// A file to restore.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its object key.
    pub key: String,
    /// Where it goes.
    pub dest: PathBuf,
    /// Whether a missing object may be a directory entry of the index (`backups`, `snapshots`).
    pub may_be_dir: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Downloaded and verified, this many bytes; `verified` says whether a checksum was compared.
    Downloaded {
        /// Bytes.
        bytes: u64,
        /// Checksum checked (else size only).
        verified: bool,
    },
    /// A file of the right size was already there.
    Kept,
    /// The entry is a directory, not a file.
    Directory,
    /// Dry run: would download this many bytes.
    Planned(u64),
}

/// Settings shared by every job.
#[derive(Debug)]
pub struct Fetcher {
    /// The store.
    pub store: Store,
    /// Limits GETs in flight.
    pub gets: Semaphore,
    /// Parts of one file requested at once (the semaphore bounds the total).
    pub threads: usize,
    /// Ranged part size.
    pub part_size: u64,
    /// Download even when the right size is there.
    pub force: bool,
    /// Print only.
    pub dry_run: bool,
    /// Owner of restored files.
    pub ownership: Ownership,
}

impl Fetcher {
    /// Restores one file; `on_bytes` is told of progress.
    pub async fn fetch(&self, job: &Job, on_bytes: &(dyn Fn(u64) + Sync)) -> Result<Outcome> {
        let head = match self.head(&job.key).await? {
            Some(h) => h,
            None if job.may_be_dir => return Ok(Outcome::Directory),
            None => return Err(Error::NotFound(format!("object {} is missing", job.key))),
        };
        if !self.force
            && let Ok(m) = std::fs::metadata(&job.dest)
            && m.is_file()
            && m.len() == head.size
        {
            on_bytes(head.size);
            return Ok(Outcome::Kept);
        }
        if self.dry_run {
            return Ok(Outcome::Planned(head.size));
        }
        let dir = job.dest.parent().expect("destinations have a parent");
        let name = job
            .dest
            .file_name()
            .expect("destinations have a name")
            .to_string_lossy();
        let tmp = dir.join(format!(".{name}{TMP_MARK}{:08x}", rand::random::<u32>()));
        let result = self.download_verified(job, &head, &tmp, on_bytes).await;
        match result {
            Ok(verified) => Ok(Outcome::Downloaded {
                bytes: head.size,
                verified,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    async fn head(&self, key: &str) -> Result<Option<Head>> {
        let mut attempt = 0;
        loop {
            match self.store.head(key).await {
                Err(e) if e.is_retryable() && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(crate::retry::delay(attempt, Duration::from_secs(5))).await;
                }
                other => return other,
            }
        }
    }

    async fn download_verified(
        &self,
        job: &Job,
        head: &Head,
        tmp: &Path,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<bool> {
        let size = head.size;
        let f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.set_len(size).map_err(|e| Error::io(tmp, e))?;
        drop(f);

        let ranges: Vec<Option<(u64, u64)>> = if size <= self.part_size {
            vec![None]
        } else {
            (0..size.div_ceil(self.part_size))
                .map(|i| {
                    let s = i * self.part_size;
                    Some((s, (s + self.part_size).min(size)))
                })
                .collect()
        };
        // Hashed as the bytes arrive: a CRC64NVME per range (combined below), an MD5 only when
        // the object comes in one stream (it cannot be split); else it is read back afterwards.
        let expected = Expected::of(head);
        let hash = match &expected {
            Some(Expected::Crc64Nvme(_)) => Some(ChecksumKind::Crc64Nvme),
            Some(Expected::Md5(_)) if ranges.len() == 1 => Some(ChecksumKind::Md5),
            _ => None,
        };
        let lens: Vec<u64> = ranges
            .iter()
            .map(|r| r.map_or(size, |(s, e)| e - s))
            .collect();
        let parts = ranges
            .into_iter()
            .map(|r| self.get_part(&job.key, r, size, tmp, hash, on_bytes));
        // `buffered` keeps the ranges' order (for combining their CRCs) and still runs them at once.
        let digests = futures::stream::iter(parts)
            .buffered(self.threads.max(1))
            .collect::<Vec<Result<Option<Digest>>>>()
            .await
            .into_iter()
            .collect::<Result<Vec<Option<Digest>>>>()?;
        let streamed = combine(&digests, &lens);

        let key = job.key.clone();
        let path = tmp.to_path_buf();
        let stat = head.meta.user.get(STAT).and_then(|s| StatMeta::parse(s));
        let ownership = self.ownership.clone();
        let dest = job.dest.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
            if len != size {
                return Err(Error::Integrity(format!(
                    "{key}: downloaded {len} bytes, the object has {size}"
                )));
            }
            let verified = match &expected {
                Some(want) => {
                    let got = match streamed {
                        Some(d) => d,
                        None => hash_file(&mut f, &path, size, want.kind(), None, false)?.0,
                    };
                    if !want.matches(&got) {
                        return Err(Error::Integrity(format!(
                            "{key}: the downloaded bytes have {got}, the backup recorded {want}"
                        )));
                    }
                    true
                }
                None => false,
            };
            drop(f);
            set_owner_and_mode(&path, stat.as_ref(), &ownership)?;
            std::fs::rename(&path, &dest).map_err(|e| Error::io(&dest, e))?;
            Ok(verified)
        })
        .await
        .expect("verification task panicked")
    }

    async fn get_part(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        size: u64,
        tmp: &Path,
        hash: Option<ChecksumKind>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<Digest>> {
        let want = range.map_or(size, |(s, e)| e - s);
        let mut attempt = 0;
        loop {
            let permit = self.gets.acquire().await.expect("semaphore never closed");
            let res = self.store.download_range(key, range, tmp, hash).await;
            drop(permit);
            let err = match res {
                Ok((n, digest)) if n == want => {
                    on_bytes(n);
                    return Ok(digest);
                }
                Ok((n, _)) => Error::Integrity(format!(
                    "{key}: got {n} bytes of a {want}-byte part (object changed or truncated?)"
                )),
                Err(e) => e,
            };
            attempt += 1;
            if !err.is_retryable() || attempt >= ATTEMPTS {
                return Err(err);
            }
            tracing::debug!(key, attempt, error = %err, "retrying download");
            tokio::time::sleep(crate::retry::delay(attempt, Duration::from_secs(10))).await;
        }
    }
}

/// The digest of the whole object from the digests of its ranges, in order, and their lengths:
/// CRC64NVMEs combine; a single digest is the whole; anything else (MD5s of several ranges, or
/// none) is `None`.
fn combine(digests: &[Option<Digest>], lens: &[u64]) -> Option<Digest> {
    match digests {
        [Some(d)] => Some(d.clone()),
        [] | [_] => None,
        _ => {
            let mut whole: Option<u64> = None;
            for (d, len) in digests.iter().zip(lens) {
                let Some(Digest::Crc64Nvme { whole: crc, .. }) = d else {
                    return None;
                };
                whole = Some(whole.map_or(*crc, |w| crc64_combine(w, *crc, *len)));
            }
            whole.map(|w| Digest::Crc64Nvme {
                whole: w,
                parts: vec![],
            })
        }
    }
}

/// Sets permission bits from `stat` and the owner as `ownership` says.
fn set_owner_and_mode(path: &Path, stat: Option<&StatMeta>, ownership: &Ownership) -> Result<()> {
    if let Some(s) = stat {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(s.mode & 0o7777))
            .map_err(|e| Error::io(path, e))?;
    }
    let (uid, gid) = match ownership {
        Ownership::Unchanged => return Ok(()),
        Ownership::Set { uid, gid } => (*uid, *gid),
        Ownership::Preserve => match stat {
            None => return Ok(()),
            Some(s) => (Some(preserved_uid(s)), Some(preserved_gid(s))),
        },
    };
    std::os::unix::fs::chown(path, uid, gid).map_err(|e| Error::io(path, e))?;
    // chown clears set-id bits: set the mode again.
    if let Some(s) = stat {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(s.mode & 0o7777))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// The owner to preserve: the stored user name if it exists here (as the Python tool), else the
/// stored uid.
fn preserved_uid(s: &StatMeta) -> u32 {
    s.user
        .as_deref()
        .and_then(|u| nix::unistd::User::from_name(u).ok().flatten())
        .map_or(s.uid, |u| u.uid.as_raw())
}

fn preserved_gid(s: &StatMeta) -> u32 {
    s.group
        .as_deref()
        .and_then(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .map_or(s.gid, |g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreLocation;
    use crate::store::RequestKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

    /// One scripted answer: status and the object's bytes (the Content-Length of a HEAD).
    #[derive(Clone)]
    enum Reply {
        Object(&'static [u8]),
        Status(u16),
    }

    /// A scripted S3 endpoint on loopback: each request (one per connection) gets the next reply,
    /// the last one repeating. An object reply serves a `Range` as 206.
    async fn endpoint(replies: Vec<Reply>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for i in 0.. {
                let (mut c, _) = l.accept().await.unwrap();
                let mut req = Vec::new();
                let mut b = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let (status, body): (u16, &[u8]) = match replies[i.min(replies.len() - 1)] {
                    Reply::Status(s) => (s, b""),
                    Reply::Object(o) => {
                        match req.lines().find_map(|l| l.strip_prefix("range: bytes=")) {
                            Some(r) => {
                                let (s, e) = r.trim().split_once('-').unwrap();
                                (
                                    206,
                                    &o[s.parse::<usize>().unwrap()..=e.parse::<usize>().unwrap()],
                                )
                            }
                            None => (200, o),
                        }
                    }
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nETag: \"{HELLO_MD5}\"\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(head.as_bytes()).await;
                if !req.starts_with("head") {
                    let _ = c.write_all(body).await;
                }
                let _ = c.shutdown().await;
            }
        });
        format!("http://{addr}")
    }

    /// A fetcher on that endpoint, the SDK's own retries off (one attempt per request).
    async fn fetcher(url: String, part_size: u64) -> Fetcher {
        let (settings, opts) = crate::store::s3::scripted(url);
        let loc = StoreLocation::S3(settings);
        Fetcher {
            store: Store::open(&loc, opts).await.unwrap(),
            gets: Semaphore::new(4),
            threads: 1,
            part_size,
            force: false,
            dry_run: false,
            ownership: Ownership::Unchanged,
        }
    }

    /// Fetches `k` to a fresh directory: the outcome (bounded, an endless retry fails), the HEAD
    /// and GET requests made, and what the file holds.
    async fn fetch(replies: Vec<Reply>, part_size: u64) -> (Result<Outcome>, u64, u64, Vec<u8>) {
        let f = fetcher(endpoint(replies).await, part_size).await;
        let d = tempfile::tempdir().unwrap();
        let job = Job {
            key: "k".into(),
            dest: d.path().join("f"),
            may_be_dir: false,
        };
        let r = tokio::time::timeout(Duration::from_secs(20), f.fetch(&job, &|_| {}))
            .await
            .expect("the fetch ends: retries are bounded");
        let req = |k| f.store.requests().get(k);
        let data = std::fs::read(&job.dest).unwrap_or_default();
        (r, req(RequestKind::Head), req(RequestKind::Get), data)
    }

    use Reply::{Object, Status};

    /// Issue 13 (mutation testing): a HEAD or GET refused with a 503 is tried again, up to three
    /// attempts each, and the file then comes whole and verified.
    #[tokio::test]
    async fn transient_errors_are_tried_again() {
        let replies = [Status(503), Status(503), Object(b"hello")];
        let (r, heads, gets, data) = fetch([&replies[..], &replies[..]].concat(), 1 << 20).await;
        assert_eq!(
            r.unwrap(),
            Outcome::Downloaded {
                bytes: 5,
                verified: true
            }
        );
        assert_eq!((heads, gets, &data[..]), (3, 3, &b"hello"[..]));
    }

    /// Issue 13 (mutation testing): three attempts and no more; an error a retry cannot fix (403)
    /// is not tried again; a short body is an integrity error, tried again like a transient one.
    #[tokio::test]
    async fn retries_stop_after_three_attempts_or_at_a_permanent_error() {
        let (r, heads, gets, _) = fetch(vec![Status(503)], 1 << 20).await;
        assert!(r.unwrap_err().is_retryable());
        assert_eq!((heads, gets), (3, 0), "HEAD always 503");
        let (r, heads, gets, _) = fetch(vec![Status(403)], 1 << 20).await;
        assert!(matches!(r, Err(Error::Permission(_))), "{r:?}");
        assert_eq!((heads, gets), (1, 0), "HEAD 403");
        let (r, heads, gets, _) = fetch(vec![Object(b"hello"), Status(503)], 1 << 20).await;
        assert!(r.unwrap_err().is_retryable());
        assert_eq!((heads, gets), (1, 3), "GET always 503");
        let (r, heads, gets, _) = fetch(vec![Object(b"hello"), Status(403)], 1 << 20).await;
        assert!(matches!(r, Err(Error::Permission(_))), "{r:?}");
        assert_eq!((heads, gets), (1, 1), "GET 403");
        let (r, heads, gets, data) = fetch(vec![Object(b"hello"), Object(b"hel")], 1 << 20).await;
        assert!(matches!(r, Err(Error::Integrity(_))), "{r:?}");
        assert_eq!((heads, gets), (1, 3), "a 3-byte body of a 5-byte object");
        assert!(data.is_empty(), "no file under its final name");
    }

    /// Issue 13 (mutation testing): an object larger than the part size comes in ranged parts,
    /// each of its own length, assembled and verified against the whole object's MD5.
    #[tokio::test]
    async fn ranged_parts_assemble_the_object() {
        let (r, heads, gets, data) = fetch(vec![Object(b"hello")], 2).await;
        assert_eq!(
            r.unwrap(),
            Outcome::Downloaded {
                bytes: 5,
                verified: true
            }
        );
        assert_eq!((heads, gets, &data[..]), (1, 3, &b"hello"[..]));
    }

    /// Issue 13 (mutation testing): the whole object's digest from its ranges' (the restore
    /// compares it with what the backup recorded): one range is the whole; CRC64NVMEs combine in
    /// order; MD5s of several ranges, or a range without a digest, give none (the file is then
    /// read back).
    #[test]
    fn range_digests_combine_into_the_whole_objects() {
        use crate::checksum::crc64;
        let crc = |b: &[u8]| {
            Some(Digest::Crc64Nvme {
                whole: crc64(b),
                parts: vec![],
            })
        };
        assert_eq!(combine(&[crc(b"hello")], &[5]), crc(b"hello"));
        assert_eq!(
            combine(&[crc(b"he"), crc(b"ll"), crc(b"o")], &[2, 2, 1]),
            crc(b"hello")
        );
        assert_eq!(combine(&[crc(b"he"), None], &[2, 3]), None);
        let md5 = Some(Digest::Md5(HELLO_MD5.into(), None));
        assert_eq!(combine(std::slice::from_ref(&md5), &[5]), md5);
        assert_eq!(combine(&[md5.clone(), md5], &[2, 3]), None);
        assert_eq!(combine(&[None], &[5]), None);
    }

    /// Issue 13 (mutation testing): the permission bits of the `stat` metadata are set even when
    /// the owner is left unchanged; the file type bits are not permission bits.
    #[test]
    fn permission_bits_come_from_the_stat_metadata() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let stat = StatMeta {
            uid: 0,
            gid: 0,
            mode: 0o100640,
            user: None,
            group: None,
        };
        set_owner_and_mode(&p, Some(&stat), &Ownership::Unchanged).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640, "{mode:o}");
    }
}
