//! Where and why a shutdown phase is stuck (ARCHITECTURE.md, "Data flow"): the app's open spans
//! (tracked from the start, `spans.rs`, with the fields the layer captured itself, `fields.rs`),
//! its threads and what each waits in, its sockets and how long their peers have been silent,
//! joined into one sentence per finding with its parts (`findings.rs`, `collect.rs`).
//!
//! In: span callbacks (from the layer), `/proc/self/{task,fd,net}` and `TCP_INFO` (through
//! `crate::sys`), the HTTP connections `http/` tracks (`crate::connections`, read by
//! `connections.rs`, told first). Out: a [`StuckSnapshot`](snapshot::StuckSnapshot), delivered by
//! `timeline/stuck_delivery.rs` as one WARN line, a flight-record line, and an entry of the report.
//! Read `collect.rs` first.

pub(crate) mod abandoned;
pub(crate) mod collect;
pub(crate) mod connection_state;
pub(crate) mod connections;
pub(crate) mod fields;
pub(crate) mod findings;
pub(crate) mod snapshot;
pub(crate) mod spans;
pub(crate) mod views;
