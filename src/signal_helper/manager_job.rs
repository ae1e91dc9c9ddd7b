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

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::context::ShutdownContext;
use crate::signal_helper::listener::ListenerState;

/// The query ends this long after the signal's receipt at the latest.
const PATIENCE: Duration = Duration::from_millis(750);
/// ... and never sooner than this after it starts (a signal path that was slow itself).
const LEAST: Duration = Duration::from_millis(200);

/// `ctx` with [`manager_job`](ShutdownContext::manager_job) filled in when the service manager
/// sent the signal, else `ctx` itself. The new context replaces the one in the slot (what
/// [`crate::ShutdownSignal::context`] returns and the report at `finish` holds) and goes to the
/// flight record.
pub(crate) fn with_manager_job(
    state: &ListenerState,
    ctx: Arc<ShutdownContext>,
    received: Instant,
) -> Arc<ShutdownContext> {
    let Some((manager, unit)) = crate::systemd::stop_job::manager_signal(&ctx) else {
        return ctx;
    };
    let deadline = (received + PATIENCE).max(Instant::now() + LEAST);
    let job = crate::systemd::stop_job::ask("systemctl".as_ref(), manager, unit, deadline);
    if let Some(handle) = &state.config.handle {
        handle.record("manager_job", json!(job));
    }
    let mut updated = (*ctx).clone();
    updated.manager_job = Some(job);
    let updated = Arc::new(updated);
    match state.slot.lock() {
        Ok(mut slot) => *slot = Some(Arc::clone(&updated)),
        Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&updated)),
    }
    // Waiters woken already returned; one that subscribes from now on gets the answer too.
    state.tx.send_replace(Some(Arc::clone(&updated)));
    updated
}
