//! The record lock: orders a step's bookkeeping and flight-record lines across threads (see
//! `state.rs` for the locking rule; log lines keep that order by the log order,
//! `timeline/log_order.rs`, so this lock is never held across an event), and never lets a
//! stalled writer hang a shutdown.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a thread waits for the [`RecordLock`] before it writes unordered: a `write(2)`
/// stalled by the disk must delay a shutdown, never hang it (the app's log sink cannot stall
/// it: no event is emitted under it).
const RECORD_LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// A re-entrant lock (an event emitted under it may reach this layer again on the same
/// thread, e.g. a writer that logs) whose waiters give up after [`RECORD_LOCK_PATIENCE`].
#[derive(Debug)]
pub(crate) struct RecordLock {
    owner: Mutex<Owner>,
    free: Condvar,
    patience: Duration,
}

impl Default for RecordLock {
    fn default() -> Self {
        Self::with_patience(RECORD_LOCK_PATIENCE)
    }
}

#[derive(Debug, Default)]
struct Owner {
    /// [`thread_key`] of the holder; meaningful while `depth > 0`.
    thread: usize,
    depth: usize,
    /// A waiter already ran out of patience during this hold: later waiters give up at once,
    /// so one stalled holder delays the shutdown by one patience window, not one per write.
    stalled: bool,
}

/// Held while a step's lines are written; `None` inside when the wait ran out.
#[must_use]
pub(crate) struct RecordGuard<'a>(Option<&'a RecordLock>);

/// A number that identifies the calling thread while it runs (the address of a thread
/// local); 0 when it cannot be had (thread-local storage being torn down).
fn thread_key() -> usize {
    thread_local!(static KEY: u8 = const { 0 });
    KEY.try_with(|k| std::ptr::from_ref(k) as usize)
        .unwrap_or(0)
}

impl RecordLock {
    pub(crate) fn with_patience(patience: Duration) -> Self {
        Self {
            owner: Mutex::default(),
            free: Condvar::new(),
            patience,
        }
    }

    /// Whether the guard holds the lock (false when the wait ran out and lines go unordered).
    #[cfg(test)]
    fn held(guard: &RecordGuard<'_>) -> bool {
        guard.0.is_some()
    }

    fn owner(&self) -> MutexGuard<'_, Owner> {
        self.owner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock(&self) -> RecordGuard<'_> {
        let me = thread_key();
        let mut owner = self.owner();
        if owner.depth > 0 && me != 0 && owner.thread == me {
            owner.depth += 1;
            return RecordGuard(Some(self));
        }
        let deadline = Instant::now() + self.patience;
        while owner.depth > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if owner.stalled || left.is_zero() {
                owner.stalled = true;
                return RecordGuard(None);
            }
            owner = (self.free.wait_timeout(owner, left))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *owner = Owner {
            thread: me,
            depth: 1,
            stalled: false,
        };
        RecordGuard(Some(self))
    }
}

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        let Some(lock) = self.0 else {
            return;
        };
        let mut owner = lock.owner();
        owner.depth = owner.depth.saturating_sub(1);
        if owner.depth == 0 {
            owner.stalled = false;
            drop(owner);
            lock.free.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_stalled_holder_costs_one_patience_window_not_one_per_write() {
        let lock = Arc::new(RecordLock::with_patience(Duration::from_millis(200)));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, is_held) = std::sync::mpsc::channel::<()>();
        let holder = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || {
                let _g = lock.lock();
                held.send(()).unwrap();
                let _ = released.recv(); // a writer stuck until told otherwise
            })
        };
        is_held.recv().unwrap();
        let start = Instant::now();
        let first = lock.lock();
        assert!(!RecordLock::held(&first));
        assert!(start.elapsed() >= Duration::from_millis(200));
        let again = Instant::now();
        for _ in 0..10 {
            assert!(!RecordLock::held(&lock.lock()));
        }
        assert!(
            again.elapsed() < Duration::from_millis(200),
            "later writes do not wait again"
        );
        drop(first);
        release.send(()).unwrap();
        holder.join().unwrap();
        assert!(
            RecordLock::held(&lock.lock()),
            "after the holder released, waiting works again"
        );
    }

    #[test]
    fn the_record_lock_is_reentrant_and_excludes_other_threads() {
        let lock = Arc::new(RecordLock::default());
        let outer = lock.lock();
        let inner = lock.lock(); // an event that reaches the layer again: no deadlock
        drop(inner);
        let got = Arc::new(AtomicBool::new(false));
        let other = {
            let (lock, got) = (Arc::clone(&lock), Arc::clone(&got));
            std::thread::spawn(move || {
                let _g = lock.lock();
                got.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!got.load(Ordering::SeqCst), "still held by the outer guard");
        drop(outer);
        assert!(other.join().is_ok());
        assert!(got.load(Ordering::SeqCst));
    }
}
