//! What the signal helper listens for, and what it does when signals keep coming.

/// Signals listened to by default: `SIGTERM` (supervisors, `kill`, `docker stop`) and `SIGINT`
/// (Ctrl-C).
///
/// `SIGHUP` and `SIGQUIT` are left alone: many services use them for a reload or a dump, and
/// catching them here would turn those into a shutdown. Opt in with
/// [`ForensicsBuilder::with_signals`](crate::ForensicsBuilder::with_signals), e.g. `&[SIGTERM, SIGINT, SIGHUP]` for a service that
/// should stop when its terminal hangs up.
pub const DEFAULT_SIGNALS: [i32; 2] = [libc::SIGTERM, libc::SIGINT];

/// What to do when signals keep coming after the first.
///
/// Every repeat is counted, logged (the first ten, then every hundredth) and recorded either
/// way; the first signal always starts the graceful shutdown.
///
/// ```
/// use shutdown_forensics::context::Escalation;
/// use shutdown_forensics::Forensics;
///
/// // An impatient operator's second Ctrl-C ends the process with the shell's SIGINT code.
/// let builder = Forensics::builder().with_escalation(Escalation::Exit { after: 2, code: 130 });
/// # let _ = builder;
/// assert_eq!(Escalation::default(), Escalation::LogOnly);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Escalation {
    /// Log and record each repeat; the graceful shutdown goes on. The default.
    #[default]
    LogOnly,
    /// On the `after`-th signal (counting the first), flush the flight record and the adopted
    /// log guards, then exit the process with `code`.
    Exit {
        /// Which signal escalates: 2 means the second one (0 and 1 act as 2).
        after: u32,
        /// The process exit code.
        code: i32,
    },
}
