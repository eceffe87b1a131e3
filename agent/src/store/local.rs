//! The local-directory store (`file:///dir`): one file per object at `dir/<key>`, its metadata in
//! `dir/<key>.tablesnap-meta.json` beside it. Writes go to a temporary name and are renamed, so an
//! object is either absent or complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{Head, Listed, RequestCounter, RequestKind, Source, Written};
use crate::checksum::{ChecksumKind, Digest, Hasher, crc64_to_base64};
use crate::error::{Error, Result};
use crate::meta::ObjectMeta;

/// Suffix of the metadata file kept beside each object.
pub const META_SUFFIX: &str = ".tablesnap-meta.json";
/// Marker in the names of files being written.
const TMP_MARK: &str = ".tablesnap-tmp-";

/// A directory of objects.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    pub(super) requests: Arc<RequestCounter>,
}

impl LocalStore {
    /// A store rooted at `root` (created by [`LocalStore::check`] if missing).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            requests: Arc::default(),
        }
    }

    /// Creates the root if needed and checks that it is a writable directory.
    pub async fn check(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || {
            std::fs::create_dir_all(&root).map_err(|e| {
                Error::Permission(format!(
                    "store {}: cannot create directory: {e}",
                    root.display()
                ))
            })?;
            let probe = root.join(format!("{TMP_MARK}probe-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(|e| {
                Error::Permission(format!("store {}: not writable: {e}", root.display()))
            })?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        })
        .await
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let bad = || Error::Storage(format!("key {key:?} cannot be stored in a directory store"));
        if key.is_empty()
            || key.ends_with('/')
            || key.ends_with(META_SUFFIX)
            || key.contains(TMP_MARK)
        {
            return Err(bad());
        }
        let rel = Path::new(key.trim_start_matches('/'));
        let mut depth = 0usize;
        for c in rel.components() {
            match c {
                Component::Normal(_) => depth += 1,
                _ => return Err(bad()),
            }
        }
        // `a//b` and `a/./b` would not list back as the same key.
        if key.trim_start_matches('/').contains("//") || key.contains("/./") || depth == 0 {
            return Err(bad());
        }
        Ok(self.root.join(rel))
    }

    /// Writes the object (metadata first, then the data, each by rename). A CRC64NVME digest is
    /// kept in the metadata file, where S3 keeps it in its checksum field.
    pub async fn put(
        &self,
        key: &str,
        src: Source,
        meta: &ObjectMeta,
        digest: Option<&Digest>,
    ) -> Result<Written> {
        let dest = self.path_of(key)?;
        let mut meta = meta.clone();
        if let Some(Digest::Crc64Nvme { whole, .. }) = digest {
            meta.checksum_crc64nvme = Some(crc64_to_base64(*whole));
        }
        let meta_json = serde_json::to_vec(&meta).expect("metadata serialises");
        self.requests.add(RequestKind::Put, 1);
        blocking(move || {
            let dir = dest.parent().expect("object paths have a parent");
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let meta_dest = with_suffix(&dest, META_SUFFIX);
            write_atomic(&meta_dest, |f| f.write_all(&meta_json))?;
            write_atomic(&dest, |f| match &src {
                Source::Memory(b) => f.write_all(b),
                Source::File { path, len } => {
                    let mut input = std::fs::File::open(path)?;
                    let copied = std::io::copy(&mut (&mut input).take(*len), f)?;
                    if copied != *len {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{} shrank while being copied", path.display()),
                        ));
                    }
                    Ok(())
                }
            })
            .map_err(|e| match (&e, &src) {
                (Error::Io { source, .. }, Source::File { path, .. })
                    if source.kind() == std::io::ErrorKind::NotFound || !path.exists() =>
                {
                    Error::Vanished(path.clone())
                }
                _ => e,
            })?;
            Ok(Written::Single)
        })
        .await
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.requests.add(RequestKind::List, 1);
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            // Walk only the deepest directory the prefix names.
            let dir_part = match prefix.rfind('/') {
                Some(i) => &prefix[..=i],
                None => "",
            };
            let start = root.join(dir_part.trim_start_matches('/'));
            let mut out = Vec::new();
            if start.is_dir() {
                walk(&root, &start, &mut |key, meta| {
                    if key.starts_with(&prefix) {
                        out.push(Listed {
                            key,
                            size: meta.len(),
                            etag: None,
                            modified: meta
                                .modified()
                                .ok()
                                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                                .map(|d| d.as_secs() as i64),
                        });
                    }
                })?;
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    /// Size and metadata of `key`.
    pub async fn head(&self, key: &str) -> Result<Option<Head>> {
        let path = self.path_of(key)?;
        self.requests.add(RequestKind::Head, 1);
        blocking(move || {
            let size = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(&path, e)),
            };
            let meta: ObjectMeta = match std::fs::read(with_suffix(&path, META_SUFFIX)) {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
                Err(_) => ObjectMeta::default(),
            };
            Ok(Some(Head {
                size,
                etag: meta.md5sum().map(str::to_string),
                meta,
            }))
        })
        .await
    }

    /// The whole object.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        let path = self.path_of(key)?;
        self.requests.add(RequestKind::Get, 1);
        let key = key.to_string();
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(key)),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    /// Copies bytes `range` of the object into `file` at the same offset.
    pub async fn download_range(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        file: &Path,
        hash: Option<ChecksumKind>,
    ) -> Result<(u64, Option<Digest>)> {
        let src = self.path_of(key)?;
        self.requests.add(RequestKind::Get, 1);
        let file = file.to_path_buf();
        let key = key.to_string();
        blocking(move || {
            let mut input = match std::fs::File::open(&src) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound(key));
                }
                Err(e) => return Err(Error::io(&src, e)),
            };
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file)
                .map_err(|e| Error::io(&file, e))?;
            let (start, len) = match range {
                Some((s, e)) => (s, e - s),
                None => (0, u64::MAX),
            };
            input
                .seek(SeekFrom::Start(start))
                .map_err(|e| Error::io(&src, e))?;
            out.seek(SeekFrom::Start(start))
                .map_err(|e| Error::io(&file, e))?;
            let mut input = input.take(len);
            let mut hasher = hash.map(Hasher::new);
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            loop {
                let got = input.read(&mut buf).map_err(|e| Error::io(&src, e))?;
                if got == 0 {
                    break;
                }
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[..got]);
                }
                out.write_all(&buf[..got])
                    .map_err(|e| Error::io(&file, e))?;
                n += got as u64;
            }
            Ok((n, hasher.map(Hasher::finish)))
        })
        .await
    }

    /// Deletes objects and their metadata; a missing object is not an error.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<String>> {
        let paths = keys
            .iter()
            .map(|k| self.path_of(k).map(|p| (k.clone(), p)))
            .collect::<Result<Vec<_>>>()?;
        self.requests
            .add(RequestKind::Delete, keys.len().div_ceil(1000) as u64);
        blocking(move || {
            let mut failed = Vec::new();
            for (key, p) in paths {
                let _ = std::fs::remove_file(with_suffix(&p, META_SUFFIX));
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => failed.push(key),
                }
            }
            Ok(failed)
        })
        .await
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `dest` through a temporary file in the same directory, fsynced, then renamed.
fn write_atomic(
    dest: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = dest.parent().expect("has a parent");
    let name = dest.file_name().expect("has a name").to_string_lossy();
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}", rand::random::<u32>()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::Io {
        path: dest.to_path_buf(),
        source: e,
    })
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(String, std::fs::Metadata)) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            walk(root, &path, f)?;
        } else if ft.is_file() && !name.ends_with(META_SUFFIX) && !name.contains(TMP_MARK) {
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if let Ok(m) = entry.metadata() {
                f(rel, m);
            }
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_keeps_key_and_metadata() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path().join("store"));
        s.check().await.unwrap();
        let mut meta = ObjectMeta::default();
        meta.user.insert("md5sum".into(), "abc".into());
        s.put(
            "h:/var/lib/x/a-Data.db",
            Source::Memory(Bytes::from_static(b"hello")),
            &meta,
            None,
        )
        .await
        .unwrap();
        s.put(
            "h:/var/lib/x/b",
            Source::Memory(Bytes::from_static(b"hi")),
            &ObjectMeta::json(),
            Some(&Digest::Crc64Nvme {
                whole: crate::checksum::crc64(b"hi"),
                parts: vec![],
            }),
        )
        .await
        .unwrap();
        let l = s.list("h:/var/lib/x/").await.unwrap();
        let keys: Vec<_> = l.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(
            keys,
            vec![("h:/var/lib/x/a-Data.db", 5), ("h:/var/lib/x/b", 2)]
        );
        // A prefix that is not on a '/' boundary.
        assert_eq!(s.list("h:/var/lib/x/a").await.unwrap().len(), 1);
        let h = s.head("h:/var/lib/x/a-Data.db").await.unwrap().unwrap();
        assert_eq!((h.size, h.meta.md5sum()), (5, Some("abc")));
        assert_eq!(h.meta.crc64nvme(), None);
        // A CRC64NVME is kept where S3 keeps it: beside the user metadata, not in it.
        let h = s.head("h:/var/lib/x/b").await.unwrap().unwrap();
        assert_eq!(h.meta.crc64nvme(), Some(crate::checksum::crc64(b"hi")));
        assert!(h.meta.user.is_empty());
        assert_eq!(s.head("h:/nope").await.unwrap(), None);
        assert_eq!(&s.get_bytes("h:/var/lib/x/b").await.unwrap()[..], b"hi");
        assert_eq!(
            s.delete_many(&["h:/var/lib/x/b".into()]).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(s.list("h:").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refuses_keys_that_would_escape_or_not_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path().to_path_buf());
        for k in [
            "h:/a/../../etc/x",
            "h://a",
            "h:/a/./b",
            "h:/a/",
            "",
            "x.tablesnap-meta.json",
        ] {
            let r = s
                .put(
                    k,
                    Source::Memory(Bytes::new()),
                    &ObjectMeta::default(),
                    None,
                )
                .await;
            assert!(r.is_err(), "{k} was accepted");
        }
    }

    /// Issue 13 (mutation testing): a source file that is gone (deleted by a compaction, or a
    /// path through something that is no directory any more) is `Vanished`, nothing to ship; a
    /// source that exists but cannot be read is an error, and nothing is left under the key.
    #[tokio::test]
    async fn a_vanished_source_is_told_from_an_unreadable_one() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStore::new(d.path().join("store"));
        std::fs::write(d.path().join("file"), b"x").unwrap();
        let put = |path: PathBuf| {
            let s = &s;
            async move {
                let src = Source::File { path, len: 1 };
                s.put("k", src, &ObjectMeta::default(), None).await
            }
        };
        for gone in [d.path().join("deleted"), d.path().join("file/below-a-file")] {
            let r = put(gone.clone()).await;
            assert!(
                matches!(&r, Err(Error::Vanished(p)) if *p == gone),
                "{gone:?}: {r:?}"
            );
        }
        let r = put(d.path().to_path_buf()).await;
        assert!(
            matches!(r, Err(Error::Io { .. })),
            "a directory as the source: {r:?}"
        );
        assert!(!d.path().join("store/k").exists(), "nothing under the key");
    }

    /// Issue 13 (mutation testing): only a missing object is "not there" (a HEAD's `None`, a
    /// download's `NotFound`); an object the store cannot read (here a symlink loop: ELOOP) is an
    /// error naming it, never taken for absent.
    #[tokio::test]
    async fn only_a_missing_object_is_absent() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(root.join("loop"), root.join("loop")).unwrap();
        let s = LocalStore::new(root);
        let to = d.path().join("out");
        assert!(matches!(s.head("missing").await, Ok(None)));
        let r = s.download_range("missing", None, &to, None).await;
        assert!(
            matches!(&r, Err(Error::NotFound(k)) if k == "missing"),
            "{r:?}"
        );
        let r = s.head("loop").await;
        assert!(matches!(&r, Err(Error::Io { .. })), "{r:?}");
        let r = s.download_range("loop", None, &to, None).await;
        assert!(matches!(&r, Err(Error::Io { .. })), "{r:?}");
    }
}
