//! What proves an object's content, chosen by `--checksum`:
//! - `md5` (the default): the Python tool's `md5sum` metadata, hex MD5 of the whole file, plus
//!   Content-MD5 on single PUTs. Every tablesnap/tableslurp, Python or ours, understands it; it
//!   costs about 2 CPU-seconds per GiB.
//! - `crc64nvme`: S3's own full-object checksum field (`x-amz-checksum-crc64nvme`), computed with
//!   the CPU's carry-less multiply instructions at several GiB per second. The server checks every
//!   part and the whole object; `tableslurp` checks it while downloading. No `md5sum` metadata is
//!   written (the Python tableslurp never checked it).

use std::io::Read;
use std::path::Path;

use crc_fast::CrcAlgorithm::Crc64Nvme;
use md5::{Digest as _, Md5};

use crate::error::{Error, Result};

/// The `--checksum` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChecksumKind {
    /// Hex MD5 in the `md5sum` metadata, as the Python tool writes.
    #[default]
    Md5,
    /// S3's full-object CRC64NVME checksum field.
    #[value(name = "crc64nvme")]
    Crc64Nvme,
}

/// A file's checksum, as computed before its upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// Hex MD5 of the whole file; for a multipart upload also the CRC64NVME of the whole file and
    /// of each part, so that every part carries a checksum the server checks (an MD5 per part
    /// would cost another 2 CPU-seconds per GiB; the CRCs cost about 0.02).
    Md5(String, Option<PartCrcs>),
    /// CRC64NVME of the whole file and of each multipart part, in order (empty for a single PUT).
    Crc64Nvme {
        /// Of the whole file.
        whole: u64,
        /// Of each part.
        parts: Vec<u64>,
    },
}

/// The CRC64NVME of a whole file and of each of its multipart parts, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCrcs {
    /// Of the whole file.
    pub whole: u64,
    /// Of each part.
    pub parts: Vec<u64>,
}

impl Digest {
    /// The hex MD5, for `md5sum` metadata and Content-MD5.
    pub fn md5_hex(&self) -> Option<&str> {
        match self {
            Digest::Md5(h, _) => Some(h),
            Digest::Crc64Nvme { .. } => None,
        }
    }

    /// The whole-file and per-part CRC64NVMEs of a multipart upload, in either mode.
    pub fn part_crcs(&self) -> Option<(u64, &[u64])> {
        match self {
            Digest::Crc64Nvme { whole, parts } if !parts.is_empty() => Some((*whole, parts)),
            Digest::Md5(_, Some(c)) if !c.parts.is_empty() => Some((c.whole, &c.parts)),
            _ => None,
        }
    }
}

/// The checksum an object records, to compare a file or a download with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Its full-object CRC64NVME.
    Crc64Nvme(u64),
    /// Its MD5, lower-case hex.
    Md5(String),
}

impl Expected {
    /// What `head` records, the cheapest to check first: S3's full-object CRC64NVME, then the
    /// `md5sum` metadata, then an ETag that is a plain MD5 (a single PUT without encryption).
    pub fn of(head: &crate::store::Head) -> Option<Self> {
        if let Some(c) = head.meta.crc64nvme() {
            return Some(Expected::Crc64Nvme(c));
        }
        head.meta
            .md5sum()
            .or(head.etag.as_deref().filter(|e| is_plain_md5(e)))
            .map(|m| Expected::Md5(m.to_ascii_lowercase()))
    }

    /// The kind of digest to compute to compare with it.
    pub fn kind(&self) -> ChecksumKind {
        match self {
            Expected::Crc64Nvme(_) => ChecksumKind::Crc64Nvme,
            Expected::Md5(_) => ChecksumKind::Md5,
        }
    }

    /// Whether `got` (of [`Expected::kind`]) is this checksum.
    pub fn matches(&self, got: &Digest) -> bool {
        match (self, got) {
            (Expected::Crc64Nvme(want), Digest::Crc64Nvme { whole, .. }) => want == whole,
            (Expected::Md5(want), Digest::Md5(got, _)) => want.eq_ignore_ascii_case(got),
            _ => false,
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Crc64Nvme(c) => write!(f, "CRC64NVME {}", crc64_to_base64(*c)),
            Expected::Md5(m) => write!(f, "MD5 {m}"),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Digest::Crc64Nvme { whole, .. } => write!(f, "CRC64NVME {}", crc64_to_base64(*whole)),
            Digest::Md5(m, _) => write!(f, "MD5 {m}"),
        }
    }
}

/// Whether an ETag (without quotes) is a plain MD5: 32 hex digits, no `-N` part count.
pub fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// S3's wire form of a CRC64NVME: base64 of its 8 big-endian bytes.
pub fn crc64_to_base64(crc: u64) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

/// Parses S3's wire form; `None` for anything else, such as a composite checksum (`...-N`).
pub fn crc64_from_base64(s: &str) -> Option<u64> {
    let bytes = aws_smithy_types::base64::decode(s).ok()?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// CRC64NVME of a byte slice.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(Crc64Nvme, data)
}

/// The CRC64NVME of `a` followed by `b`, from the CRCs of each and `b`'s length.
pub fn crc64_combine(a: u64, b: u64, b_len: u64) -> u64 {
    crc_fast::checksum_combine(Crc64Nvme, a, b, b_len)
}

/// A running CRC64NVME.
#[derive(Clone, Copy, Debug)]
pub struct Crc64(crc_fast::Digest);

impl Default for Crc64 {
    fn default() -> Self {
        Self(crc_fast::Digest::new(Crc64Nvme))
    }
}

impl Crc64 {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The CRC so far.
    pub fn finish(&self) -> u64 {
        self.0.finalize()
    }
}

/// A running checksum of either kind, over one stream of bytes.
#[derive(Clone)]
pub enum Hasher {
    /// MD5.
    Md5(Md5),
    /// CRC64NVME.
    Crc64(Box<Crc64>),
}

impl Hasher {
    /// A new hasher of `kind`.
    pub fn new(kind: ChecksumKind) -> Self {
        match kind {
            ChecksumKind::Md5 => Hasher::Md5(Md5::new()),
            ChecksumKind::Crc64Nvme => Hasher::Crc64(Box::default()),
        }
    }
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(m) => m.update(data),
            Hasher::Crc64(c) => c.update(data),
        }
    }
    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Md5(m) => Digest::Md5(hex::encode(m.finalize()), None),
            Hasher::Crc64(c) => Digest::Crc64Nvme {
                whole: c.finish(),
                parts: vec![],
            },
        }
    }
}

/// Hex MD5 of a byte slice.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// Reads `len` bytes of an open file and returns its checksum of `kind` and, when `keep` is
/// true, the bytes. With CRC64NVME and `part_size`, the CRC of each `part_size` slice is kept too
/// (what a multipart upload sends with each part). Fails with [`Error::Integrity`] when the file is
/// shorter than `len` (it changed under us).
pub fn hash_file(
    file: &mut std::fs::File,
    path: &Path,
    len: u64,
    kind: ChecksumKind,
    part_size: Option<u64>,
    keep: bool,
) -> Result<(Digest, Option<Vec<u8>>)> {
    let mut whole = Hasher::new(kind);
    // Part CRCs for a multipart upload, in both modes: the CRC of the part being read, its
    // length so far, and the CRCs of the parts done; with MD5, the whole file's CRC too.
    let part_size = part_size.filter(|p| *p > 0);
    let mut whole_crc = (part_size.is_some() && kind == ChecksumKind::Md5).then(Crc64::default);
    let mut part = Crc64::default();
    let mut part_len = 0u64;
    let mut parts = Vec::new();
    let mut kept = keep.then(|| Vec::with_capacity(len as usize));
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let room = part_size.map_or(u64::MAX, |p| p - part_len);
        let want = (buf.len() as u64).min(left).min(room) as usize;
        let n = file
            .read(&mut buf[..want])
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Err(Error::Integrity(format!(
                "{} shrank while being read",
                path.display()
            )));
        }
        let data = &buf[..n];
        whole.update(data);
        if let Some(c) = whole_crc.as_mut() {
            c.update(data);
        }
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(data);
        }
        left -= n as u64;
        if let Some(p) = part_size {
            part.update(data);
            part_len += n as u64;
            if part_len == p || left == 0 {
                parts.push(part.finish());
                part = Crc64::default();
                part_len = 0;
            }
        }
    }
    let digest = match whole.finish() {
        Digest::Crc64Nvme { whole, .. } => Digest::Crc64Nvme { whole, parts },
        Digest::Md5(hex, _) => Digest::Md5(
            hex,
            whole_crc.map(|c| PartCrcs {
                whole: c.finish(),
                parts,
            }),
        ),
    };
    Ok((digest, kept))
}

/// The checksum of `kind` of the file at `path`: its first `len` bytes, or all of it. Reads on the
/// blocking pool.
pub async fn hash_path(path: &Path, len: Option<u64>, kind: ChecksumKind) -> Result<Digest> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
        let len = match len {
            Some(l) => l,
            None => f.metadata().map_err(|e| Error::io(&p, e))?.len(),
        };
        Ok(hash_file(&mut f, &p, len, kind, None, false)?.0)
    })
    .await
    .expect("hashing task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn md5_of_known_input() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn crc64nvme_check_value_and_wire_form() {
        // The catalogue's check value of CRC-64/NVME over "123456789".
        assert_eq!(crc64(b"123456789"), 0xae8b_1486_0a79_9888);
        let b64 = crc64_to_base64(0xae8b_1486_0a79_9888);
        assert_eq!(crc64_from_base64(&b64), Some(0xae8b_1486_0a79_9888));
        assert_eq!(crc64_from_base64("AAAAAAAAAAA=-3"), None);
        assert_eq!(crc64_from_base64("AAAA"), None);
    }

    fn file_of(data: &[u8]) -> (tempfile::NamedTempFile, std::fs::File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(data).unwrap();
        let f = std::fs::File::open(t.path()).unwrap();
        (t, f)
    }

    #[test]
    fn part_crcs_combine_to_the_whole() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let (t, mut f) = file_of(&data);
        let (d, kept) = hash_file(
            &mut f,
            t.path(),
            data.len() as u64,
            ChecksumKind::Crc64Nvme,
            Some(300_000),
            true,
        )
        .unwrap();
        assert_eq!(kept.as_deref(), Some(&data[..]));
        let Digest::Crc64Nvme { whole, parts } = d else {
            panic!("wrong kind")
        };
        assert_eq!(whole, crc64(&data));
        let want: Vec<u64> = data.chunks(300_000).map(crc64).collect();
        assert_eq!(parts, want);
    }

    #[test]
    fn single_put_has_no_parts_and_md5_matches() {
        let data = b"hello world".repeat(50_000);
        let (t, mut f) = file_of(&data);
        let (d, _) = hash_file(
            &mut f,
            t.path(),
            data.len() as u64,
            ChecksumKind::Crc64Nvme,
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            d,
            Digest::Crc64Nvme {
                whole: crc64(&data),
                parts: vec![]
            }
        );
        let (t, mut f) = file_of(&data);
        let (d, kept) = hash_file(
            &mut f,
            t.path(),
            data.len() as u64,
            ChecksumKind::Md5,
            None,
            false,
        )
        .unwrap();
        assert_eq!(d.md5_hex(), Some(md5_hex(&data).as_str()));
        assert!(kept.is_none());
        // Empty files too.
        let (t, mut f) = file_of(b"");
        let (d, _) = hash_file(&mut f, t.path(), 0, ChecksumKind::Crc64Nvme, None, false).unwrap();
        assert_eq!(
            d,
            Digest::Crc64Nvme {
                whole: crc64(b""),
                parts: vec![]
            }
        );
    }

    #[test]
    fn expected_prefers_the_crc_then_md5sum_then_a_plain_etag() {
        use crate::meta::ObjectMeta;
        use crate::store::Head;
        let head = |crc: Option<u64>, md5sum: Option<&str>, etag: Option<&str>| {
            let mut meta = ObjectMeta {
                checksum_crc64nvme: crc.map(crc64_to_base64),
                ..ObjectMeta::default()
            };
            if let Some(m) = md5sum {
                meta.user.insert("md5sum".into(), m.into());
            }
            Head {
                size: 3,
                etag: etag.map(str::to_string),
                meta,
            }
        };
        let md5 = md5_hex(b"abc");
        let plain = md5.to_uppercase();
        assert_eq!(
            Expected::of(&head(Some(7), Some(&md5), Some(&md5))),
            Some(Expected::Crc64Nvme(7))
        );
        assert_eq!(
            Expected::of(&head(None, Some(&plain), Some("x"))),
            Some(Expected::Md5(md5.clone()))
        );
        assert_eq!(
            Expected::of(&head(None, None, Some(&plain))),
            Some(Expected::Md5(md5.clone()))
        );
        let multipart = format!("{md5}-3");
        assert_eq!(Expected::of(&head(None, None, Some(&multipart))), None);
        let e = Expected::Crc64Nvme(crc64(b"abc"));
        assert!(e.matches(&Digest::Crc64Nvme {
            whole: crc64(b"abc"),
            parts: vec![]
        }));
        assert!(!e.matches(&Digest::Md5(md5.clone(), None)));
        assert!(Expected::Md5(md5.clone()).matches(&Digest::Md5(plain, None)));
        assert!(!Expected::Md5(md5).matches(&Digest::Md5(md5_hex(b"abd"), None)));
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_integrity_error() {
        let (t, mut f) = file_of(b"short");
        let err =
            hash_file(&mut f, t.path(), 10, ChecksumKind::Crc64Nvme, None, false).unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{err}");
    }

    /// Issue 13 (mutation testing): what a multipart upload sends with its parts, in both modes,
    /// and nothing for a single PUT.
    #[test]
    fn part_crcs_only_for_multipart_uploads() {
        let crc = Digest::Crc64Nvme {
            whole: 5,
            parts: vec![2, 3],
        };
        assert_eq!(crc.part_crcs(), Some((5, &[2u64, 3][..])));
        let single = Digest::Crc64Nvme {
            whole: 5,
            parts: vec![],
        };
        assert_eq!(single.part_crcs(), None);
        let md5 = Digest::Md5(
            "ab".into(),
            Some(PartCrcs {
                whole: 7,
                parts: vec![4],
            }),
        );
        assert_eq!(md5.part_crcs(), Some((7, &[4u64][..])));
        let md5_single = Digest::Md5(
            "ab".into(),
            Some(PartCrcs {
                whole: 7,
                parts: vec![],
            }),
        );
        assert_eq!(md5_single.part_crcs(), None);
        assert_eq!(Digest::Md5("ab".into(), None).part_crcs(), None);
    }

    /// Issue 13 (mutation testing): with MD5 a multipart upload still gets the CRCs of its parts
    /// and of the whole file; a single PUT (no part size, or 0) gets none.
    #[test]
    fn md5_mode_keeps_part_crcs_for_multipart_only() {
        let data: Vec<u8> = (0..700_001u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let (t, mut f) = file_of(&data);
        let (d, _) = hash_file(
            &mut f,
            t.path(),
            data.len() as u64,
            ChecksumKind::Md5,
            Some(300_000),
            false,
        )
        .unwrap();
        let want = PartCrcs {
            whole: crc64(&data),
            parts: data.chunks(300_000).map(crc64).collect(),
        };
        assert_eq!(d, Digest::Md5(md5_hex(&data), Some(want)));
        for part_size in [None, Some(0)] {
            for kind in [ChecksumKind::Md5, ChecksumKind::Crc64Nvme] {
                let (t, mut f) = file_of(&data);
                let (d, _) =
                    hash_file(&mut f, t.path(), data.len() as u64, kind, part_size, false).unwrap();
                let want = match kind {
                    ChecksumKind::Md5 => Digest::Md5(md5_hex(&data), None),
                    ChecksumKind::Crc64Nvme => Digest::Crc64Nvme {
                        whole: crc64(&data),
                        parts: vec![],
                    },
                };
                assert_eq!(d, want, "{kind:?} {part_size:?}");
            }
        }
    }

    #[test]
    fn kinds_names_and_combined_crcs() {
        assert_eq!(Expected::Crc64Nvme(1).kind(), ChecksumKind::Crc64Nvme);
        assert_eq!(Expected::Md5("ab".into()).kind(), ChecksumKind::Md5);
        let c = crc64(b"abc");
        let b64 = crc64_to_base64(c);
        // Error messages name the checksum that did not match.
        assert_eq!(
            Expected::Crc64Nvme(c).to_string(),
            format!("CRC64NVME {b64}")
        );
        assert_eq!(Expected::Md5("ab".into()).to_string(), "MD5 ab");
        let d = Digest::Crc64Nvme {
            whole: c,
            parts: vec![],
        };
        assert_eq!(d.to_string(), format!("CRC64NVME {b64}"));
        assert_eq!(Digest::Md5("cd".into(), None).to_string(), "MD5 cd");
        assert!(is_plain_md5(&md5_hex(b"abc")));
        assert!(!is_plain_md5("abc"));
        assert!(!is_plain_md5(&"g".repeat(32)));
        assert_eq!(
            crc64_combine(crc64(b"abc"), crc64(b"defgh"), 5),
            crc64(b"abcdefgh")
        );
    }
}
