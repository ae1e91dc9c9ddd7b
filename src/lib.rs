//! Make a service's stop explainable.
//!
//! When a service under systemd, Kubernetes or a terminal gets `SIGTERM`, operators ask three
//! questions. This crate answers them as ordinary [`tracing`] data, so the answers land wherever
//! the app's subscriber writes (stderr, rolling files from `tracing-appender`, journald):
//!
//! 1. **Who stopped us, and why?** The signal helper ([`Forensics`]) listens on its own thread,
//!    reads the real sender from `siginfo_t` (pid, uid, `kill`/`tkill`/kernel) and its `/proc`
//!    entry first, then captures a [`ShutdownContext`] (parent, supervisor, systemd unit, load,
//!    tracer, planned-stop markers) in tens of microseconds and logs it as ONE `Shutdown context`
//!    WARN event. A bounded, detached diagnostic ([`spawn_diagnostic`]) snapshots the process
//!    table into a 0600 file without blocking anything.
//! 2. **Where did the time go?** Shutdown phases are ordinary spans ([`phase!`], target
//!    [`PHASE_TARGET`]); the [`ShutdownLayer`] turns them into `+0.02s drain started` /
//!    `+3.43s drain done (3.41s)` events, warns while a phase runs over its budget, and builds a
//!    [`ShutdownReport`] (JSON, Chrome trace, terminal waterfall). When a phase is stuck (past
//!    its budget, shortly before a known kill, or on demand) a [`StuckSnapshot`] says where and
//!    why: the open spans (including requests begun before the stop), every thread and the
//!    system call it sits in, the sockets and how long their peers have been silent, joined
//!    into findings, read from what the process may read about itself without privileges.
//! 3. **Did it finish, and will the supervisor let it?** A [`FlightRecord`] on disk survives
//!    `SIGKILL` and tells the next start which phase wedged; a startup check
//!    ([`check_systemd_timing_alignment`]) warns when systemd's `TimeoutStopSec` cannot cover the
//!    shutdown budget; `STOPPING=1` / `STATUS=` / `EXTEND_TIMEOUT_USEC` keep systemd informed.
//!
//! # Quick start
//!
//! Dependencies of a new binary crate: this crate, `tokio` with `macros` and
//! `rt-multi-thread`, `tracing`, and `tracing-subscriber` with `fmt`. The README's quick start
//! (the same code) is built and run by a test, SIGTERM included.
//!
//! ```no_run
//! use shutdown_signal_helper::{phase, FlightRecord, Forensics, ShutdownLayer};
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
//! # Log lines
//!
//! All are events with target `shutdown` (keep `shutdown=info` enabled in your filter); facts
//! are structured fields, and values that could break a line are quoted and escaped (logfmt).
//! A `done` event carries the span's recorded fields as fields of its own (typed; strings
//! logfmt-rendered), so a JSON subscriber receives
//! `{"message":"+3.43s drain done (3.41s)","active_now":0,"timed_out":false,"phase":"drain",...}`
//! while a text formatter prints the line below.
//!
//! | level | message |
//! |---|---|
//! | WARN | `Shutdown context signal=SIGTERM sender_pid=812 sender_name=systemctl sender_uid=0 cause=kill under_systemd=true unit=gateway.service parent_pid=1 parent_name=systemd loadavg_1m=0.42 ...` |
//! | INFO | `+0.02s drain started` / `+3.43s drain done (3.41s) active_at_start=5 active_now=0 timed_out=false` |
//! | WARN | `+33.00s drain over budget (30.00s)` (while the phase still runs) |
//! | WARN | `+30.00s drain stuck (budget 30.00s): request{method=POST path=/upload peer=10.0.0.7:5432} idle 29.8s; 10.0.0.7:5432 ESTABLISHED no data for 29.8s; ...` |
//! | INFO | `+3.62s shutdown complete (total teardown 3.62s)` |
//! | WARN | `repeated signal SIGTERM #2 from pid 812 (systemctl) at +1.23s` |
//! | WARN | `Previous shutdown did not complete: pid 4242 was killed during phase drain (entered +2.10s, last record +89.95s, 87.85s into drain); stuck in request{method=POST path=/upload}: 10.0.0.7:5432 no data for 29.8s` |
//! | WARN | `Stale systemd unit detected: gateway.service has TimeoutStopSec=90s but the shutdown budget needs >=210s ...` |
//!
//! # Privacy
//!
//! Command lines can hold secrets: they are never captured unless
//! [`ContextOptions::include_cmdline`] is set, and the diagnostic lists process names only.
//! Process names are chosen by the processes themselves and are escaped before they are logged.
//! Diagnostic, flight-record and report files are created with mode 0600.
//!
//! # Feature flags
//!
//! - `systemd` (default): [`Notifier`], [`ExtendPolicy`] and the helper's sd_notify messages
//!   (`READY=1` via [`Forensics::ready`], `STOPPING=1`, `STATUS=`, `EXTEND_TIMEOUT_USEC=`),
//!   written to `NOTIFY_SOCKET` with std only (path and abstract sockets).
//! - `tokio-util` (off): `ShutdownSignal::cancellation_token`, a tokio-util
//!   `CancellationToken` cancelled when the shutdown begins.
//!
//! # Platform support
//!
//! Linux gets every fact. The public API compiles on every Unix; facts that need `/proc` are
//! `None` there, and [`spawn_diagnostic`] returns [`std::io::ErrorKind::Unsupported`] outside
//! Unix. MSRV: Rust 1.85.

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod context;
mod diagnostic;
mod error;
#[cfg(test)]
mod fuzz;
mod record;
mod signal_helper;
mod stuck;
mod sys;
mod systemd;
mod timeline;
mod verdict;

pub use context::capture::{ContextCapturer, ContextOptions, ShutdownContext, Supervisor};
pub use context::markers::{write_marker, MarkerInfo, MarkerStatus, MARKER_READ_LIMIT};
pub use context::signal::{
    signal_name, signal_name_or_unknown, signal_number, SignalCause, SignalSender,
};
pub use context::trigger::{ShutdownTrigger, TriggerInfo};
pub use diagnostic::{
    spawn_diagnostic, spawn_diagnostic_with, Diagnostic, DiagnosticOptions, DiagnosticOutcome,
    DEFAULT_DIAGNOSTIC_ROTATE_AT, DEFAULT_DIAGNOSTIC_SIZE_CAP, DEFAULT_DIAGNOSTIC_TIMEOUT,
};
pub use error::{Error, ErrorKind};
pub use record::flight_record::FlightRecord;
pub use signal_helper::builder::{Forensics, ForensicsBuilder, DEFAULT_SIGNALS};
pub use signal_helper::listener::Escalation;
pub use signal_helper::signal::ShutdownSignal;
pub use stuck::snapshot::{OpenSpan, SocketState, StuckReason, StuckSnapshot, ThreadState};
pub use sys::cgroup::SystemdManager;
pub use sys::clock::{ManualClock, Offset};
pub use sys::private_file::write_private_file;
pub use sys::proc::ProcSummary;
pub use sys::target::PHASE_TARGET;
pub use systemd::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, parse_systemd_duration, TimingAlignment,
    DEFAULT_STOP_HEADROOM,
};
#[cfg(feature = "systemd")]
pub use systemd::{ExtendPolicy, Notifier};
pub use timeline::fields::Fields;
pub use timeline::handle::ShutdownHandle;
pub use timeline::hook::{PhaseChange, PhaseEvent};
pub use timeline::layer::{ShutdownLayer, ShutdownLayerBuilder};
pub use timeline::report::{PhaseOutcome, PhaseRecord, ShutdownReport};
pub use verdict::{PreviousShutdown, UnknownReason};

#[doc(hidden)]
pub use tracing as __tracing;
