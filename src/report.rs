//! Where the shutdown's time went, and where it is stuck.
//!
//! The [`ShutdownLayer`](crate::ShutdownLayer) times every phase span (target
//! [`PHASE_TARGET`](crate::PHASE_TARGET), made with [`phase!`](crate::phase)) and keeps what it
//! saw in a [`ShutdownReport`]: one [`PhaseRecord`] a phase, with its start, duration, budget,
//! [`PhaseOutcome`] and the span's own fields ([`PhaseFields`]). Take it from the handle at any
//! time; it renders as JSON ([`ShutdownReport::to_json`]), as Chrome trace events for
//! `chrome://tracing` or Perfetto ([`ShutdownReport::to_chrome_trace`]), and as a terminal
//! waterfall (its `Display`).
//!
//! ```
//! use shutdown_forensics::{phase, ShutdownLayer};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let layer = ShutdownLayer::new();
//! let handle = layer.handle();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     phase!("drain", active_at_start = 3).in_scope(|| { /* wait for requests */ });
//!     phase!("db_close").in_scope(|| { /* close the pool */ });
//!     handle.finish();
//! });
//! let report = handle.report();
//! assert_eq!(report.phases.len(), 2);
//! assert_eq!(report.phases[0].name, "drain");
//! println!("{report}"); // the waterfall
//! let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
//! assert_eq!(json["phases"][1]["name"], "db_close");
//! ```
//!
//! # Where it is stuck
//!
//! When a phase is still open past its budget, shortly before a known kill deadline, or when
//! asked ([`ShutdownHandle::stuck_snapshot`](crate::ShutdownHandle::stuck_snapshot)), the layer
//! takes a [`StuckSnapshot`]: the open spans ([`OpenSpan`], including requests that began
//! before the stop), every thread and the system call it waits in ([`ThreadState`]), and the
//! sockets with how long their peers have been silent ([`SocketState`]), joined into findings
//! such as `request{method=POST path=/upload} idle 29.8s; 10.0.0.7:5432 no data for 29.8s`,
//! the first also in parts ([`StuckFinding`]: span, peer, thread, system call, how long). A
//! span's fields are captured by the layer itself, so they read the same whatever formats the
//! app's logs. With the feature `axum`, the HTTP connections served through
//! `shutdown_forensics::http` come first ([`ConnectionState`], [`HttpState`]):
//! `GET /events streaming 29.8s to 10.0.0.7:51234, client not reading (3.7 MB queued)`.
//! Everything is read from what a process may read about itself without privileges, on the
//! watchdog thread, never on the async runtime. Snapshots land in
//! [`ShutdownReport::stuck`], in one WARN line each, and in the flight record, so the next
//! start's verdict can say where a killed stop was stuck.
//!
//! # Following the phases as they happen
//!
//! [`ShutdownLayerBuilder::on_phase_change`](crate::ShutdownLayerBuilder::on_phase_change)
//! calls a hook with a [`PhaseChange`] ([`PhaseEvent`]: started, ended, progress, complete);
//! the signal helper uses it for systemd's `STATUS=` and `EXTEND_TIMEOUT_USEC=`.
//!
//! # Time in tests
//!
//! A [`ManualClock`] given to
//! [`ShutdownLayerBuilder::with_clock`](crate::ShutdownLayerBuilder::with_clock) moves only
//! when told to, so budget warnings and `+X.XXs` offsets can be tested without sleeping;
//! [`Offset`] renders a duration the way the log lines do (`+1.23s`).
//!
//! # Reading a record back
//!
//! [`read_flight_record`] reads a flight record from outside the process that wrote it (the
//! `shutdown-forensics` command-line tool does): the verdict on its run and that run's stop as
//! a report, rebuilt from its lines, also when the process was SIGKILLed.
//!
//! [`write_private_file`] writes a rendered report (or any file of yours) the way the crate
//! writes its own: mode 0600, never through a symlink, replaced atomically.

pub use crate::connections::HttpState;
pub use crate::stuck::connection_state::ConnectionState;
pub use crate::stuck::snapshot::{
    OpenSpan, SocketState, StuckFinding, StuckReason, StuckSnapshot, ThreadState,
};
pub use crate::sys::clock::{ManualClock, Offset};
pub use crate::sys::private_file::write_private_file;
pub use crate::timeline::hook::{PhaseChange, PhaseEvent};
pub use crate::timeline::phase_fields::PhaseFields;
pub use crate::timeline::read_back::{read_flight_record, RecordedRun};
pub use crate::timeline::report::{PhaseOutcome, PhaseRecord, ShutdownReport};
