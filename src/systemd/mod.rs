//! systemd integration: time spans, the `TimeoutStopSec` alignment check, and (feature
//! `systemd`) service-manager notifications.

mod duration;

pub use duration::parse_systemd_duration;
