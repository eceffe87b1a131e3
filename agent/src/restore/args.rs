//! `tableslurp`'s command line, with the Python tool's spellings, validated into [`SlurpConfig`].

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{MIB, S3Flags, StoreLocation, store_location};
use crate::error::{Error, Result};
use crate::key::{INDEX_SUFFIX, KeyNamer};

/// tableslurp restores a directory backed up by tablesnap: it reads the newest `-listdir.json`
/// index of ORIGIN (or the one named with -f, or the newest not later than --as-of) and downloads
/// every file it lists into TARGET, verified against the size and checksum (CRC64NVME or MD5) stored with it.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tableslurp",
    version,
    max_term_width = 100,
    args_override_self = true,
    infer_long_args = true
)]
pub struct SlurpArgs {
    /// S3 bucket to download files from, or file:///path for a local directory store.
    pub bucket: String,

    /// Path inside the bucket to the directory you want to download files from (the absolute
    /// path the files had on the backed-up host).
    pub origin: String,

    /// Path in the local filesystem where files should be downloaded to.
    pub target: PathBuf,

    /// Credentials, region and endpoint.
    #[command(flatten)]
    pub s3: S3Flags,

    /// Preserve the owner, group and permissions stored with each file (its `stat` metadata).
    /// This overrides -o and -g.
    #[arg(short = 'p', long)]
    pub preserve: bool,

    /// After download, chown files to this user (name or uid).
    #[arg(short = 'o', long, value_name = "USER")]
    pub owner: Option<String>,

    /// After download, chgrp files to this group (name or gid).
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Number of downloads (files or parts of large files) at once.
    #[arg(short = 't', long, default_value = "4", value_name = "N")]
    pub threads: NonZeroUsize,

    /// Restore the file set this file belongs to (the index written with it) instead of the
    /// newest one.
    #[arg(short = 'f', long, value_name = "FILE", group = "which")]
    pub file: Option<String>,

    /// Restore every directory below ORIGIN (keyspaces, tables, backups, snapshots), each from its
    /// newest index, into the same layout below TARGET.
    #[arg(short = 'r', long, group = "which")]
    pub recursive: bool,

    /// Restore the commit log segments archived under PATH in the bucket that were archived at or
    /// after the newest index below ORIGIN (the SSTables' restore point), into TARGET.
    #[arg(long, value_name = "PATH", group = "which")]
    pub commitlogs: Option<String>,

    /// Point-in-time restore: with --as-of T, besides the SSTables as of the newest index not
    /// later than T, download every commit log segment archived under ARCHIVE (the agent's
    /// `--commitlog-archive`) that replaying up to T needs, into --segments-to, and print the
    /// `commitlog_archiving.properties` lines that make Cassandra replay them up to T. Refuses a T
    /// outside the recoverable window or a gap in the segments.
    #[arg(
        long = "point-in-time",
        value_name = "ARCHIVE",
        requires = "as_of",
        requires = "segments_to",
        conflicts_with_all = ["file", "commitlogs"]
    )]
    pub point_in_time: Option<String>,

    /// Where --point-in-time puts the segments: Cassandra's `restore_directories` (not a data or
    /// commit log directory of the node).
    #[arg(long = "segments-to", value_name = "DIR", requires = "point_in_time")]
    pub segments_to: Option<PathBuf>,

    /// Also write the `commitlog_archiving.properties` lines of --point-in-time to FILE.
    #[arg(long = "properties", value_name = "FILE", requires = "point_in_time")]
    pub properties: Option<PathBuf>,

    /// Download files even if a file of the same size exists in TARGET.
    #[arg(long)]
    pub force: bool,

    /// Use this name instead of the FQDN to find the files of the backed-up host.
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<String>,

    /// The string prefix the backup was written with (tablesnap -p/--prefix).
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,

    /// Separator between name and path in keys (tablesnap --keyname-separator).
    #[arg(long = "keyname-separator", default_value = ":", value_name = "SEP")]
    pub keyname_separator: String,

    /// Restore the newest index not later than TIME (RFC 3339 such as 2024-05-01T12:00:00Z, or
    /// unix seconds). An index's time is its LastModified in the bucket.
    #[arg(long = "as-of", value_name = "TIME", conflicts_with = "file")]
    pub as_of: Option<String>,

    /// Print what would be downloaded; write nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Objects larger than this many MiB are downloaded in ranged parts of this size, in parallel.
    #[arg(long = "part-size", default_value = "64", value_name = "MB")]
    pub part_size: u64,

    /// Attempts of one storage request.
    #[arg(long, default_value = "3", value_name = "N")]
    pub retries: NonZeroUsize,
}

/// What to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The newest index directly in ORIGIN.
    Newest,
    /// The index written with this file of ORIGIN.
    File(String),
    /// The newest index of every directory below ORIGIN.
    Recursive,
    /// Commit log segments under this path, from the restore point of ORIGIN on.
    Commitlogs(String),
}

/// Where a point-in-time restore finds and puts commit log segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointInTime {
    /// The archive directory on the backed-up host, as keys spell it.
    pub archive: String,
    /// Where segments go (Cassandra's `restore_directories`), absolute.
    pub segments_to: PathBuf,
    /// Where the properties lines are written too.
    pub properties: Option<PathBuf>,
}

/// Who owns restored files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Whoever runs tableslurp.
    Unchanged,
    /// The owner and group in each file's `stat` metadata.
    Preserve,
    /// These ids.
    Set {
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
    },
}

/// tableslurp's validated configuration.
#[derive(Debug, Clone)]
pub struct SlurpConfig {
    /// Where the backup is.
    pub store: StoreLocation,
    /// How keys are named.
    pub keys: KeyNamer,
    /// The backed-up directory, absolute, without trailing slash.
    pub origin: String,
    /// Where files go.
    pub target: PathBuf,
    /// Which index(es).
    pub selection: Selection,
    /// Upper bound on index time, unix seconds.
    pub as_of: Option<i64>,
    /// Downloads at once.
    pub threads: usize,
    /// Download even when a file of the right size exists.
    pub force: bool,
    /// Only print the plan.
    pub dry_run: bool,
    /// Owner of restored files.
    pub ownership: Ownership,
    /// Ranged part size in bytes.
    pub part_size: u64,
    /// Point-in-time restore of commit log segments to `as_of`.
    pub point_in_time: Option<PointInTime>,
}

impl TryFrom<SlurpArgs> for SlurpConfig {
    type Error = Error;

    fn try_from(a: SlurpArgs) -> Result<Self> {
        let bad = |m: String| Error::InvalidConfig(m);
        let store = store_location(&a.s3.store_args(&a.bucket, a.retries.get()))?;
        let origin = abs_dir(&a.origin, "origin")?;
        if a.keyname_separator.is_empty() {
            return Err(bad("--keyname-separator '': must not be empty".into()));
        }
        let name = match a.name {
            Some(n) if n.is_empty() => return Err(bad("--name '': must not be empty".into())),
            Some(n) => n,
            None => crate::key::fqdn(),
        };
        let selection = match (a.file, a.recursive, a.commitlogs) {
            (Some(f), _, _) => {
                let f = f.strip_suffix(INDEX_SUFFIX).unwrap_or(&f).to_string();
                if f.is_empty() || f.contains('/') || f == "." || f == ".." {
                    return Err(bad(format!(
                        "-f/--file {f:?}: expected the name of a file in ORIGIN, such as nb-5-big-Data.db"
                    )));
                }
                Selection::File(f)
            }
            (None, true, _) => Selection::Recursive,
            (None, false, Some(p)) => Selection::Commitlogs(abs_dir(&p, "--commitlogs")?),
            (None, false, None) => Selection::Newest,
        };
        let as_of = match a.as_of {
            None => None,
            Some(t) => Some(crate::when::parse_time(&t).ok_or_else(|| {
                bad(format!(
                    "--as-of {t:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or unix seconds"
                ))
            })?),
        };
        if a.part_size == 0 || a.part_size > 5120 {
            return Err(bad(format!(
                "--part-size {}: must be between 1 and 5120 (MiB)",
                a.part_size
            )));
        }
        if a.target.as_os_str().is_empty() {
            return Err(bad("target '': expected a directory path".into()));
        }
        if let Ok(m) = std::fs::metadata(&a.target)
            && !m.is_dir()
        {
            return Err(bad(format!(
                "target {:?}: exists and is not a directory",
                a.target.display().to_string()
            )));
        }
        let point_in_time = match (a.point_in_time, a.segments_to) {
            (Some(archive), Some(to)) => {
                let archive = abs_dir(&archive, "--point-in-time")?;
                let to = std::path::absolute(&to).map_err(|e| Error::io(&to, e))?;
                let target = std::path::absolute(&a.target).map_err(|e| Error::io(&a.target, e))?;
                if to.starts_with(&target) || target.starts_with(&to) {
                    return Err(bad(format!(
                        "--segments-to {:?}: overlaps TARGET {:?}; Cassandra replays every file of restore_directories, so give it a directory of its own",
                        to.display().to_string(),
                        target.display().to_string()
                    )));
                }
                Some(PointInTime {
                    archive,
                    segments_to: to,
                    properties: a.properties,
                })
            }
            _ => None,
        };
        let ownership = if a.preserve {
            Ownership::Preserve
        } else if a.owner.is_some() || a.group.is_some() {
            Ownership::Set {
                uid: a.owner.as_deref().map(lookup_user).transpose()?,
                gid: a.group.as_deref().map(lookup_group).transpose()?,
            }
        } else {
            Ownership::Unchanged
        };
        Ok(SlurpConfig {
            store,
            keys: KeyNamer::new(a.prefix, name, a.keyname_separator),
            origin,
            target: a.target,
            selection,
            as_of,
            threads: a.threads.get(),
            force: a.force,
            dry_run: a.dry_run,
            ownership,
            part_size: a.part_size * MIB,
            point_in_time,
        })
    }
}

/// An absolute directory path as keys spell it: no trailing slash (except `/` itself).
pub fn abs_dir(p: &str, what: &str) -> Result<String> {
    if !p.starts_with('/') {
        return Err(Error::InvalidConfig(format!(
            "{what} {p:?}: expected the absolute path the files had on the backed-up host, such as /var/lib/cassandra/data/ks/t-1234"
        )));
    }
    let t = p.trim_end_matches('/');
    Ok(if t.is_empty() { "/".into() } else { t.into() })
}

/// A user name or numeric uid.
pub fn lookup_user(u: &str) -> Result<u32> {
    if let Ok(id) = u.parse::<u32>() {
        return Ok(id);
    }
    match nix::unistd::User::from_name(u) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        _ => Err(Error::InvalidConfig(format!(
            "-o/--owner {u:?}: no such user on this host; give a user name or a numeric uid"
        ))),
    }
}

/// A group name or numeric gid.
pub fn lookup_group(g: &str) -> Result<u32> {
    if let Ok(id) = g.parse::<u32>() {
        return Ok(id);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        _ => Err(Error::InvalidConfig(format!(
            "-g/--group {g:?}: no such group on this host; give a group name or a numeric gid"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> SlurpArgs {
        SlurpArgs::try_parse_from(std::iter::once("tableslurp").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// The Python tool's spellings, short and long, keep their meaning.
    #[test]
    fn python_spellings() {
        let a = parse(&[
            "-k",
            "K",
            "-s",
            "S",
            "--token",
            "T",
            "--aws-region",
            "eu-west-1",
            "-p",
            "-o",
            "root",
            "-g",
            "root",
            "-t",
            "7",
            "-f",
            "nb-1-big-Data.db",
            "--force",
            "-n",
            "host1",
            "bkt",
            "/var/lib/cassandra/data/ks/t-1/",
            "/restore",
        ]);
        assert_eq!(
            (
                a.s3.aws_key.as_deref(),
                a.s3.aws_secret.as_deref(),
                a.s3.token.as_deref()
            ),
            (Some("K"), Some("S"), Some("T"))
        );
        assert_eq!(a.s3.aws_region.as_deref(), Some("eu-west-1"));
        assert!(a.preserve && a.force);
        assert_eq!(
            (a.owner.as_deref(), a.group.as_deref()),
            (Some("root"), Some("root"))
        );
        assert_eq!(a.threads.get(), 7);
        assert_eq!(a.name.as_deref(), Some("host1"));
        let long = parse(&[
            "--aws-key",
            "K",
            "--aws-secret",
            "S",
            "--preserve",
            "--owner",
            "root",
            "--group",
            "root",
            "--threads",
            "2",
            "--file",
            "x",
            "--name",
            "h",
            "b",
            "/o",
            "/t",
        ]);
        assert_eq!(long.file.as_deref(), Some("x"));
        let c = SlurpConfig::try_from(a).unwrap();
        assert_eq!(c.origin, "/var/lib/cassandra/data/ks/t-1");
        assert_eq!(c.selection, Selection::File("nb-1-big-Data.db".into()));
        // --preserve overrides -o/-g, as in Python.
        assert_eq!(c.ownership, Ownership::Preserve);
        assert_eq!(c.keys.data_key(std::path::Path::new("/a")), "host1:/a");
        let r = SlurpConfig::try_from(parse(&["-r", "-n", "h", "bkt", "/o", "/t"])).unwrap();
        assert_eq!(r.selection, Selection::Recursive);
        let cl = SlurpConfig::try_from(parse(&[
            "--commitlogs",
            "/cl/",
            "-n",
            "h",
            "bkt",
            "/o",
            "/t",
        ]))
        .unwrap();
        assert_eq!(cl.selection, Selection::Commitlogs("/cl".into()));
        // -f, -r and --commitlogs exclude each other; -f and --as-of too.
        for bad in [
            &["-f", "x", "-r", "b", "/o", "/t"][..],
            &["-r", "--commitlogs", "/c", "b", "/o", "/t"],
            &["-f", "x", "--as-of", "0", "b", "/o", "/t"],
        ] {
            assert!(
                SlurpArgs::try_parse_from(std::iter::once("tableslurp").chain(bad.iter().copied()))
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
