//! Who stopped us, and why: the shutdown context.
//!
//! When the first stop signal arrives, the signal helper ([`Forensics`](crate::Forensics))
//! reads the sender from `siginfo_t` ([`SignalSender`]: pid, uid, name, [`SignalCause`]) and
//! its `/proc` entry first, since senders such as `kill` exit within microseconds. It then
//! captures a [`ShutdownContext`]: our parent ([`ProcSummary`]), the [`Supervisor`] (systemd
//! unit, container runtime, terminal), load, a tracer, and the planned-stop and takeover
//! [`markers`]. It logs it as ONE event, `Shutdown context signal=SIGTERM sender_pid=1
//! sender_name=systemd ...`, and hands it to the app:
//!
//! ```no_run
//! use shutdown_forensics::Forensics;
//!
//! # fn main() -> Result<(), shutdown_forensics::Error> {
//! let forensics = Forensics::builder().install()?;
//! let ctx = forensics.signal().wait(); // blocks until SIGTERM or SIGINT
//! if let Some(sender) = &ctx.sender {
//!     eprintln!("stopped by pid {} (uid {:?})", sender.pid, sender.uid);
//! }
//! eprintln!("{}", ctx.to_log_line());
//! forensics.finish();
//! # Ok(()) }
//! ```
//!
//! `sender_name=unknown` is common: the sender (a `kill` command, a script) often exits
//! before its `/proc` entry can be read. Its pid and uid still come from the kernel and are
//! exact; `sender_pid=0` means the signal came from outside our pid namespace (a container
//! runtime, the host) or from the kernel, never from ourselves.
//!
//! The context can also be captured without a signal ([`ShutdownContext::capture`]), and what
//! it reads is set with [`ContextOptions`]: command lines are left out unless asked for.
//!
//! # Signals
//!
//! [`DEFAULT_SIGNALS`] are `SIGTERM` and `SIGINT`; [`Escalation`] says what a repeated signal
//! does. [`signal_name`] and [`signal_number`] translate both ways (`SIGRTMIN+3` included).
//! [`ShutdownTrigger`] starts a shutdown that no signal started (an admin endpoint, a test).

// For contributors: nothing here emits shutdown events or touches the timeline; the signal
// helper (`crate::signal_helper`) wires it in. In: a signal number and its sender, `/proc`,
// marker files. Out: plain values (`ShutdownContext`, `TriggerInfo`). Read `signal.rs` (the
// sender) and `capture/capturer.rs` (the signal-time capture) first.

pub(crate) mod capture;
pub(crate) mod escalation;
mod manager_job;
pub mod markers;
pub(crate) mod signal;
pub(crate) mod trigger;

pub use crate::sys::proc::ProcSummary;
pub use capture::{ContextCapturer, ContextOptions, ShutdownContext, Supervisor};
pub use escalation::{Escalation, DEFAULT_SIGNALS};
pub use manager_job::ManagerJob;
pub use signal::{signal_name, signal_name_or_unknown, signal_number, SignalCause, SignalSender};
pub use trigger::{ShutdownTrigger, TriggerInfo};
