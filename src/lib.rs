//! Make a service's stop explainable.
//!
//! When a service under systemd, Kubernetes or a terminal gets `SIGTERM`, operators ask three
//! questions. This crate answers them as ordinary [`tracing`] data, so the answers land wherever
//! the app's subscriber writes (stderr, rolling files from `tracing-appender`, journald, JSON):
//!
//! 1. **Who stopped us, and why?** The signal helper ([`Forensics`]) listens on its own thread,
//!    reads the real sender from `siginfo_t` (pid, uid, `kill`/`tkill`/kernel) and its `/proc`
//!    entry first, then captures a [`ShutdownContext`](context::ShutdownContext) (parent,
//!    supervisor, systemd unit, load, tracer, planned-stop markers) and logs it as ONE
//!    `Shutdown context` event. A bounded, detached [`diagnostic`] snapshots the process table
//!    into a 0600 file without blocking anything.
//! 2. **Where did the time go, and where is it stuck?** Shutdown phases are ordinary spans
//!    ([`phase!`], target [`PHASE_TARGET`]); the [`ShutdownLayer`] turns them into
//!    `+0.02s drain started` / `+3.43s drain done (3.41s)` events, warns while a phase runs over
//!    its budget, and builds a [`report`]. When a phase is stuck, a
//!    [`StuckSnapshot`](report::StuckSnapshot) names the open requests, the threads and the
//!    system calls they sit in, and the sockets whose peers went silent.
//! 3. **Did it finish, and will the supervisor let it?** A [`FlightRecord`] on disk survives
//!    `SIGKILL` and tells the next start which phase wedged (a [`verdict`]); a startup check
//!    warns when systemd's `TimeoutStopSec` cannot cover the shutdown budget, and sd_notify
//!    keeps systemd informed ([`systemd`]).
//!
//! # Quick start
//!
//! Dependencies of a new binary crate: this crate, `tokio` with `macros` and
//! `rt-multi-thread`, `tracing`, and `tracing-subscriber` with `fmt`. The README's quick start
//! (the same code) is built and run by a test, SIGTERM included.
//!
//! ```no_run
//! use shutdown_forensics::{FlightRecord, Forensics, ShutdownLayer, phase};
//! use tracing::Instrument;
//! use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let layer = ShutdownLayer::builder()
//!         .with_flight_record(FlightRecord::open("state/flight.jsonl")?) // creates state/
//!         .with_phase_budget("drain", std::time::Duration::from_secs(30))
//!         .build();
//!     let handle = layer.handle();
//!     tracing_subscriber::registry().with(tracing_subscriber::fmt::layer()).with(layer).init();
//!     let forensics = Forensics::builder()
//!         .with_handle(handle)
//!         .with_diagnostic("logs/shutdown-diag.log") // creates logs/
//!         .install()?; // logs "Previous shutdown did not complete ..." when it did not
//!     tracing::info!(pid = std::process::id(), "serving; stop me with kill -TERM or Ctrl-C");
//!
//!     let ctx = forensics.signal().recv().await; // SIGTERM or SIGINT
//!     tracing::info!(signal = %ctx.signal, "stopping");
//!     async { /* stop accepting, wait for requests */ }.instrument(phase!("drain", active_at_start = 3)).await;
//!     async { /* close the database */ }.instrument(phase!("db_close")).await;
//!     forensics.finish(); // "+0.42s shutdown complete (total teardown 0.42s)"
//!     Ok(())
//! }
//! ```
//!
//! `cargo run --example gateway` runs a real service (axum, a session store, TCP adapters, rolling log
//! files) that stops itself with a real `SIGTERM` from another process and prints the result.
//!
//! # Where things are
//!
//! The crate root holds what almost every service touches: the layer and its handle, the
//! signal helper, the [`phase!`] macro, the flight record and the error type. The rest lives in
//! a module named after the question it answers:
//!
//! | module | question | holds |
//! |---|---|---|
//! | [`context`] | who stopped us? | [`ShutdownContext`](context::ShutdownContext), the signal's sender, signal names, [`markers`](context::markers) for planned stops |
//! | [`report`] | where did the time go? where is it stuck? | [`ShutdownReport`](report::ShutdownReport), phase records, hooks, [`StuckSnapshot`](report::StuckSnapshot) |
//! | [`verdict`] | did the last stop finish? | [`PreviousShutdown`](verdict::PreviousShutdown), what the next start says |
//! | [`systemd`] | will systemd let it finish? | the `TimeoutStopSec` check, duration parser, sd_notify |
//! | [`diagnostic`] | what else was running? | the bounded, detached process-table snapshot |
//!
//! Every log line, verdict and sd_notify message, in full: `docs/operators.md` in the
//! repository.
//!
//! # Privacy
//!
//! Command lines can hold secrets: they are never captured unless
//! [`ContextOptions::include_cmdline`](context::ContextOptions::include_cmdline) is set, and the
//! diagnostic lists process names only. Process names are chosen by the processes themselves
//! and are escaped before they are logged. Diagnostic, flight-record and report files are
//! created with mode 0600.
//!
//! # Feature flags
//!
//! - `systemd` (default): [`Notifier`](systemd::Notifier),
//!   [`ExtendPolicy`](systemd::ExtendPolicy) and the helper's sd_notify messages (`READY=1` via
//!   [`Forensics::ready`], `STOPPING=1`, `STATUS=`, `EXTEND_TIMEOUT_USEC=`), written to
//!   `NOTIFY_SOCKET` with std only (path and abstract sockets).
//! - `tokio-util` (off): `ShutdownSignal::cancellation_token`, a tokio-util
//!   `CancellationToken` cancelled when the shutdown begins.
//! - `metrics` (off): each stop as metrics through the `metrics` facade, for any exporter
//!   (`verdict::metrics`): `shutdown_duration_seconds`, `shutdown_phase_duration_seconds`,
//!   `shutdown_verdicts_total`, recorded at `finish` and, for a stop that did not finish
//!   (SIGKILLed), by the next start.
//! - `axum` (off): the `http` module: serve an axum `Router` (or a hyper service) so that a stuck
//!   snapshot names the connection holding the drain, its state, method, path and peer
//!   (`GET /events streaming 29.8s to 10.0.0.7:51234, client not reading (3.7 MB queued)`).
//!
//! # Platform support
//!
//! Linux gets every fact. The public API compiles on every Unix; facts that need `/proc` are
//! `None` there, and [`diagnostic::spawn_diagnostic`] fails with
//! [`ErrorKind::Unsupported`] outside Unix. MSRV: Rust 1.85.

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connections;
pub mod context;
pub mod diagnostic;
#[cfg(doctest)]
mod doc_blocks;
mod error;
#[cfg(test)]
mod fuzz;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod http;
mod record;
pub mod report;
mod signal_helper;
mod stuck;
mod sys;
pub mod systemd;
mod timeline;
pub mod verdict;

pub use error::{Error, ErrorKind};
pub use record::flight_record::FlightRecord;
pub use signal_helper::builder::{Forensics, ForensicsBuilder};
pub use signal_helper::signal::ShutdownSignal;
pub use sys::target::PHASE_TARGET;
pub use timeline::handle::ShutdownHandle;
pub use timeline::layer::{ShutdownLayer, ShutdownLayerBuilder};

#[doc(hidden)]
pub use tracing as __tracing;
