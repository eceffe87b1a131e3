//! Raw command-line arguments of `tablesnap`, with the Python tool's spellings and defaults.
//! Nothing downstream reads these: [`crate::config::Config`] is built from them and validated.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The inotify events a file can be shipped on (`--listen-events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
#[value(rename_all = "verbatim")]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ListenEvent {
    /// A file was renamed into a watched directory.
    IN_MOVED_TO,
    /// A file opened for writing was closed.
    IN_CLOSE_WRITE,
    /// A file (or hard link) was created. Meant for files that appear whole, such as the hard links
    /// of commit log archiving (`archive_command=/bin/ln %path /dir/%name`); a file still being
    /// written when it is created is shipped again once its write ends (IN_CLOSE_WRITE).
    IN_CREATE,
}

/// How the agent decides that a file is ready to ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Mode {
    /// The Python tool's rule: a file is ready when a listened event fires for it.
    #[default]
    Generic,
    /// SSTable-aware: ship whole SSTables once complete and committed.
    Cassandra,
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// tablesnap watches directories with inotify and ships every new file to S3 (or a local directory
/// store), with a JSON index of the file's directory, so that a table can be restored as of any index.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tablesnap",
    version,
    max_term_width = 100,
    args_override_self = true,
    infer_long_args = true
)]
pub struct Args {
    /// S3 bucket name, or file:///path for a local directory store.
    pub bucket: String,

    /// Paths to be watched.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// AWS access key id (prefer the AWS_ACCESS_KEY_ID environment variable: arguments show in `ps`).
    #[arg(short = 'k', long = "aws-key", value_name = "KEY")]
    pub aws_key: Option<String>,

    /// AWS secret access key (prefer AWS_SECRET_ACCESS_KEY: arguments show in `ps`).
    #[arg(short = 's', long = "aws-secret", value_name = "SECRET")]
    pub aws_secret: Option<String>,

    /// AWS session token for temporary credentials given with -k/-s.
    #[arg(
        long = "aws-token",
        env = "AWS_SECURITY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub aws_token: Option<String>,

    /// AWS region [default: the SDK's region chain, else us-east-1].
    #[arg(long = "aws-region", value_name = "REGION")]
    pub aws_region: Option<String>,

    /// S3-compatible endpoint (Garage, MinIO, Ceph RGW); also read from AWS_ENDPOINT_URL_S3 and
    /// AWS_ENDPOINT_URL. Path-style addressing is used whenever an endpoint is set.
    #[arg(long = "endpoint-url", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// With --endpoint-url, use virtual-hosted-style addressing (bucket.host) instead of path-style.
    #[arg(long = "virtual-hosted-style")]
    pub virtual_hosted_style: bool,

    /// Recursively watch the given path(s) for new SSTables.
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Automatically start watching new subdirectories within path(s).
    #[arg(short = 'a', long = "auto-add")]
    pub auto_add: bool,

    /// Backup existing files to S3 if they are not already there.
    #[arg(short = 'B', long)]
    pub backup: bool,

    /// Use the REDUCED_REDUNDANCY storage class.
    #[arg(short = 'R', long = "reduced-redundancy")]
    pub reduced_redundancy: bool,

    /// Set a string prefix for uploaded files in S3.
    #[arg(short = 'p', long, default_value = "")]
    pub prefix: String,

    /// Do not store a JSON representation of the current directory listing in S3 when uploading a
    /// file to S3.
    #[arg(long = "without-index")]
    pub without_index: bool,

    /// Enable server-side encryption (AES256) for all stored files.
    #[arg(long = "with-sse")]
    pub with_sse: bool,

    /// Server-side encryption with this KMS key id (aws:kms) instead of AES256.
    #[arg(long = "sse-kms-key-id", value_name = "ID")]
    pub sse_kms_key_id: Option<String>,

    /// Storage class of uploaded objects (STANDARD, STANDARD_IA, ...); overrides -R.
    #[arg(long = "storage-class", value_name = "CLASS")]
    pub storage_class: Option<String>,

    /// Separator for the keyname between name and path.
    #[arg(long = "keyname-separator", default_value = ":", value_name = "SEP")]
    pub keyname_separator: String,

    /// Number of files uploaded at once.
    #[arg(short = 't', long, default_value = "4", value_name = "N")]
    pub threads: NonZeroUsize,

    /// Use this name instead of the FQDN to identify the files from this host.
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<String>,

    /// Compare the MD5 of every existing file with the bucket at start (with -B), not only sizes
    /// (with `--checksum crc64nvme`, the CRC64NVME).
    #[arg(long = "md5-on-start")]
    pub md5_on_start: bool,

    /// How each object's content is proven: `md5` writes the Python tool's `md5sum` metadata (about
    /// 2 CPU-seconds per GiB); `crc64nvme` fills S3's full-object checksum field instead, computed
    /// in hardware, checked by the server and by tableslurp, with no `md5sum` metadata.
    #[arg(long, value_enum, default_value = "md5", value_name = "KIND")]
    pub checksum: crate::checksum::ChecksumKind,

    /// Which events to listen on; can be given several times [default: IN_MOVED_TO IN_CLOSE_WRITE].
    /// IN_CREATE is for files that appear whole (hard links, as in commit log archiving); with it,
    /// a file still being written is shipped again when its write ends. Generic mode only:
    /// cassandra mode follows every create, close and rename itself.
    #[arg(long = "listen-events", value_enum, action = clap::ArgAction::Append, value_name = "EVENT")]
    pub listen_events: Vec<ListenEvent>,

    /// Delete the local file after its upload has been confirmed.
    #[arg(long = "delete-on-backup")]
    pub delete_on_backup: bool,

    /// Exclude files matching any of these regular expressions from upload (one or more values,
    /// and the flag can be repeated). If neither exclude nor include is given, files whose path
    /// contains "-tmp" are excluded. In cassandra mode an SSTable ships only if the rule accepts
    /// every one of its files.
    #[arg(short = 'e', long, value_name = "REGEX", conflicts_with = "include", num_args = 1.., action = clap::ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Include only files matching any of these regular expressions (one or more values, and the
    /// flag can be repeated).
    #[arg(short = 'i', long, value_name = "REGEX", num_args = 1.., action = clap::ArgAction::Append)]
    pub include: Vec<String>,

    /// Max size in MiB of a file uploaded in one PUT; larger files are uploaded in parts.
    #[arg(long = "max-upload-size", default_value = "5120", value_name = "MB")]
    pub max_upload_size: u64,

    /// Part size in MiB for multipart uploads (5 to 5120).
    #[arg(
        long = "multipart-chunk-size",
        default_value = "256",
        value_name = "MB"
    )]
    pub multipart_chunk_size: u64,

    /// Attempts of one storage request before the file is put back in the queue for later; 0 (the
    /// Python tool's documented default) means the same as 1: one attempt, no retry inside it.
    #[arg(long, default_value = "1", value_name = "N")]
    pub retries: u32,

    /// generic: ship a file when a listened event fires (the Python tool's rule);
    /// cassandra: ship whole SSTables once complete and committed.
    #[arg(long, value_enum, default_value = "generic")]
    pub mode: Mode,

    /// Where complete SSTables are hard-linked before upload (cassandra mode); must be on the same
    /// filesystem as the data [default: .tablesnap-staging beside each watched path].
    #[arg(long = "staging-dir", value_name = "PATH")]
    pub staging_dir: Option<PathBuf>,

    /// Serve /healthz and /metrics on this address (e.g. 0.0.0.0:9150).
    #[arg(long = "http-listen", value_name = "ADDR")]
    pub http_listen: Option<String>,

    /// Log format on stderr.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Seconds between periodic comparisons of the disk with the bucket (by LIST), which queue
    /// whatever inotify missed or the bucket lost; 0 turns them off.
    #[arg(
        long = "rescan-interval",
        default_value = "300",
        value_name = "SECONDS"
    )]
    pub rescan_interval: u64,

    /// Seconds one storage request (one part, at most --multipart-chunk-size MiB) may take before
    /// it is abandoned as stalled and retried.
    #[arg(
        long = "request-timeout",
        default_value = "120",
        value_name = "SECONDS"
    )]
    pub request_timeout: u64,

    /// Seconds to let queued and in-flight uploads finish after SIGTERM/SIGINT.
    #[arg(
        long = "shutdown-timeout",
        default_value = "30",
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: u64,

    /// At start, treat a missing bucket or refused credentials like an unreachable store: log an
    /// error and try again until it works, instead of exiting with code 2. For sidecars, which
    /// must never crash-loop.
    #[arg(long = "wait-for-bucket")]
    pub wait_for_bucket: bool,

    /// The directory Cassandra's `archive_command` puts closed commit log segments in
    /// (`archive_command=/bin/ln %path DIR/%name` in commitlog_archiving.properties). Each segment
    /// is shipped once complete, with its id and last write (for `tableslurp --point-in-time`),
    /// and removed from DIR once its upload is confirmed. Not one of the watched paths.
    #[arg(long = "commitlog-archive", value_name = "DIR")]
    pub commitlog_archive: Option<PathBuf>,

    /// Cassandra's live commit log directory (read only). With it, each shipped segment records the
    /// oldest segment still live, so a restore fetches only the segments that can hold writes not
    /// yet flushed (without it, every segment of the node's run since its start).
    #[arg(
        long = "commitlog-dir",
        value_name = "DIR",
        requires = "commitlog_archive"
    )]
    pub commitlog_dir: Option<PathBuf>,

    /// Most MiB of segments the archive directory may hold on its own (segments whose original
    /// Cassandra has already removed) while storage is unreachable; beyond it the oldest are
    /// deleted unshipped, each named in an ERROR line, and the recoverable window restarts after
    /// them. 0: no limit.
    #[arg(
        long = "commitlog-spool-max",
        default_value = "8192",
        value_name = "MB",
        requires = "commitlog_archive"
    )]
    pub commitlog_spool_max: u64,

    /// The node's Cassandra version, stored with each segment (for the restore's records).
    #[arg(long = "cassandra-version", value_name = "VERSION")]
    pub cassandra_version: Option<String>,
}
