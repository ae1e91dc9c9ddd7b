//! The signal helper, [`Forensics`](builder::Forensics): the one place that wires the
//! questions together. A listener thread of its own (no async runtime) receives the signal,
//! captures the context (`crate::context`), starts the timeline (`crate::timeline`), tells systemd
//! (`crate::systemd`), spawns the diagnostic and wakes the app.
//!
//! In: the builder's options, signals. Out: the `Shutdown context` event, flight-record lines,
//! sd_notify messages, a [`ShutdownSignal`](builder::ShutdownSignal) the app awaits.
//! Read `builder.rs` (what `install` sets up), then `listener.rs` (the signal path, in order).
//! How a run leaves, for the next start's verdict: `exit_note.rs` (the `exit` note at the drop
//! and at `exit(3)`), `panic_hook.rs` (a panic's line, and the witness that notes when the
//! process outlived one); `disposition.rs` gives the signals their default action back once no
//! `Forensics` listens. `advice.rs` logs what the history of the last stops advises at a start.

mod abort;
mod advice;
pub(crate) mod builder;
mod disposition;
mod exit_note;
pub(crate) mod listener;
mod manager_job;
pub(crate) mod panic_hook;
pub(crate) mod signal;
