//! TableSnap: continuous, verifiable backup of Cassandra SSTables to S3.
//!
//! The agent's data flow, one module per stage: [`watch`] (inotify) → [`classify`] →
//! [`queue`] → [`upload`] (to a [`store`]) → [`index`]; in cassandra mode [`sstable`] names,
//! [`ready`] decides, [`stage`] pins and [`cassandra`] ships whole SSTables; [`scan`] compares disk
//! and bucket at start, after overflows and every `--rescan-interval`; [`agent`] wires the stages and shuts them down in order.
//! The restore and retention tools live in [`restore`] and [`retention`].

pub mod agent;
pub mod archive;
pub mod cassandra;
pub mod checksum;
pub mod classify;
pub mod cli;
pub mod config;
pub mod error;
pub mod exit;
pub mod filter;
pub mod http;
pub mod index;
pub mod key;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod queue;
pub mod ready;
pub mod restore;
pub mod retention;
pub mod retry;
pub mod scan;
pub mod segment;
pub mod spool;
pub mod sstable;
pub mod stage;
pub mod store;
pub mod upload;
pub mod watch;
pub mod when;

pub use error::{Error, Result};
