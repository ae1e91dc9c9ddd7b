//! One small thread per diagnostic child: wait with a deadline, kill the group, reap.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use std::process::ExitStatus;

/// How a diagnostic run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticOutcome {
    /// The diagnostic shell exited (or was killed by its own watchdog) with this status.
    Exited(ExitStatus),
    /// The timeout passed; the whole process group was killed and reaped.
    KilledAtTimeout,
    /// The child could no longer be waited for (for example `SIGCHLD` is ignored, so the
    /// kernel reaped it, or another part of the program reaped it).
    Lost,
}

/// Where the reaper publishes how the run ended.
#[derive(Debug, Clone, Default)]
pub(super) struct OutcomeCell(Arc<(Mutex<Option<DiagnosticOutcome>>, Condvar)>);

impl OutcomeCell {
    pub(super) fn get(&self) -> Option<DiagnosticOutcome> {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg_attr(not(unix), allow(dead_code))] // only the Unix reaper publishes
    fn set(&self, outcome: DiagnosticOutcome) {
        let (slot, ready) = &*self.0;
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        ready.notify_all();
    }

    pub(super) fn wait_timeout(&self, limit: Duration) -> Option<DiagnosticOutcome> {
        let (slot, ready) = &*self.0;
        let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = ready
            .wait_timeout_while(guard, limit, |outcome| outcome.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

#[cfg(unix)]
pub(super) use unix::{start, Watch};

#[cfg(unix)]
mod unix {
    use std::fs::File;
    use std::io::{self, Write};
    use std::process::Child;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{DiagnosticOutcome, OutcomeCell};

    /// Polling starts fine (most runs end within tens of milliseconds) and backs off.
    const FIRST_NAP: Duration = Duration::from_millis(2);
    const LONGEST_NAP: Duration = Duration::from_millis(50);
    /// The reaper only polls, formats one line and writes it.
    const REAPER_STACK: usize = 64 * 1024;

    /// What the reaper needs besides the child.
    #[derive(Debug)]
    pub(in crate::diagnostic) struct Watch {
        pub(in crate::diagnostic) timeout: Duration,
        /// The log, to append a trailer when the run was cut short.
        pub(in crate::diagnostic) trailer: File,
        /// The absolute file size limit the child runs under.
        pub(in crate::diagnostic) size_limit: u64,
        pub(in crate::diagnostic) correlation_id: String,
    }

    /// Start the reaper thread for `child`. If the thread cannot be started, the child's
    /// group is killed and the child reaped before the error is returned.
    pub(in crate::diagnostic) fn start(child: Child, watch: Watch) -> io::Result<OutcomeCell> {
        let cell = OutcomeCell::default();
        let published = cell.clone();
        let pid = child.id();
        // The closure owns the Child; if spawning fails it is dropped, so keep the pid to
        // clean up by hand.
        let spawned = thread::Builder::new()
            .name("shutdown-diag-reaper".to_owned())
            .stack_size(REAPER_STACK)
            .spawn(move || reap(child, &watch, &published));
        if let Err(err) = spawned {
            kill_group(pid);
            let mut status = 0;
            if let Ok(raw) = libc::pid_t::try_from(pid) {
                // SAFETY: `status` is a valid out-pointer; `raw` is our own unreaped child.
                unsafe { libc::waitpid(raw, &mut status, 0) };
            }
            return Err(err);
        }
        Ok(cell)
    }

    fn reap(mut child: Child, watch: &Watch, cell: &OutcomeCell) {
        let started = Instant::now();
        let deadline = started.checked_add(watch.timeout);
        let mut nap = FIRST_NAP;
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) => break DiagnosticOutcome::Exited(status),
                Ok(None) => {}
                Err(_) => break DiagnosticOutcome::Lost,
            }
            let now = Instant::now();
            let left = deadline.map_or(LONGEST_NAP, |d| d.saturating_duration_since(now));
            if left.is_zero() {
                // The leader is unreaped (a zombie at worst), so its pid is still our
                // group's id and cannot have been reused.
                kill_group(child.id());
                break match child.wait() {
                    Ok(_) => DiagnosticOutcome::KilledAtTimeout,
                    Err(_) => DiagnosticOutcome::Lost,
                };
            }
            thread::sleep(nap.min(left));
            nap = (nap * 2).min(LONGEST_NAP);
        };
        write_trailer(watch, outcome, started.elapsed());
        cell.set(outcome);
    }

    /// Say in the log what the child could not: that it was killed, or hit the size cap.
    fn write_trailer(watch: &Watch, outcome: DiagnosticOutcome, elapsed: Duration) {
        let mut notes = Vec::new();
        if outcome == DiagnosticOutcome::KilledAtTimeout {
            notes.push(format!(
                "killed with its process group after the {:.1}s timeout ({:.1}s elapsed)",
                watch.timeout.as_secs_f64(),
                elapsed.as_secs_f64()
            ));
        }
        let len = watch.trailer.metadata().map_or(0, |meta| meta.len());
        if len >= watch.size_limit / 512 * 512 {
            notes.push("output reached the size cap; the rest was dropped".to_owned());
        }
        if notes.is_empty() {
            return;
        }
        let line = format!(
            "\n=== shutdown diagnostic {}: {} ===\n",
            watch.correlation_id,
            notes.join("; ")
        );
        // One write: the file is O_APPEND, so the line lands whole at the end. A failure
        // here has nowhere better to be reported.
        let _ = (&watch.trailer).write_all(line.as_bytes());
    }

    fn kill_group(pgid: u32) {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return;
        };
        if pgid <= 1 {
            return;
        }
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the
        // process group the child leads (it was spawned with process_group(0)).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
