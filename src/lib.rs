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
mod context;
mod error;
mod logfmt;
mod markers;
mod proc;
mod signal;
mod systemd;

pub use cgroup::SystemdManager;
pub use context::{ContextOptions, ShutdownContext, Supervisor};
pub use error::{Error, ErrorKind};
pub use markers::{write_marker, MarkerInfo, MarkerStatus, MARKER_READ_LIMIT};
pub use proc::ProcSummary;
pub use signal::{signal_name, signal_name_or_unknown, signal_number, SignalCause, SignalSender};
pub use systemd::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, parse_systemd_duration, TimingAlignment,
    DEFAULT_STOP_HEADROOM,
};
#[cfg(feature = "systemd")]
pub use systemd::{ExtendPolicy, Notifier};
