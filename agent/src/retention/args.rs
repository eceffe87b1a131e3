//! `tablechop`'s command line, with the Python tool's spellings, validated into [`ChopConfig`].

use std::num::NonZeroUsize;

use clap::Parser;

use crate::config::{S3Flags, StoreLocation, store_location};
use crate::error::{Error, Result};
use crate::key::KeyNamer;

/// tablechop deletes old backups: below PATH, in every directory, it keeps the newest
/// `-listdir.json` index and every index younger than AGE days, and every file those indexes
/// list; it deletes every other object older than the grace period.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tablechop",
    version,
    max_term_width = 100,
    args_override_self = true,
    infer_long_args = true
)]
pub struct ChopArgs {
    /// S3 bucket, or file:///path for a local directory store.
    pub bucket: String,

    /// Path portion of the keys (the backed-up directory, e.g. /var/lib/cassandra/data).
    pub path: String,

    /// How many days worth of backups to keep (a negative number, which the Python tool also
    /// accepts, keeps only the newest index of each directory).
    #[arg(allow_negative_numbers = true)]
    pub age: i32,

    /// Dry run: delete nothing, report what would be deleted.
    #[arg(short = 'd', long = "debug", alias = "dry-run")]
    pub debug: bool,

    /// Print every key deleted (or, with -d, that would be deleted).
    #[arg(short = 'l', long = "list-deletes")]
    pub list_deletes: bool,

    /// Indexes read at once.
    #[arg(
        short = 'j',
        long = "parallel",
        alias = "jobs",
        default_value = "8",
        value_name = "N"
    )]
    pub jobs: NonZeroUsize,

    /// Credentials, region and endpoint.
    #[command(flatten)]
    pub s3: S3Flags,

    /// Use this name instead of the FQDN to identify the files from this host.
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<String>,

    /// The string prefix the backup was written with (tablesnap -p/--prefix).
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,

    /// Separator between name and path in keys (tablesnap --keyname-separator).
    #[arg(long = "keyname-separator", default_value = ":", value_name = "SEP")]
    pub keyname_separator: String,

    /// Never delete an object younger than this (seconds, or with a unit: 90m, 6h, 1d), so that
    /// an index being written cannot lose its files.
    #[arg(long, default_value = "1d", value_name = "DURATION")]
    pub grace: String,

    /// Evaluate ages as if it were TIME (RFC 3339 or unix seconds). For tests and what-if runs
    /// with -d; hidden because a wrong value deletes live backups.
    #[arg(long, hide = true, value_name = "TIME")]
    pub now: Option<String>,

    /// Attempts of one storage request.
    #[arg(long, default_value = "3", value_name = "N")]
    pub retries: NonZeroUsize,

    /// Also apply retention to the commit log segments archived under DIR (tablesnap
    /// `--commitlog-archive`): keep the segments that a restore to a moment after the oldest kept
    /// index can need, and only those. Without it, segments are never deleted.
    #[arg(long = "commitlog-archive", value_name = "DIR")]
    pub commitlog_archive: Option<String>,
}

/// tablechop's validated configuration.
#[derive(Debug, Clone)]
pub struct ChopConfig {
    /// Where the backups are.
    pub store: StoreLocation,
    /// The key prefix below which objects are considered (ends with `/`).
    pub list_prefix: String,
    /// How keys are named.
    pub keys: KeyNamer,
    /// The rule.
    pub rule: super::mark::Rule,
    /// Dry run.
    pub dry_run: bool,
    /// Print every deleted key.
    pub list_deletes: bool,
    /// Indexes read at once.
    pub jobs: usize,
    /// The key prefix of the commit log archive swept too (ends with `/`).
    pub commitlog_prefix: Option<String>,
}

impl TryFrom<ChopArgs> for ChopConfig {
    type Error = Error;

    fn try_from(a: ChopArgs) -> Result<Self> {
        let bad = |m: String| Error::InvalidConfig(m);
        let store = store_location(&a.s3.store_args(&a.bucket, a.retries.get()))?;
        let path = crate::restore::args::abs_dir(&a.path, "path")?;
        if a.keyname_separator.is_empty() {
            return Err(bad("--keyname-separator '': must not be empty".into()));
        }
        let name = match a.name {
            Some(n) if n.is_empty() => return Err(bad("--name '': must not be empty".into())),
            Some(n) => n,
            None => crate::key::fqdn(),
        };
        let grace = crate::when::parse_duration(&a.grace).ok_or_else(|| {
            bad(format!(
                "--grace {:?}: expected seconds or a number with a unit: 90m, 6h, 1d",
                a.grace
            ))
        })?;
        let now = match a.now {
            None => crate::when::now(),
            Some(t) => crate::when::parse_time(&t).ok_or_else(|| {
                bad(format!(
                    "--now {t:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or unix seconds"
                ))
            })?,
        };
        let keys = KeyNamer::new(a.prefix, name, a.keyname_separator);
        let commitlog_prefix = a
            .commitlog_archive
            .map(|d| crate::restore::args::abs_dir(&d, "--commitlog-archive"))
            .transpose()?
            .map(|d| keys.dir_prefix(std::path::Path::new(&d)));
        Ok(ChopConfig {
            commitlog_prefix,
            store,
            list_prefix: keys.dir_prefix(std::path::Path::new(&path)),
            keys,
            rule: super::mark::Rule {
                now,
                age: i64::from(a.age) * 86_400,
                grace: i64::try_from(grace).unwrap_or(i64::MAX),
            },
            dry_run: a.debug,
            list_deletes: a.list_deletes,
            jobs: a.jobs.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Python tool's spellings keep their meaning.
    #[test]
    fn python_spellings() {
        let a = ChopArgs::try_parse_from([
            "tablechop",
            "-d",
            "-l",
            "-j",
            "16",
            "-k",
            "K",
            "-s",
            "S",
            "-n",
            "host1",
            "bkt",
            "/var/lib/cassandra/data",
            "7",
        ])
        .unwrap();
        assert!(a.debug && a.list_deletes);
        assert_eq!(a.jobs.get(), 16);
        assert_eq!(
            (a.s3.aws_key.as_deref(), a.s3.aws_secret.as_deref()),
            (Some("K"), Some("S"))
        );
        let b = ChopArgs::try_parse_from([
            "tablechop",
            "--debug",
            "--list-deletes",
            "--key",
            "K",
            "--secret",
            "S",
            "--name",
            "h",
            "b",
            "/p",
            "3",
        ])
        .unwrap();
        assert!(b.debug && b.list_deletes);
        let c = ChopConfig::try_from(a).unwrap();
        assert_eq!(c.list_prefix, "host1:/var/lib/cassandra/data/");
        assert_eq!((c.rule.age, c.rule.grace), (7 * 86_400, 86_400));
        assert!(c.dry_run);
    }
}
