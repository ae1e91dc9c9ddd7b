//! Under systemd, whether the manager's stop signal came with a stop job: asked on the signal
//! path's last step, just before the `Shutdown context` event whose level it decides.
//!
//! Why there and not earlier: the capture, `STOPPING=1`, the flight record, the app's wake-up
//! and the diagnostic must not wait for a process spawn and a bus round trip. Why not on a
//! thread of its own after the event: the answer decides the event's level (INFO for a stop
//! job, WARN otherwise), and the event is written once. The wait is bounded
//! ([`PATIENCE`] from the signal's receipt, below the log order's patience): the app's first
//! phase lines, which follow the context event in the log, are delayed by the query (tens of
//! milliseconds), never reordered.

use std::time::{Duration, Instant};

use crate::context::ShutdownContext;

/// The query ends this long after the signal's receipt at the latest.
const PATIENCE: Duration = Duration::from_millis(750);
/// ... and never sooner than this after it starts (a signal path that was slow itself).
const LEAST: Duration = Duration::from_millis(200);

/// `ctx` with [`manager_job`](ShutdownContext::manager_job) filled in when the service manager
/// sent the signal (it is asked, bounded); `None` when there is nothing to ask.
pub(crate) fn asked(ctx: &ShutdownContext, received: Instant) -> Option<ShutdownContext> {
    let (manager, unit) = crate::systemd::stop_job::manager_signal(ctx)?;
    let deadline = (received + PATIENCE).max(Instant::now() + LEAST);
    let job = crate::systemd::stop_job::ask("systemctl".as_ref(), manager, unit, deadline);
    let mut updated = ctx.clone();
    updated.manager_job = Some(job);
    Some(updated)
}
