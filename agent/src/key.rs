//! Object key naming, exactly as the Python tool: `{prefix}{name}{separator}{absolute path}`,
//! and `{data key}-listdir.json` for indexes.

use std::path::Path;

/// The suffix of index objects.
pub const INDEX_SUFFIX: &str = "-listdir.json";

/// Builds object keys for local paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNamer {
    prefix: String,
    name: String,
    separator: String,
}

impl KeyNamer {
    /// A namer for `-p PREFIX -n NAME --keyname-separator SEP`.
    pub fn new(
        prefix: impl Into<String>,
        name: impl Into<String>,
        separator: impl Into<String>,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            name: name.into(),
            separator: separator.into(),
        }
    }

    /// The host name part of keys.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of the object for the file at `path` (absolute).
    pub fn data_key(&self, path: &Path) -> String {
        format!(
            "{}{}{}{}",
            self.prefix,
            self.name,
            self.separator,
            path.to_string_lossy()
        )
    }

    /// The key of the index uploaded with the file at `path`.
    pub fn index_key(&self, path: &Path) -> String {
        format!("{}{INDEX_SUFFIX}", self.data_key(path))
    }

    /// The key prefix under which every file below directory `dir` lives (ends with `/`).
    pub fn dir_prefix(&self, dir: &Path) -> String {
        let mut k = self.data_key(dir);
        if !k.ends_with('/') {
            k.push('/');
        }
        k
    }

    /// The local path of a data key, if the key belongs to this namer.
    pub fn path_of(&self, key: &str) -> Option<std::path::PathBuf> {
        let rest = key
            .strip_prefix(&self.prefix)?
            .strip_prefix(&self.name)?
            .strip_prefix(&self.separator)?;
        rest.starts_with('/')
            .then(|| std::path::PathBuf::from(rest))
    }
}

/// Whether the file gets an index (the Python rule: its name contains `Data.db`).
pub fn wants_index(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains("Data.db"))
}

/// The host's fully qualified domain name, the Python tool's default `--name`.
pub fn fqdn() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    if host.contains('.') {
        return host;
    }
    // Like Python's socket.getfqdn(): ask the resolver for the canonical name.
    let hints = dns_lookup::AddrInfoHints {
        flags: libc_ai_canonname(),
        ..Default::default()
    };
    dns_lookup::getaddrinfo(Some(&host), None, Some(hints))
        .ok()
        .and_then(|mut it| it.find_map(|a| a.ok().and_then(|a| a.canonname)))
        .filter(|c| !c.is_empty())
        .unwrap_or(host)
}

const fn libc_ai_canonname() -> i32 {
    // AI_CANONNAME is 2 on Linux.
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_python_layout() {
        let k = KeyNamer::new("", "host1", ":");
        let p = Path::new("/var/lib/cassandra/data/ks/t-1/nb-1-big-Data.db");
        assert_eq!(
            k.data_key(p),
            "host1:/var/lib/cassandra/data/ks/t-1/nb-1-big-Data.db"
        );
        assert_eq!(
            k.index_key(p),
            "host1:/var/lib/cassandra/data/ks/t-1/nb-1-big-Data.db-listdir.json"
        );
        let k = KeyNamer::new("backups/", "h", "|");
        assert_eq!(k.data_key(Path::new("/a/b")), "backups/h|/a/b");
        assert_eq!(k.dir_prefix(Path::new("/a")), "backups/h|/a/");
        assert_eq!(k.path_of("backups/h|/a/b").unwrap(), Path::new("/a/b"));
        assert_eq!(k.path_of("other/h|/a/b"), None);
    }

    #[test]
    fn index_only_for_data_files() {
        assert!(wants_index(Path::new("/d/nb-1-big-Data.db")));
        assert!(wants_index(Path::new("/d/ks-t-ka-1-Data.db")));
        assert!(!wants_index(Path::new("/d/nb-1-big-Index.db")));
        assert!(!wants_index(Path::new("/Data.db/x")));
    }
}
