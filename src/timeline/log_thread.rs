//! The crate's log thread: events the watchdog would otherwise emit itself (over budget, stuck)
//! are emitted here, each in its turn of the log order (`log_order.rs`; the jobs are made by
//! `Timeline::emit_later` in `events.rs`).
//!
//! An event goes to the app's log sink, and a sink can block for good (stderr a full pipe
//! nobody reads). On the watchdog's own thread that would stop the heartbeats and the
//! snapshot before the kill: the record would end at the first warning. Here it stalls only
//! this thread; what the watchdog records goes on. The queue is bounded: past it, a line the
//! stuck sink could not take anyway is dropped (the job says so by being handed back).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Mutex, PoisonError};

/// Events waiting for the log thread at most (a stuck sink holds the rest back).
const QUEUE: usize = 64;

/// One event to emit; it holds what it needs (a weak reference to the layer, its turn).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Why a job was not queued.
pub(crate) enum NotQueued {
    /// The queue is full: the sink is stuck, and the job would wait behind it. The job is
    /// dropped unrun.
    Full,
    /// No thread could be started: the caller runs the job itself.
    NoThread(Job),
}

/// The log thread's queue, started at the first job handed to it; the thread ends when
/// this is dropped (with the layer).
#[derive(Default)]
pub(crate) struct LogThread {
    tx: Mutex<Option<SyncSender<Job>>>,
}

impl std::fmt::Debug for LogThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogThread").finish_non_exhaustive()
    }
}

impl LogThread {
    /// Queues `job` for the log thread, starting it first when needed; never blocks.
    pub(crate) fn send(&self, job: Job) -> Result<(), NotQueued> {
        let mut slot = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = spawn();
        }
        let Some(tx) = slot.as_ref() else {
            return Err(NotQueued::NoThread(job));
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(NotQueued::Full),
            Err(TrySendError::Disconnected(job)) => {
                *slot = None;
                Err(NotQueued::NoThread(job))
            }
        }
    }
}

fn spawn() -> Option<SyncSender<Job>> {
    let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
    std::thread::Builder::new()
        .name("shutdown-log".to_owned())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                // A panicking writer costs its line, never the thread.
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        })
        .ok()
        .map(|_| tx)
}
