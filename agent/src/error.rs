//! The one error type of the library. Variants say what the caller can do about a failure.

use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, grouped by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value given by the user is wrong; the message names the value and what would be right.
    #[error("{0}")]
    InvalidConfig(String),

    /// The object or bucket does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// The store refused our credentials or the operation (access denied, bad signature, ...).
    #[error("permission denied: {0}")]
    Permission(String),

    /// A failure that may go away when tried again (network, 5xx, throttling, timeouts).
    #[error("transient storage error: {0}")]
    Transient(String),

    /// The store answered, but not in a way a retry will change (bad request, entity too large).
    #[error("storage error: {0}")]
    Storage(String),

    /// The local file disappeared; for a backup agent that is normal (compaction).
    #[error("file vanished: {}", .0.display())]
    Vanished(PathBuf),

    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An object's content does not match what was expected (size or checksum).
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

impl Error {
    /// Wraps an I/O error on `path`, turning "not found" into [`Error::Vanished`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::Vanished(path)
        } else {
            Error::Io { path, source }
        }
    }

    /// Whether trying the same thing again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient(_) | Error::Integrity(_))
    }

    /// A short, bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidConfig(_) => "invalid_config",
            Error::NotFound(_) => "not_found",
            Error::Permission(_) => "permission",
            Error::Transient(_) => "transient",
            Error::Storage(_) => "storage",
            Error::Vanished(_) => "vanished",
            Error::Io { .. } => "io",
            Error::Integrity(_) => "integrity",
        }
    }
}
