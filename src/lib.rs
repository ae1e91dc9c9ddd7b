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
mod diagnostic;
mod error;
mod logfmt;
mod signal;

pub use cgroup::SystemdManager;
pub use diagnostic::{
    spawn_diagnostic, spawn_diagnostic_with, Diagnostic, DiagnosticOptions, DiagnosticOutcome,
    DEFAULT_DIAGNOSTIC_ROTATE_AT, DEFAULT_DIAGNOSTIC_SIZE_CAP, DEFAULT_DIAGNOSTIC_TIMEOUT,
};
pub use error::{Error, ErrorKind};
pub use signal::{signal_name, signal_name_or_unknown, signal_number, SignalCause, SignalSender};
