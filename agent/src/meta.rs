//! Object metadata the Python tool writes: `stat` (owner and mode as JSON) and `md5sum`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use md5::{Digest, Md5};

use crate::error::{Error, Result};

/// User metadata key holding the file's owner and mode.
pub const STAT: &str = "stat";
/// User metadata key holding the hex MD5 of the whole file.
pub const MD5SUM: &str = "md5sum";

/// Metadata stored with an object: content type and user metadata (x-amz-meta-*).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectMeta {
    /// Content-Type, when not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata, keys lower-case.
    #[serde(default)]
    pub user: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Metadata of a data object: `stat` and `md5sum`.
    pub fn for_file(meta: &std::fs::Metadata, md5_hex: &str) -> Self {
        let mut user = BTreeMap::new();
        user.insert(
            STAT.to_string(),
            stat_json(meta.uid(), meta.gid(), meta.mode()),
        );
        user.insert(MD5SUM.to_string(), md5_hex.to_string());
        Self {
            content_type: None,
            user,
        }
    }

    /// Metadata of an index object.
    pub fn json() -> Self {
        Self {
            content_type: Some("application/json".into()),
            user: BTreeMap::new(),
        }
    }

    /// The stored MD5, if any.
    pub fn md5sum(&self) -> Option<&str> {
        self.user.get(MD5SUM).map(String::as_str)
    }
}

/// The `stat` metadata value, formatted as Python's `json.dumps` formats the dict
/// `{"uid", "gid", "mode", "user", "group"}` (user and group left out when the lookup fails).
pub fn stat_json(uid: u32, gid: u32, mode: u32) -> String {
    let mut s = format!("{{\"uid\": {uid}, \"gid\": {gid}, \"mode\": {mode}");
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        s.push_str(&format!(
            ", \"user\": {}",
            serde_json::Value::String(u.name)
        ));
    }
    if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        s.push_str(&format!(
            ", \"group\": {}",
            serde_json::Value::String(g.name)
        ));
    }
    s.push('}');
    s
}

/// The parsed `stat` metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StatMeta {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// st_mode (type and permission bits).
    pub mode: u32,
    /// Owner name, when it was known.
    pub user: Option<String>,
    /// Group name, when it was known.
    pub group: Option<String>,
}

impl StatMeta {
    /// Parses the `stat` value; `None` when it is not the expected JSON.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

/// Hex MD5 of a byte slice.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// Reads `len` bytes of an open file, returning its MD5 and, when `keep` is true, the bytes.
/// Fails with [`Error::Integrity`] when the file is shorter than `len` (it changed under us).
pub fn hash_file(
    file: &mut std::fs::File,
    path: &Path,
    len: u64,
    keep: bool,
) -> Result<(String, Option<Vec<u8>>)> {
    let mut hasher = Md5::new();
    let mut kept = keep.then(|| Vec::with_capacity(len as usize));
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = file
            .read(&mut buf[..want])
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Err(Error::Integrity(format!(
                "{} shrank while being read",
                path.display()
            )));
        }
        hasher.update(&buf[..n]);
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&buf[..n]);
        }
        left -= n as u64;
    }
    Ok((hex::encode(hasher.finalize()), kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_json_matches_python_json_dumps() {
        // Python: json.dumps({'uid': 0, 'gid': 0, 'mode': 33188, 'user': 'root', 'group': 'root'})
        assert_eq!(
            stat_json(0, 0, 0o100644),
            r#"{"uid": 0, "gid": 0, "mode": 33188, "user": "root", "group": "root"}"#
        );
        // Unknown ids: names are left out.
        assert_eq!(
            stat_json(4_000_000, 4_000_001, 0o100600),
            r#"{"uid": 4000000, "gid": 4000001, "mode": 33152}"#
        );
        let p = StatMeta::parse(&stat_json(0, 0, 0o100644)).unwrap();
        assert_eq!(
            (p.uid, p.mode, p.user.as_deref()),
            (0, 0o100644, Some("root"))
        );
    }

    #[test]
    fn md5_of_known_input() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
