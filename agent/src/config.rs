//! The validated configuration of the agent, built from [`crate::cli::Args`].
//! Every user-facing check lives here and yields one line naming the bad value.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cli::{Args, ListenEvent, LogFormat, Mode};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::key::KeyNamer;

/// S3's smallest part (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part and largest single PUT.
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// S3's largest number of parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// One mebibyte, the unit of the size flags.
pub const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Where objects go.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An S3 bucket, with the client settings needed to reach it.
    S3(S3Settings),
    /// A local directory holding one file per object (`file:///path`).
    Local(PathBuf),
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::S3(s) => write!(f, "s3://{}", s.bucket),
            StoreLocation::Local(p) => write!(f, "file://{}", p.display()),
        }
    }
}

/// Static credentials from the command line; the secret never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"** redacted **")
            .finish()
    }
}

/// How to reach an S3 bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Region; `None` means the SDK's region chain, falling back to us-east-1.
    pub region: Option<String>,
    /// Custom endpoint; `None` means the SDK's own resolution (which reads AWS_ENDPOINT_URL*).
    pub endpoint: Option<String>,
    /// Path-style addressing (the default whenever an endpoint is set).
    pub force_path_style: bool,
    /// Credentials given on the command line; `None` means the SDK's default chain.
    pub credentials: Option<StaticCredentials>,
    /// Attempts per request inside the SDK.
    pub max_attempts: u32,
    /// Longest time one request attempt may take (a stalled connection is abandoned after it);
    /// `None` means the SDK's default (none).
    pub request_timeout: Option<std::time::Duration>,
}

/// How objects are written: storage class and encryption.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Storage class name, if not the bucket's default.
    pub storage_class: Option<String>,
    /// Server-side encryption.
    pub sse: Option<Sse>,
}

/// Server-side encryption of uploaded objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (AES256), the Python tool's `--with-sse`.
    Aes256,
    /// SSE-KMS with this key id.
    Kms(String),
}

/// Upload sizing, already in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSizing {
    /// Files up to this size go in one PUT.
    pub max_single_put: u64,
    /// Part size of multipart uploads (raised for huge files so parts stay under 10,000).
    pub part_size: u64,
}

impl UploadSizing {
    /// The part size for a file of `len` bytes: the configured one, grown when the file would
    /// otherwise need more than 10,000 parts.
    pub fn part_size_for(&self, len: u64) -> u64 {
        let needed = len.div_ceil(MAX_PARTS);
        self.part_size
            .max(needed.next_multiple_of(MIB))
            .min(MAX_PART_SIZE)
    }

    /// The part size a file of `len` bytes is uploaded in, or `None` for a single PUT.
    pub fn multipart_part_size(&self, len: u64) -> Option<u64> {
        (len > self.max_single_put).then(|| self.part_size_for(len))
    }
}

/// The agent's validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where objects go.
    pub store: StoreLocation,
    /// Watched roots, absolute, without trailing slash.
    pub paths: Vec<PathBuf>,
    /// How object keys are named.
    pub keys: KeyNamer,
    /// Which files are shipped.
    pub filter: Filter,
    /// The inotify events that make a file ready (generic mode).
    pub listen_events: Vec<ListenEvent>,
    /// Watch subdirectories.
    pub recursive: bool,
    /// Watch directories created later.
    pub auto_add: bool,
    /// Upload existing files missing from the bucket at start.
    pub backup: bool,
    /// With `backup`, compare MD5s too.
    pub md5_on_start: bool,
    /// The checksum written with each object.
    pub checksum: crate::checksum::ChecksumKind,
    /// Write `-listdir.json` indexes.
    pub with_index: bool,
    /// Delete local files once shipped.
    pub delete_on_backup: bool,
    /// Files uploaded at once.
    pub threads: usize,
    /// Sizes.
    pub sizing: UploadSizing,
    /// Storage class and encryption.
    pub write: WriteOptions,
    /// Capture mode.
    pub mode: Mode,
    /// Staging directory for cassandra mode.
    pub staging_dir: Option<PathBuf>,
    /// Address of the health and metrics endpoint.
    pub http_listen: Option<std::net::SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Grace period at shutdown.
    pub shutdown_timeout: std::time::Duration,
    /// At start, wait for a missing bucket or refused credentials instead of exiting.
    pub wait_for_bucket: bool,
    /// Time between periodic rescans; `None` when turned off.
    pub rescan_interval: Option<std::time::Duration>,
    /// Whether a secret was passed on the command line (worth a warning).
    pub secret_on_command_line: bool,
    /// The commit log archive shipped as segments, if any.
    pub commitlog: Option<CommitlogSource>,
}

/// Commit log segments archived by Cassandra's `archive_command`, shipped as their own source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitlogSource {
    /// The archive directory, absolute.
    pub archive: PathBuf,
    /// Cassandra's live commit log directory, absolute.
    pub live: Option<PathBuf>,
    /// Most bytes of segments the archive may hold on its own; `None`: no limit.
    pub spool_max: Option<u64>,
    /// The node's Cassandra version.
    pub cassandra_version: Option<String>,
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(a: Args) -> Result<Self> {
        let bad = |msg: String| Error::InvalidConfig(msg);

        if a.multipart_chunk_size * MIB < MIN_PART_SIZE
            || a.multipart_chunk_size * MIB > MAX_PART_SIZE
        {
            return Err(bad(format!(
                "--multipart-chunk-size {}: must be between 5 and 5120 (MiB), S3's part size limits",
                a.multipart_chunk_size
            )));
        }
        if a.max_upload_size == 0 || a.max_upload_size * MIB > MAX_PART_SIZE {
            return Err(bad(format!(
                "--max-upload-size {}: must be between 1 and 5120 (MiB), S3's single PUT limit",
                a.max_upload_size
            )));
        }
        if a.keyname_separator.is_empty() {
            return Err(bad("--keyname-separator '': must not be empty".into()));
        }
        if a.aws_key.is_some() != a.aws_secret.is_some() {
            return Err(bad(
                "-k/--aws-key and -s/--aws-secret: give both or neither (neither uses the AWS credential chain)"
                    .into(),
            ));
        }

        if a.request_timeout == 0 {
            return Err(bad(
                "--request-timeout 0: must be at least 1 (seconds one request may take)".into(),
            ));
        }
        let filter = Filter::new(&a.include, &a.exclude)?;
        let mut store = parse_store(&a)?;
        if let StoreLocation::S3(s) = &mut store {
            s.request_timeout = Some(std::time::Duration::from_secs(a.request_timeout));
        }
        let paths = a
            .paths
            .iter()
            .map(|p| check_watch_path(p))
            .collect::<Result<Vec<_>>>()?;

        let name = match a.name {
            Some(n) if n.is_empty() => return Err(bad("--name '': must not be empty".into())),
            Some(n) => n,
            None => crate::key::fqdn(),
        };

        let listen_events = if a.listen_events.is_empty() {
            vec![ListenEvent::IN_MOVED_TO, ListenEvent::IN_CLOSE_WRITE]
        } else {
            let mut ev = a.listen_events.clone();
            ev.dedup();
            ev
        };

        let sse = match (a.sse_kms_key_id, a.with_sse) {
            (Some(id), _) if id.is_empty() => {
                return Err(bad("--sse-kms-key-id '': must not be empty".into()));
            }
            (Some(id), _) => Some(Sse::Kms(id)),
            (None, true) => Some(Sse::Aes256),
            (None, false) => None,
        };
        let storage_class = match a.storage_class {
            Some(c) if c.is_empty() || !c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                return Err(bad(format!(
                    "--storage-class {c:?}: expected an S3 storage class such as STANDARD_IA"
                )));
            }
            Some(c) => Some(c),
            None if a.reduced_redundancy => Some("REDUCED_REDUNDANCY".to_string()),
            None => None,
        };

        let http_listen = match a.http_listen {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| {
                bad(format!(
                    "--http-listen {s:?}: expected an address such as 0.0.0.0:9150"
                ))
            })?),
        };

        let staging_dir = match a.staging_dir {
            Some(p) if !p.is_absolute() => std::path::absolute(&p)
                .map(Some)
                .map_err(|e| Error::io(&p, e))?,
            other => other,
        };

        let commitlog = match a.commitlog_archive {
            None => None,
            Some(dir) => {
                // Inside a watched path it is left out of the watch and the scans (as staging is).
                let archive = check_dir(&dir, "--commitlog-archive")?;
                if let Some(root) = paths.iter().find(|r| *r == &archive) {
                    return Err(bad(format!(
                        "--commitlog-archive {:?}: is the watched path {:?}; give the data directories as paths",
                        archive.display().to_string(),
                        root.display().to_string()
                    )));
                }
                let live = a
                    .commitlog_dir
                    .map(|d| check_dir(&d, "--commitlog-dir"))
                    .transpose()?;
                if live.as_ref() == Some(&archive) {
                    return Err(bad(format!(
                        "--commitlog-dir {:?}: is the archive directory; expected Cassandra's live commitlog_directory",
                        archive.display().to_string()
                    )));
                }
                if a.cassandra_version.as_deref() == Some("") {
                    return Err(bad("--cassandra-version '': must not be empty".into()));
                }
                Some(CommitlogSource {
                    archive,
                    live,
                    spool_max: (a.commitlog_spool_max > 0)
                        .then(|| a.commitlog_spool_max.saturating_mul(MIB)),
                    cassandra_version: a.cassandra_version,
                })
            }
        };

        Ok(Config {
            commitlog,
            store,
            paths,
            keys: KeyNamer::new(a.prefix, name, a.keyname_separator),
            filter,
            listen_events,
            recursive: a.recursive,
            auto_add: a.auto_add,
            backup: a.backup,
            md5_on_start: a.md5_on_start,
            checksum: a.checksum,
            with_index: !a.without_index,
            delete_on_backup: a.delete_on_backup,
            threads: a.threads.get(),
            sizing: UploadSizing {
                max_single_put: a.max_upload_size * MIB,
                part_size: a.multipart_chunk_size * MIB,
            },
            write: WriteOptions { storage_class, sse },
            mode: a.mode,
            staging_dir,
            http_listen,
            log_format: a.log_format,
            shutdown_timeout: std::time::Duration::from_secs(a.shutdown_timeout),
            wait_for_bucket: a.wait_for_bucket,
            rescan_interval: (a.rescan_interval > 0)
                .then(|| std::time::Duration::from_secs(a.rescan_interval)),
            secret_on_command_line: a.aws_secret.is_some(),
        })
    }
}

/// Reads the BUCKET argument: a bucket name, or `file:///dir`.
fn parse_store(a: &Args) -> Result<StoreLocation> {
    store_location(&StoreArgs {
        bucket: a.bucket.clone(),
        endpoint_url: a.endpoint_url.clone(),
        virtual_hosted_style: a.virtual_hosted_style,
        aws_key: a.aws_key.clone(),
        aws_secret: a.aws_secret.clone(),
        aws_token: a.aws_token.clone(),
        aws_region: a.aws_region.clone(),
        // `--retries 0` is the Python tool's default: one attempt, like 1.
        retries: (a.retries as usize).max(1),
    })
}

/// The flags that say where a store is and how to reach it, shared by the three binaries.
#[derive(Debug, Clone, Default)]
pub struct StoreArgs {
    /// The BUCKET argument: a bucket name or `file:///path`.
    pub bucket: String,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--virtual-hosted-style`.
    pub virtual_hosted_style: bool,
    /// `-k/--aws-key`.
    pub aws_key: Option<String>,
    /// `-s/--aws-secret`.
    pub aws_secret: Option<String>,
    /// `--aws-token` / `--token`.
    pub aws_token: Option<String>,
    /// `--aws-region`.
    pub aws_region: Option<String>,
    /// Attempts per request inside the SDK.
    pub retries: usize,
}

/// The storage flags tableslurp and tablechop share, with the Python tools' spellings.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Flags {
    /// AWS access key id (prefer AWS_ACCESS_KEY_ID: arguments show in `ps`).
    #[arg(short = 'k', long = "aws-key", alias = "key", value_name = "KEY")]
    pub aws_key: Option<String>,

    /// AWS secret access key (prefer AWS_SECRET_ACCESS_KEY: arguments show in `ps`).
    #[arg(
        short = 's',
        long = "aws-secret",
        alias = "secret",
        value_name = "SECRET"
    )]
    pub aws_secret: Option<String>,

    /// AWS session token for temporary credentials given with -k/-s.
    #[arg(
        long = "token",
        alias = "aws-token",
        env = "AWS_SECURITY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// AWS region [default: the SDK's region chain, else us-east-1].
    #[arg(long = "aws-region", value_name = "REGION")]
    pub aws_region: Option<String>,

    /// S3-compatible endpoint (Garage, MinIO, Ceph RGW); also read from AWS_ENDPOINT_URL_S3 and
    /// AWS_ENDPOINT_URL. Path-style addressing is used whenever an endpoint is set.
    #[arg(long = "endpoint-url", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// With --endpoint-url, use virtual-hosted-style addressing instead of path-style.
    #[arg(long = "virtual-hosted-style")]
    pub virtual_hosted_style: bool,
}

impl S3Flags {
    /// The store flags for `bucket`, with `retries` attempts per request.
    pub fn store_args(&self, bucket: &str, retries: usize) -> StoreArgs {
        StoreArgs {
            bucket: bucket.to_string(),
            endpoint_url: self.endpoint_url.clone(),
            virtual_hosted_style: self.virtual_hosted_style,
            aws_key: self.aws_key.clone(),
            aws_secret: self.aws_secret.clone(),
            aws_token: self.token.clone(),
            aws_region: self.aws_region.clone(),
            retries,
        }
    }
}

/// Validates the store flags into a [`StoreLocation`]; errors name the bad value.
pub fn store_location(a: &StoreArgs) -> Result<StoreLocation> {
    let bad = |msg: String| Error::InvalidConfig(msg);
    if a.aws_key.is_some() != a.aws_secret.is_some() {
        return Err(bad(
            "-k/--aws-key and -s/--aws-secret: give both or neither (neither uses the AWS credential chain)"
                .into(),
        ));
    }
    if a.bucket.contains("://") {
        let url = url::Url::parse(&a.bucket).map_err(|e| {
            bad(format!(
                "bucket {:?}: {e}; expected a bucket name or file:///path",
                a.bucket
            ))
        })?;
        if url.scheme() != "file" {
            return Err(bad(format!(
                "bucket {:?}: unsupported scheme {:?}; expected a bucket name or file:///path",
                a.bucket,
                url.scheme()
            )));
        }
        if url
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost")
        {
            return Err(bad(format!(
                "bucket {:?}: a file URL takes an absolute path with three slashes, e.g. file:///var/backups",
                a.bucket
            )));
        }
        let dir = url.to_file_path().map_err(|()| {
            bad(format!(
                "bucket {:?}: not a usable file path; expected file:///path",
                a.bucket
            ))
        })?;
        if dir == Path::new("/") {
            return Err(bad(format!(
                "bucket {:?}: refusing to use / as the store",
                a.bucket
            )));
        }
        return Ok(StoreLocation::Local(dir));
    }
    check_bucket_name(&a.bucket)?;

    let endpoint = a
        .endpoint_url
        .clone()
        .or_else(|| non_empty_env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| non_empty_env("AWS_ENDPOINT_URL"));
    if let Some(e) = &endpoint {
        let url = url::Url::parse(e).map_err(|err| {
            bad(format!(
                "--endpoint-url {e:?}: {err}; expected e.g. http://127.0.0.1:3900"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(format!(
                "--endpoint-url {e:?}: expected an http:// or https:// URL with a host"
            )));
        }
    }
    let credentials = match (&a.aws_key, &a.aws_secret) {
        (Some(k), Some(s)) => Some(StaticCredentials {
            access_key: k.clone(),
            secret_key: s.clone(),
            session_token: a
                .aws_token
                .clone()
                .or_else(|| non_empty_env("AWS_SESSION_TOKEN")),
        }),
        _ => None,
    };
    if let Some(r) = &a.aws_region
        && (r.is_empty()
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(bad(format!(
            "--aws-region {r:?}: expected a region name such as eu-west-1"
        )));
    }
    Ok(StoreLocation::S3(S3Settings {
        bucket: a.bucket.clone(),
        region: a.aws_region.clone(),
        force_path_style: endpoint.is_some() && !a.virtual_hosted_style,
        endpoint,
        credentials,
        max_attempts: u32::try_from(a.retries).unwrap_or(u32::MAX),
        request_timeout: None,
    }))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// S3 bucket naming rules, loosely (S3-compatible stores allow a little more).
fn check_bucket_name(b: &str) -> Result<()> {
    let ok = (3..=255).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
        && !b.starts_with(['-', '.'])
        && !b.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "bucket {b:?}: not a valid bucket name (3-255 of a-z, 0-9, '.', '-', '_') nor a file:///path"
        )))
    }
}

/// A watched path must exist, be a directory and be readable; returned absolute, no trailing slash.
fn check_watch_path(p: &Path) -> Result<PathBuf> {
    check_dir(p, "path")
}

/// An existing, readable directory named by `what` on the command line, absolute.
fn check_dir(p: &Path, what: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        Error::InvalidConfig(format!(
            "{what} {:?}: {why}; expected a readable directory",
            p.display().to_string()
        ))
    };
    let abs = std::path::absolute(p).map_err(|_| bad("cannot be made absolute"))?;
    let meta = std::fs::metadata(&abs).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("does not exist"),
        std::io::ErrorKind::PermissionDenied => bad("permission denied"),
        _ => bad(&e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(bad("is not a directory"));
    }
    std::fs::read_dir(&abs).map_err(|e| bad(&format!("cannot be read ({e})")))?;
    // Normalise: drop "." components and trailing slashes, keep symlinks as given.
    Ok(abs.components().collect())
}
