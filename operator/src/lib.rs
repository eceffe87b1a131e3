//! The TableSnap operator: resolves Cassandra targets, renders the agent as a native sidecar,
//! applies it with server-side apply, and reports status.
//!
//! Flow: [`crd`] → [`resolve`] → [`render`] → [`apply`] → [`status`]; [`cleanup`] on removal;
//! [`run`] wires the controller, leader election, `/healthz` and `/metrics`.

pub mod apply;
pub mod cleanup;
pub mod crd;
pub mod error;
pub mod metrics;
pub mod render;
pub mod resolve;
pub mod run;
pub mod samples;
pub mod status;

pub use error::{Error, Result};
