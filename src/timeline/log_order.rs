//! The order of the crate's log lines, kept apart from the flight record's.
//!
//! A step's record lines are written under the record lock (`record/lock.rs`), which is held
//! only around bookkeeping and `write(2)`: never across an event, because an event goes to the
//! app's log sink, and a sink can block (stderr a full pipe nobody reads) for as long as it
//! likes. What must still hold is that readers of the log see the lines in the order the
//! record has them (`Shutdown context` before the first phase line, `over budget` before
//! `done`). So each step takes a *turn* while it holds the record lock, and emits its event
//! only when the turns before it are over: a ticket lock.
//!
//! A turn that does not end (its event stuck in the sink) is waited for at most the
//! patience; then the waiter emits out of order, and later waiters in the same turn do not
//! wait at all, so a stuck sink costs one patience window, not one per line. An event
//! emitted while its thread holds the current turn (a writer that logs, a phase opened from
//! inside an event) runs at once: waiting for itself would deadlock.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long an event waits for the turns before it: ample for a healthy sink, short enough
/// that a stuck one delays the app's own line (never a record line) by about a second.
pub(crate) const LOG_ORDER_PATIENCE: Duration = Duration::from_secs(1);

/// Hands out turns and lets each through in order (see the module docs).
#[derive(Debug)]
pub(crate) struct LogOrder {
    turns: Mutex<Turns>,
    moved: Condvar,
    patience: Duration,
}

#[derive(Debug, Default)]
struct Turns {
    /// The next turn handed out.
    next: u64,
    /// The lowest turn not over yet: the one whose event may be emitted now.
    serving: u64,
    /// Turns above `serving` already over (their waiter gave up, or had nothing to emit).
    over: BTreeSet<u64>,
    /// The thread (see [`thread_key`]) emitting in turn `serving`, while it does.
    holder: Option<usize>,
    /// A waiter ran out of patience during turn `serving`: later ones do not wait.
    stalled: bool,
}

/// A place in the log order; its turn ends when it is dropped (emitted or not).
#[must_use]
pub(crate) struct Turn<'a> {
    order: &'a LogOrder,
    n: u64,
}

/// A number that identifies the calling thread while it runs (the address of a thread
/// local); 0 when it cannot be had (thread-local storage being torn down).
fn thread_key() -> usize {
    thread_local!(static KEY: u8 = const { 0 });
    KEY.try_with(|k| std::ptr::from_ref(k) as usize)
        .unwrap_or(0)
}

impl Default for LogOrder {
    fn default() -> Self {
        Self::with_patience(LOG_ORDER_PATIENCE)
    }
}

impl LogOrder {
    pub(crate) fn with_patience(patience: Duration) -> Self {
        Self {
            turns: Mutex::default(),
            moved: Condvar::new(),
            patience,
        }
    }

    fn turns(&self) -> MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next turn. Take it where the step's record lines are ordered (under the record
    /// lock), so that the log order is the record's.
    pub(crate) fn take(&self) -> Turn<'_> {
        let mut t = self.turns();
        let n = t.next;
        t.next += 1;
        Turn { order: self, n }
    }

    /// How many turns have been handed out so far: a turn numbered at or above it was taken
    /// later (a stuck line whose turn comes after lines ordered while its snapshot was taken
    /// says when it was logged).
    pub(crate) fn handed_out(&self) -> u64 {
        self.turns().next
    }

    /// The number of a turn, to hand to another thread ([`Self::emit_numbered`]).
    pub(crate) fn into_number(turn: Turn<'_>) -> u64 {
        let n = turn.n;
        std::mem::forget(turn);
        n
    }

    /// Waits for turn `n` (bounded), runs `emit`, and ends the turn, also when `emit` panics.
    pub(crate) fn emit_numbered<R>(&self, n: u64, emit: impl FnOnce() -> R) -> R {
        let turn = Turn { order: self, n };
        turn.emit(emit)
    }

    /// Ends turn `n` without emitting (its event will not come).
    pub(crate) fn skip_numbered(&self, n: u64) {
        drop(Turn { order: self, n });
    }

    /// Whether the log order is waiting for some turn (used by tests).
    #[cfg(test)]
    fn pending(&self) -> u64 {
        let t = self.turns();
        t.next - t.serving
    }
}

impl Turn<'_> {
    /// This turn's place in the order.
    pub(crate) fn number(&self) -> u64 {
        self.n
    }

    /// Waits until the turns before this one are over (at most the patience), then runs
    /// `emit` and ends this turn.
    pub(crate) fn emit<R>(self, emit: impl FnOnce() -> R) -> R {
        let me = thread_key();
        let order = self.order;
        let mut t = order.turns();
        let deadline = Instant::now() + order.patience;
        loop {
            if t.serving == self.n {
                t.holder = Some(me);
                break;
            }
            // Nested in this thread's own turn: waiting would wait for ourselves.
            if me != 0 && t.holder == Some(me) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if t.stalled || left.is_zero() {
                t.stalled = true;
                break;
            }
            t = (order.moved.wait_timeout(t, left))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(t);
        // `self` ends the turn when dropped, after `emit` (or during its unwinding).
        emit()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut t = self.order.turns();
        if t.serving == self.n {
            t.serving += 1;
            t.holder = None;
            t.stalled = false;
            loop {
                let next = t.serving;
                if !t.over.remove(&next) {
                    break;
                }
                t.serving += 1;
            }
        } else if self.n > t.serving {
            t.over.insert(self.n);
        }
        drop(t);
        self.order.moved.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    #[test]
    fn lines_come_out_in_the_order_their_turns_were_taken() {
        let order = Arc::new(LogOrder::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let first = order.take();
        let n2 = LogOrder::into_number(order.take());
        let n3 = LogOrder::into_number(order.take());
        // The third and second are emitted by other threads, which start first.
        let spawn = |n: u64, label: &'static str| {
            let (order, seen) = (Arc::clone(&order), Arc::clone(&seen));
            std::thread::spawn(move || {
                order.emit_numbered(n, || seen.lock().unwrap().push(label));
            })
        };
        let third = spawn(n3, "third");
        std::thread::sleep(Duration::from_millis(20));
        let second = spawn(n2, "second");
        std::thread::sleep(Duration::from_millis(20));
        assert!(seen.lock().unwrap().is_empty(), "nobody before the first");
        first.emit(|| seen.lock().unwrap().push("first"));
        third.join().unwrap();
        second.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["first", "second", "third"]);
        assert_eq!(order.pending(), 0);
    }

    #[test]
    fn a_stuck_turn_costs_one_patience_window_and_nested_turns_run_at_once() {
        let order = Arc::new(LogOrder::with_patience(Duration::from_millis(200)));
        let stuck = LogOrder::into_number(order.take());
        let (release, released) = mpsc::channel::<()>();
        let (held, is_held) = mpsc::channel::<()>();
        let holder = {
            let order = Arc::clone(&order);
            std::thread::spawn(move || {
                order.emit_numbered(stuck, || {
                    // A line that re-enters the log order from inside its own event.
                    order.take().emit(|| ());
                    held.send(()).unwrap();
                    let _ = released.recv(); // a sink stuck until told otherwise
                });
            })
        };
        is_held.recv().unwrap();
        let start = Instant::now();
        order.take().emit(|| ());
        assert!(start.elapsed() >= Duration::from_millis(200));
        let again = Instant::now();
        for _ in 0..10 {
            order.take().emit(|| ());
        }
        assert!(
            again.elapsed() < Duration::from_millis(200),
            "no second wait"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(order.pending(), 0, "every turn ended");
        // Ordered again once the stuck turn is over.
        let a = order.take();
        let b = LogOrder::into_number(order.take());
        let waiter = {
            let order = Arc::clone(&order);
            std::thread::spawn(move || {
                let start = Instant::now();
                order.emit_numbered(b, || ());
                start.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(a); // ended without an event
        assert!(waiter.join().unwrap() < Duration::from_millis(200));
    }

    #[test]
    fn a_panicking_event_still_ends_its_turn() {
        let order = LogOrder::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            order.take().emit(|| panic!("writer exploded"))
        }));
        assert!(r.is_err());
        let start = Instant::now();
        order.take().emit(|| ());
        assert!(start.elapsed() < LOG_ORDER_PATIENCE);
    }
}
