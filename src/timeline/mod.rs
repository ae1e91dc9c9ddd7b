//! Question 2, **where did the time go?**: the [`ShutdownLayer`](layer::ShutdownLayer) turns
//! phase spans into `+X.XXs` events, a budget watchdog warns while a phase overruns, the
//! flight record keeps every step on disk, and the report renders it (JSON, Chrome trace,
//! waterfall).
//!
//! In: span callbacks with target `shutdown`, `begin`/`finish` from a handle. Out: events
//! (`events.rs` holds every line's format), flight-record lines, hook calls, a report.
//! Read `layer.rs` (callbacks), then `state.rs` (the shared bookkeeping and its locking rule),
//! then `phase.rs` (what happens when a phase opens and closes).

pub(crate) mod budget_check;
pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod history;
pub(crate) mod hook;
pub(crate) mod layer;
pub(crate) mod log_order;
pub(crate) mod log_thread;
pub(crate) mod phase;
pub(crate) mod phase_fields;
pub(crate) mod phase_ids;
pub(crate) mod read_back;
pub(crate) mod recovered;
pub(crate) mod report;
pub(crate) mod startup;
pub(crate) mod state;
pub(crate) mod stuck_delivery;
pub(crate) mod termination_message;
pub(crate) mod watchdog;
pub(crate) mod waterfall;
