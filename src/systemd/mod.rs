//! Will systemd let the stop finish? The supervisor's side of the shutdown.
//!
//! Under systemd, [`Forensics::install`](crate::ForensicsBuilder::install) checks once, off the
//! async runtime and bounded to 2 s, that the unit's `TimeoutStopSec` covers the shutdown
//! budget plus headroom, and warns when it does not, with the fix:
//!
//! ```text
//! Stale systemd unit detected: gateway.service has TimeoutStopSec=90s but the shutdown budget needs >=210s ...
//! ```
//!
//! The same check by hand, and the parser behind it (every systemd time unit, fractions,
//! `infinity`, `1h30min` without spaces):
//!
//! ```no_run
//! use std::time::Duration;
//! use shutdown_forensics::systemd::{check_systemd_timing_alignment, parse_systemd_duration};
//!
//! assert_eq!(parse_systemd_duration("1min 30s"), Some(Duration::from_secs(90)));
//! if let Some(a) = check_systemd_timing_alignment(Duration::from_secs(180)) {
//!     if a.mismatch {
//!         eprintln!("{} stops after {:?}; we need {:?}", a.unit, a.timeout_stop, a.expected_min);
//!     }
//! } // None: not under systemd
//! ```
//!
//! With the `systemd` feature (on by default) the signal helper also speaks sd_notify on
//! `NOTIFY_SOCKET`: `READY=1` ([`Forensics::ready`](crate::Forensics::ready)), `STOPPING=1`
//! at the signal, `STATUS=shutting down: drain` as phases change, and, with an
//! [`ExtendPolicy`], `EXTEND_TIMEOUT_USEC=` while phases still make progress. [`Notifier`]
//! sends messages of your own.
//
// For contributors: in: `/proc/self/cgroup`, `systemctl` output, phase changes from the
// timeline's hook. Out: a `TimingAlignment` and its warning, datagrams on `NOTIFY_SOCKET`. Read
// `unit.rs` (the check) and `notify_hook.rs` (how phase changes become `STATUS=` and timeout
// extensions).

mod duration;
#[cfg(feature = "systemd")]
mod notify;
#[cfg(feature = "systemd")]
pub(crate) mod notify_hook;
pub(crate) mod stop_job;
pub(crate) mod systemctl;
mod unit;

pub use crate::sys::cgroup::SystemdManager;
pub use duration::parse_systemd_duration;
#[cfg(feature = "systemd")]
#[cfg_attr(docsrs, doc(cfg(feature = "systemd")))]
pub use notify::{ExtendPolicy, Notifier};
pub use unit::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, TimingAlignment, DEFAULT_STOP_HEADROOM,
};
