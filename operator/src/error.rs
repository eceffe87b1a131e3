//! The operator's one error type: each variant says what a caller can do about it.

/// Errors of the operator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request; the reconcile is retried with backoff.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// An object could not be turned into the shape we need; fix the object named in the message.
    #[error("invalid object: {0}")]
    InvalidObject(String),

    /// Adding or removing the finalizer, or the reconcile inside it, failed; retried with backoff.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    /// Leader election failed or the lease was lost; the process exits and is restarted.
    #[error("leader election: {0}")]
    LeaderElection(String),

    /// The HTTP endpoint could not be served (address in use, ...).
    #[error("HTTP endpoint: {0}")]
    Io(#[source] std::io::Error),

    /// Serializing a rendered object failed (a bug in the operator).
    #[error("could not serialize a rendered object: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Result with the operator's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
