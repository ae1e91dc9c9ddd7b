//! systemd integration: time spans, the `TimeoutStopSec` alignment check, and (feature
//! `systemd`) service-manager notifications.

mod duration;
#[cfg(feature = "systemd")]
mod notify;
#[cfg(feature = "systemd")]
pub(crate) mod notify_hook;
mod systemctl;
mod unit;

pub use duration::parse_systemd_duration;
#[cfg(feature = "systemd")]
pub use notify::{ExtendPolicy, Notifier};
pub use unit::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, TimingAlignment, DEFAULT_STOP_HEADROOM,
};
