//! The one `tracing` target of this crate, shared by every folder that logs.

/// The target of phase spans, and of every event this crate logs.
///
/// A global filter must let `shutdown=info` through (`info` does), or phases are invisible
/// to the layer.
pub const PHASE_TARGET: &str = "shutdown";
