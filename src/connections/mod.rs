//! The process-wide table of the HTTP connections the app serves (ARCHITECTURE.md, "Data
//! flow"): written by `http/` (feature `axum`) as connections open, requests start and responses
//! end; read by a stuck snapshot (`stuck/connections.rs`) and by the `drain` phase's counts
//! (`timeline/phase.rs`). It imports nothing of the crate, so every reader can sit above it.
//!
//! Writers touch only atomics on the hot path (a read, a write, a request): the table's mutex is
//! taken once when a connection opens and once when it closes. Readers copy the entries' `Arc`s
//! under the mutex and read the atomics after letting go. Without the feature nothing registers
//! and every reader sees an empty table ([`counts`] is `None`).

// Without the feature nothing writes the table (its readers still compile, and see it empty).
#![cfg_attr(not(feature = "axum"), allow(dead_code))]

mod clock;
mod entry;
mod state;
mod table;
#[cfg(test)]
mod tests;

pub(crate) use clock::now_ns;
pub(crate) use entry::ConnSample;
#[cfg(feature = "axum")]
pub(crate) use entry::Entry;
pub use state::HttpState;
pub(crate) use state::HTTP_TARGET;
#[cfg(feature = "axum")]
pub(crate) use table::Registration;
pub(crate) use table::{counts, table};
