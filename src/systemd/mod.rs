//! systemd integration, the supervisor side of question 3 (**will systemd let the stop
//! finish?**): `TimeoutStopSec` parsed in every systemd time unit, the startup alignment check
//! against the shutdown budget (`systemctl show`, bounded and off the async runtime), and
//! (feature `systemd`) the sd_notify messages `READY=1`, `STOPPING=1`, `STATUS=`,
//! `EXTEND_TIMEOUT_USEC=`.
//!
//! In: `/proc/self/cgroup`, `systemctl` output, phase changes from the timeline's hook. Out: a
//! [`TimingAlignment`] and its warning, datagrams on `NOTIFY_SOCKET`. Read `unit.rs` (the
//! check) and `notify_hook.rs` (how phase changes become `STATUS=` and timeout extensions).

mod duration;
#[cfg(feature = "systemd")]
mod notify;
#[cfg(feature = "systemd")]
pub(crate) mod notify_hook;
pub(crate) mod systemctl;
mod unit;

pub use duration::parse_systemd_duration;
#[cfg(feature = "systemd")]
pub use notify::{ExtendPolicy, Notifier};
pub use unit::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, TimingAlignment, DEFAULT_STOP_HEADROOM,
};
