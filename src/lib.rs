//! Make a service's stop explainable.
//!
//! (Crate documentation is written as the modules land; see README.md.)

#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod cgroup;
mod clock;
mod context;
mod diagnostic;
mod error;
mod events;
mod fields;
mod forensics;
mod handle;
mod hook;
mod layer;
mod listener;
mod logfmt;
mod markers;
#[cfg(feature = "systemd")]
mod notify_hook;
mod phase;
mod proc;
mod recorder;
mod report;
mod signal;
mod state;
mod systemd;
mod trigger;
mod verdict;
mod watchdog;
mod waterfall;

pub use cgroup::SystemdManager;
pub use clock::{ManualClock, Offset};
pub use context::{ContextOptions, ShutdownContext, Supervisor};
pub use diagnostic::{
    spawn_diagnostic, spawn_diagnostic_with, Diagnostic, DiagnosticOptions, DiagnosticOutcome,
    DEFAULT_DIAGNOSTIC_ROTATE_AT, DEFAULT_DIAGNOSTIC_SIZE_CAP, DEFAULT_DIAGNOSTIC_TIMEOUT,
};
pub use error::{Error, ErrorKind};
pub use fields::Fields;
pub use forensics::{Forensics, ForensicsBuilder, ShutdownSignal, DEFAULT_SIGNALS};
pub use handle::ShutdownHandle;
pub use hook::{PhaseChange, PhaseEvent};
pub use layer::{ShutdownLayer, ShutdownLayerBuilder, PHASE_TARGET};
pub use listener::Escalation;
pub use markers::{write_marker, MarkerInfo, MarkerStatus, MARKER_READ_LIMIT};
pub use proc::ProcSummary;
pub use recorder::FlightRecord;
pub use report::{PhaseOutcome, PhaseRecord, ShutdownReport};
pub use signal::{signal_name, signal_name_or_unknown, signal_number, SignalCause, SignalSender};
pub use systemd::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, parse_systemd_duration, TimingAlignment,
    DEFAULT_STOP_HEADROOM,
};
#[cfg(feature = "systemd")]
pub use systemd::{ExtendPolicy, Notifier};
pub use trigger::{ShutdownTrigger, TriggerInfo};
pub use verdict::PreviousShutdown;

#[doc(hidden)]
pub use tracing as __tracing;
