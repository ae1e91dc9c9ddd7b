//! Question 1, **who stopped us, and why?**: signal names and the sender from `siginfo_t`,
//! what triggered the shutdown, the [`ShutdownContext`](context::ShutdownContext) (parent,
//! supervisor, load, tracer, planned-stop markers), and the bounded, detached diagnostic.
//!
//! In: a signal number and its sender, `/proc`, marker files. Out: plain values
//! (`ShutdownContext`, `TriggerInfo`) and a diagnostic file. Nothing here emits shutdown
//! events or touches the timeline; the signal helper (`crate::signal_helper`) wires it in.
//! Read `signal.rs` (the sender) and `context/capturer.rs` (the signal-time capture) first.

pub(crate) mod capture;
pub(crate) mod markers;
pub(crate) mod signal;
pub(crate) mod trigger;
