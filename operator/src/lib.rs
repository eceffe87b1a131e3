//! The TableSnap operator: resolves Cassandra targets, renders the agent as a native sidecar,
//! applies it with server-side apply, and reports status.
//!
//! Flow: [`crd`] → [`resolve`] → [`render`] → [`apply`] → [`report`] (each agent's own word) →
//! [`status`]; [`cleanup`] on removal;
//! [`run`] wires the controller, leader election, `/healthz` and `/metrics`.

pub mod apply;
pub mod cleanup;
pub mod crd;
pub mod error;
pub mod metrics;
pub mod preflight;
pub mod render;
pub mod report;
pub mod resolve;
pub mod run;
pub mod samples;
pub mod status;

pub use error::{Error, Result};

/// Select rustls' ring provider for kube's TLS, once per process. A build together with the agent
/// (the workspace) enables aws-lc-rs too, and rustls then refuses to pick one: without this the
/// first connection to an API server over TLS panics.
pub fn install_tls_provider() {
    // An error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
