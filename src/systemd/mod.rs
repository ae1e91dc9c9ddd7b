//! systemd integration: time spans, the `TimeoutStopSec` alignment check, and (feature
//! `systemd`) service-manager notifications.

mod duration;
mod systemctl;
mod unit;

pub use duration::parse_systemd_duration;
pub use unit::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async,
    check_systemd_timing_alignment_with, TimingAlignment, DEFAULT_STOP_HEADROOM,
};
