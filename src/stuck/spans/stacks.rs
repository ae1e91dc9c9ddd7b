//! Each thread's stack of entered spans: which spans run where right now. Written only by its
//! thread (plain atomic stores, no read-modify-write), read by snapshots. A thread finds its
//! stack through a thread-local list (one entry per tracker it used); the tracker keeps a
//! `Weak` to every stack, so a thread that exits takes its stack with it.

use std::cell::RefCell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::clock::current_tid;

/// Entered spans one thread's stack holds; deeper nesting is counted, its spans not named.
pub(super) const STACK: usize = 32;

/// One thread's entered spans, innermost last.
pub(super) struct ThreadStack {
    pub(super) tid: u32,
    /// How many spans are entered on the thread (the stack holds the first [`STACK`]).
    pub(super) depth: AtomicUsize,
    pub(super) stack: [AtomicU64; STACK],
}

impl ThreadStack {
    /// The span was entered on the owning thread.
    #[inline]
    pub(super) fn push(&self, id: u64) {
        let d = self.depth.load(Relaxed);
        if d < STACK {
            self.stack[d].store(id, Relaxed);
        }
        self.depth.store(d.saturating_add(1), Release);
    }

    /// The span was exited on the owning thread: the innermost matching entry goes (exits
    /// are nearly always in order; an unmatched exit leaves the stack as it is).
    #[inline]
    pub(super) fn pop(&self, id: u64) {
        let d = self.depth.load(Relaxed);
        if d == 0 {
            return;
        }
        if d <= STACK && self.stack[d - 1].load(Relaxed) == id {
            self.depth.store(d - 1, Release);
            return;
        }
        self.pop_unordered(id, d);
    }

    #[cold]
    #[inline(never)]
    fn pop_unordered(&self, id: u64, d: usize) {
        if d > STACK {
            // The unrecorded top.
            self.depth.store(d - 1, Release);
            return;
        }
        let Some(at) = (0..d).rev().find(|&i| self.stack[i].load(Relaxed) == id) else {
            return;
        };
        for i in at..d - 1 {
            self.stack[i].store(self.stack[i + 1].load(Relaxed), Relaxed);
        }
        self.depth.store(d - 1, Release);
    }

    /// The entered spans (at most [`STACK`]) and the depth.
    pub(super) fn read(&self) -> (Vec<u64>, usize) {
        let depth = self.depth.load(Acquire);
        let ids = self.stack[..depth.min(STACK)]
            .iter()
            .map(|e| e.load(Relaxed))
            .collect();
        (ids, depth)
    }
}

/// A tracker's stacks, one per thread that entered a span.
pub(super) struct Stacks {
    /// Unique in the process (an address could be reused by a later tracker).
    id: u64,
    all: Mutex<Vec<Weak<ThreadStack>>>,
}

impl Default for Stacks {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, Relaxed),
            all: Mutex::new(Vec::new()),
        }
    }
}

/// A thread's stacks: `(tracker's id, tracker, stack)`.
type Mine = Vec<(u64, Weak<Stacks>, Arc<ThreadStack>)>;

thread_local! {
    /// This thread's stacks: `(tracker's id, tracker, stack)`, the tracker held weakly (a
    /// dropped tracker's entry goes at the next registration).
    static MINE: RefCell<Mine> =
        const { RefCell::new(Vec::new()) };
}

impl Stacks {
    /// Runs `f` with the calling thread's stack of `this` (made on first use); `None` when
    /// the thread is exiting (its thread-locals are gone).
    #[inline]
    pub(super) fn with_mine<R>(this: &Arc<Self>, f: impl FnOnce(&ThreadStack) -> R) -> Option<R> {
        let key = this.id;
        MINE.try_with(|mine| {
            if let Ok(mine) = mine.try_borrow() {
                if let Some((_, _, s)) = mine.iter().find(|(k, _, _)| *k == key) {
                    return Some(f(s));
                }
            }
            let s = Self::register(this, mine)?;
            Some(f(&s))
        })
        .ok()
        .flatten()
    }

    #[cold]
    #[inline(never)]
    fn register(this: &Arc<Self>, mine: &RefCell<Mine>) -> Option<Arc<ThreadStack>> {
        let mut mine = mine.try_borrow_mut().ok()?;
        // Stacks of trackers dropped since: gone.
        mine.retain(|(_, t, _)| t.strong_count() > 0);
        let stack = Arc::new(ThreadStack {
            tid: current_tid(),
            depth: AtomicUsize::new(0),
            stack: [const { AtomicU64::new(0) }; STACK],
        });
        let mut all = this.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|s| s.strong_count() > 0);
        all.push(Arc::downgrade(&stack));
        drop(all);
        mine.push((this.id, Arc::downgrade(this), Arc::clone(&stack)));
        Some(stack)
    }

    /// Every live thread's stack (a snapshot's copy).
    pub(super) fn live(&self) -> Vec<Arc<ThreadStack>> {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().filter_map(Weak::upgrade).collect()
    }

    /// How many threads hold a stack now (for tests and Debug).
    pub(super) fn len(&self) -> usize {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        all.iter().filter(|s| s.strong_count() > 0).count()
    }
}
