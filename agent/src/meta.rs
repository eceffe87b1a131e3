//! Object metadata the Python tool writes: `stat` (owner and mode as JSON) and `md5sum`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use crate::checksum::Digest;

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
    /// S3's full-object CRC64NVME checksum field (base64), not user metadata: filled in by a head
    /// of an object that has one; the integrity argument of a put decides what is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_crc64nvme: Option<String>,
}

impl ObjectMeta {
    /// Metadata of the data object `key`: the Content-Type the Python tool's boto guesses from the
    /// name, `stat`, and `md5sum` when the checksum is an MD5.
    pub fn for_file(key: &str, meta: &std::fs::Metadata, digest: &Digest) -> Self {
        let mut user = BTreeMap::new();
        user.insert(
            STAT.to_string(),
            stat_json(meta.uid(), meta.gid(), meta.mode()),
        );
        if let Some(md5) = digest.md5_hex() {
            user.insert(MD5SUM.to_string(), md5.to_string());
        }
        Self {
            content_type: content_type(key).map(str::to_string),
            user,
            checksum_crc64nvme: None,
        }
    }

    /// Metadata of an index object.
    pub fn json() -> Self {
        Self {
            content_type: Some("application/json".into()),
            user: BTreeMap::new(),
            checksum_crc64nvme: None,
        }
    }

    /// The stored MD5, if any.
    pub fn md5sum(&self) -> Option<&str> {
        self.user.get(MD5SUM).map(String::as_str)
    }

    /// The stored full-object CRC64NVME, if any.
    pub fn crc64nvme(&self) -> Option<u64> {
        self.checksum_crc64nvme
            .as_deref()
            .and_then(crate::checksum::crc64_from_base64)
    }
}

/// The Content-Type boto sets for a file of this name: Python's `mimetypes.guess_type`, whose
/// built-in table knows, of the names Cassandra writes, only `.txt` (`TOC.txt`) and `.json`
/// (`manifest.json`); `None` leaves the store's default, `application/octet-stream`, as boto does.
pub fn content_type(name: &str) -> Option<&'static str> {
    let base = name.rsplit(['/', ':']).next().unwrap_or(name);
    let ext = base.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "txt" => Some("text/plain"),
        "json" => Some("application/json"),
        _ => None,
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

    /// Issue 15.5: the Python tool's objects carry boto's guess from the name.
    #[test]
    fn content_type_is_pythons_guess() {
        assert_eq!(
            content_type("h:/d/ks/t-1/nb-1-big-TOC.txt"),
            Some("text/plain")
        );
        assert_eq!(
            content_type("h:/d/ks/t-1/snapshots/s/manifest.json"),
            Some("application/json")
        );
        for name in [
            "h:/d/nb-1-big-Data.db",
            "h:/d/nb-1-big-Digest.crc32",
            "h:/d/snapshots/s/schema.cql",
            "h:/c/CommitLog-7-1.log",
            "h:/d/no-extension",
            "h:/d.txt/Data.db",
        ] {
            assert_eq!(content_type(name), None, "{name}");
        }
    }

    /// Issue 13 (mutation testing): a data object carries `stat`, `md5sum` with an MD5 only, and
    /// the guessed Content-Type; an index object is JSON.
    #[test]
    fn metadata_of_data_and_index_objects() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let m = std::fs::metadata(t.path()).unwrap();
        let md5 = Digest::Md5("900150983cd24fb0d6963f7d28e17f72".into(), None);
        let o = ObjectMeta::for_file("h:/d/ks/t-1/nb-1-big-TOC.txt", &m, &md5);
        assert_eq!(o.content_type.as_deref(), Some("text/plain"));
        assert_eq!(o.md5sum(), Some("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(o.user[STAT], stat_json(m.uid(), m.gid(), m.mode()));
        let crc = Digest::Crc64Nvme {
            whole: 1,
            parts: vec![],
        };
        let o = ObjectMeta::for_file("h:/d/ks/t-1/nb-1-big-Data.db", &m, &crc);
        assert_eq!(o.md5sum(), None);
        assert!(o.user.contains_key(STAT));
        assert_eq!(o.checksum_crc64nvme, None);
        let j = ObjectMeta::json();
        assert_eq!(j.content_type.as_deref(), Some("application/json"));
        assert!(j.user.is_empty());
    }
}
