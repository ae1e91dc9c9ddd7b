//! Every open span of the app, tracked from the start (a request that began before the stop
//! and now waits on its peer must appear in the snapshot).
//!
//! The common case costs no lock and no atomic read-modify-write: a span opened, entered,
//! exited and closed on one thread touches only that thread's table (`ThreadTable`, one
//! writer, read by snapshots with a per-slot validation) and that thread's stack of entered
//! spans. A span that outlives its slot (evicted by a later span hashing to it) moves to the
//! shared table, a 64-way sharded `Mutex<HashMap>`, which also holds every span of a thread
//! without a table. An exit or close from another thread than the opening one looks for the
//! span's slot in every live thread's table (one load each, then a compare-and-swap where it
//! is found), else in the shared table: it costs tens to hundreds of nanoseconds, growing
//! with the number of threads that hold a table (BENCHMARKS.md). Names come from the span's
//! static metadata; fields and parents are read from the registry only when a snapshot is
//! taken.
//!
//! What the tracker cannot see, it says: nesting deeper than 32 entered spans on one thread,
//! and enters on threads without a table, are listed in the snapshot's `unknown`. A span
//! entered on one thread and exited on another (an `Entered` guard held across an `.await`)
//! stays "entered" on the first until it closes, as in `tracing-subscriber`'s own registry.
//! A process that forks keeps the parent's thread ids and tables in the child: take
//! snapshots in the process that installed the layer.
//!
//! A span is in exactly one place: its opening thread's table or the shared table. Moving it
//! (eviction, or the thread's exit) swaps its slot's key to `BUSY` with a compare-and-swap
//! while holding the span's shard lock, and a closer from another thread takes the slot with
//! a compare-and-swap or, having lost, finds the span in the shard: no span is lost, none is
//! left behind as a ghost (`spans_opened_and_closed_across_threads_leave_nothing_behind`).

mod clock;
mod shared_table;
mod thread_table;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
};
use std::sync::{Arc, Mutex, PoisonError};

use tracing_core::Metadata;

pub(crate) use clock::{coarse_now, coarse_since, current_tid};
use shared_table::{presence_of, Shard, TrackerState, MAX_THREAD_TABLES, PRESENCE, SHARDS};
pub(crate) use shared_table::{IdHasher, SpanFilter};
use thread_table::{pack, unpack, Entry, Slot, ThreadTable, BUSY, EMPTY, REGISTRY_SHARDS, STACK};

/// What is kept per open span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanSlot {
    pub(crate) meta: &'static Metadata<'static>,
    /// Coarse monotonic nanoseconds at creation.
    pub(crate) opened: u64,
    /// Coarse monotonic nanoseconds (millisecond resolution) of the last exit (creation
    /// until then).
    pub(crate) active: u64,
    /// The thread (tid) it is entered on now, else of its last exit (the creating thread
    /// until then); 0 when unknown.
    pub(crate) thread: u32,
    /// How many times the span is entered right now (0: idle, waiting to be polled).
    pub(crate) entered: u32,
}

/// One tracked span as a snapshot sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackedSpan {
    pub(crate) id: u64,
    pub(crate) slot: SpanSlot,
}

/// The open spans of the app.
pub(crate) struct SpanTracker {
    inner: Arc<TrackerState>,
}

impl std::fmt::Debug for SpanTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanTracker")
            .field("filtered", &self.inner.filter.is_some())
            .field("thread_tables", &self.inner.tables_len.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for SpanTracker {
    fn drop(&mut self) {
        self.inner.dropped.store(true, Release);
    }
}

thread_local! {
    /// The table this thread last used: `(tracker, table)`. No destructor, so it can be read
    /// while the thread's other thread-locals are being destroyed.
    static LAST: Cell<(*const TrackerState, *const ThreadTable)> =
        const { Cell::new((ptr::null(), ptr::null())) };
    /// Every table this thread holds (one per tracker); dropping one hands it back.
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// A thread's hold on its table of one tracker.
struct Held {
    inner: Arc<TrackerState>,
    table: *const ThreadTable,
}

impl Drop for Held {
    fn drop(&mut self) {
        let me = Arc::as_ptr(&self.inner);
        let _ = LAST.try_with(|l| {
            if l.get().0 == me {
                l.set((ptr::null(), ptr::null()));
            }
        });
        // SAFETY: tables live as long as `inner`, which `self` keeps alive.
        self.inner.release(unsafe { &*self.table });
    }
}

impl SpanTracker {
    pub(crate) fn new(filter: Option<SpanFilter>) -> Self {
        Self {
            inner: Arc::new(TrackerState {
                presence: filter
                    .is_some()
                    .then(|| (0..PRESENCE).map(|_| AtomicU32::new(0)).collect()),
                filter,
                tables: (0..MAX_THREAD_TABLES)
                    .map(|_| AtomicPtr::new(ptr::null_mut()))
                    .collect(),
                tables_len: AtomicUsize::new(0),
                hints: (0..REGISTRY_SHARDS).map(|_| AtomicU16::new(0)).collect(),
                grow: Mutex::new(()),
                shards: (0..SHARDS).map(|_| Shard::default()).collect(),
                shared_len: AtomicUsize::new(0),
                untracked: AtomicU64::new(0),
                blind_enters: AtomicU64::new(0),
                dropped: AtomicBool::new(false),
            }),
        }
    }

    /// The calling thread's table of this tracker (claimed on first use); `None` when every
    /// table is taken or the thread is exiting.
    #[inline(always)]
    fn table(&self) -> Option<&ThreadTable> {
        let me = Arc::as_ptr(&self.inner);
        let (inner, table) = LAST
            .try_with(Cell::get)
            .unwrap_or((ptr::null(), ptr::null()));
        if inner == me {
            // SAFETY: `LAST` names a table of `me` only while this thread's `Held` keeps it
            // claimed; tables live as long as `self.inner`.
            return unsafe { table.as_ref() };
        }
        self.table_slow()
    }

    #[cold]
    #[inline(never)]
    fn table_slow(&self) -> Option<&ThreadTable> {
        let me = Arc::as_ptr(&self.inner);
        let table = HELD
            .try_with(|held| {
                let mut held = held.try_borrow_mut().ok()?;
                // Hand back the tables of trackers that were dropped.
                held.retain(|h| !h.inner.dropped.load(Acquire));
                let table = match held.iter().find(|h| Arc::ptr_eq(&h.inner, &self.inner)) {
                    Some(h) => h.table,
                    None => {
                        let table = self.inner.claim()?;
                        held.push(Held {
                            inner: Arc::clone(&self.inner),
                            table,
                        });
                        table
                    }
                };
                LAST.try_with(|l| l.set((me, table))).ok()?;
                Some(table)
            })
            .ok()
            .flatten()?;
        // SAFETY: as in `table`: held by this thread, alive as long as `self.inner`.
        unsafe { table.as_ref() }
    }

    /// A span was created; false when the filter leaves it out (it is not tracked).
    #[inline]
    pub(crate) fn open(&self, id: u64, meta: &'static Metadata<'static>) -> bool {
        let inner = &*self.inner;
        if let Some(f) = &inner.filter {
            if !f(meta) {
                return false;
            }
        }
        let now = coarse_now();
        let table = if id == EMPTY || id == BUSY {
            None
        } else {
            self.table()
        };
        let Some(table) = table else {
            inner.open_shared(id, meta, now, current_tid());
            return true;
        };
        let tid = table.tid.load(Relaxed);
        inner.note_shard(table, id);
        let slot = table.slot(id);
        let old = slot.key.load(Relaxed);
        if old != EMPTY && old != BUSY {
            // Still open: it moves to the shared table.
            inner.evict(slot, old);
        }
        slot.key.store(BUSY, Relaxed);
        fence(Release);
        slot.meta.store(ptr::from_ref(meta).cast_mut(), Relaxed);
        slot.opened.store(now, Relaxed);
        slot.last.store(pack(now, tid), Relaxed);
        slot.key.store(id, Release);
        if let Some(p) = &inner.presence {
            p[presence_of(id)].fetch_add(1, Relaxed);
        }
        true
    }

    /// Whether the filter lets this span be tracked (no filter: every span).
    pub(crate) fn wants(&self, meta: &Metadata<'_>) -> bool {
        self.inner.filter.as_ref().is_none_or(|f| f(meta))
    }

    /// The span was entered on this thread.
    #[inline]
    pub(crate) fn enter(&self, id: u64) {
        // With a filter, a span it left out is not pushed (its exit then finds no entry).
        if !self.inner.may_track(id) {
            return;
        }
        match self.table() {
            Some(t) => t.push(id),
            None => self.inner.blind_enter(),
        }
    }

    /// The span was exited on this thread.
    #[inline]
    pub(crate) fn exit(&self, id: u64) {
        if let Some(t) = self.table() {
            t.pop(id);
            // A span a filter left out is in no table (a tracked one always counts here).
            if !self.inner.may_track(id) {
                return;
            }
            let slot = t.slot(id);
            if slot.key.load(Relaxed) == id && id != EMPTY && id != BUSY {
                slot.last
                    .store(pack(coarse_now(), t.tid.load(Relaxed)), Relaxed);
                return;
            }
        }
        if self.inner.may_track(id) {
            self.inner
                .exit_elsewhere(id, pack(coarse_now(), current_tid()));
        }
    }

    /// The span was entered (`true`) or exited (`false`) on this thread.
    #[cfg(test)]
    pub(crate) fn activity(&self, id: u64, entered: bool) {
        if entered {
            self.enter(id);
        } else {
            self.exit(id);
        }
    }

    /// The span closed.
    #[inline]
    pub(crate) fn close(&self, id: u64) {
        if !self.inner.may_track(id) {
            return;
        }
        if let Some(t) = self.table() {
            let slot = t.slot(id);
            if slot.key.load(Relaxed) == id && id != EMPTY && id != BUSY {
                slot.key.store(EMPTY, Release);
                self.inner.forget(id);
                return;
            }
        }
        self.inner.close_elsewhere(id);
    }

    /// How many spans are tracked now (counted, not free: a snapshot-time figure).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let local: usize = self
            .inner
            .tables()
            .map(|t| t.slots.iter().filter(|s| s.read().is_some()).count())
            .sum();
        local
            + self
                .inner
                .shards
                .iter()
                .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
                .sum::<usize>()
    }

    /// Spans that were not tracked because [`MAX_TRACKED`] were held in the shared table.
    pub(crate) fn untracked(&self) -> u64 {
        self.inner.untracked.load(Relaxed)
    }

    /// What the tracked spans cannot tell, one sentence each (for a snapshot's `unknown`).
    pub(crate) fn caveats(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in self.inner.tables() {
            let depth = t.depth.load(Acquire);
            if t.claimed.load(Acquire) && depth > STACK {
                out.push(format!(
                    "spans: thread tid {} has {depth} spans entered, deeper than the {STACK} \
                     recorded: the innermost are shown as idle since their last exit",
                    t.tid.load(Relaxed)
                ));
            }
        }
        let blind = self.inner.blind_enters.load(Relaxed);
        if blind > 0 {
            out.push(format!(
                "spans: {blind} enters on threads beyond the first {MAX_THREAD_TABLES} (or \
                 exiting) were not recorded: spans running there are shown as idle"
            ));
        }
        out
    }

    /// A copy of every tracked span (at most `limit`, the oldest). Threads' tables are read without a
    /// lock; each shard is locked only while it is copied, so no app thread waits longer
    /// than one shard's copy.
    pub(crate) fn collect(&self, limit: usize) -> Vec<TrackedSpan> {
        self.gather(limit, usize::MAX, |_, _| true).0
    }

    /// The tracked spans for which `keep(id, opened)` holds, for a search on an app's thread
    /// (a phase close): the others cost a visit, no copy. At most `limit` are copied, the
    /// first met plus the oldest of all; the flag says more held.
    pub(crate) fn select(
        &self,
        limit: usize,
        keep: impl Fn(u64, u64) -> bool,
    ) -> (Vec<TrackedSpan>, bool) {
        self.gather(limit, limit, keep)
    }

    /// Copies the spans `keep` accepts (at most `copies` of them, then only the oldest one
    /// met), keeps the oldest `limit`, and says whether any were left out.
    fn gather(
        &self,
        limit: usize,
        copies: usize,
        keep: impl Fn(u64, u64) -> bool,
    ) -> (Vec<TrackedSpan>, bool) {
        let inner = &*self.inner;
        let mut entered: HashMap<u64, (u32, u32), BuildHasherDefault<IdHasher>> =
            HashMap::default();
        let mut found: HashMap<u64, Entry, BuildHasherDefault<IdHasher>> = HashMap::default();
        let mut skipped = false;
        let mut oldest_skipped: Option<(u64, Entry)> = None;
        let mut add = |found: &mut HashMap<u64, Entry, _>, id: u64, e: Entry| {
            if found.len() < copies || found.contains_key(&id) {
                found
                    .entry(id)
                    .and_modify(|f: &mut Entry| {
                        if e.last > f.last {
                            *f = e;
                        }
                    })
                    .or_insert(e);
            } else {
                skipped = true;
                if oldest_skipped.is_none_or(|(_, o)| e.opened < o.opened) {
                    oldest_skipped = Some((id, e));
                }
            }
        };
        for t in inner.tables() {
            if !t.claimed.load(Acquire) {
                continue;
            }
            let tid = t.tid.load(Relaxed);
            let depth = t.depth.load(Acquire).min(STACK);
            for e in &t.stack[..depth] {
                let e = entered.entry(e.load(Relaxed)).or_default();
                e.0 += 1;
                e.1 = tid;
            }
            for (id, entry) in t.slots.iter().filter_map(Slot::read) {
                if keep(id, entry.opened) {
                    add(&mut found, id, entry);
                }
            }
        }
        // After the threads' tables: a span moved meanwhile is in the shard by now.
        for shard in inner.shards.iter() {
            let table = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, e) in table.iter().filter(|(id, e)| keep(**id, e.opened)) {
                add(&mut found, *id, *e);
            }
        }
        if let Some((id, e)) = oldest_skipped {
            if found.values().all(|f| e.opened < f.opened) {
                found.insert(id, e);
            }
        }
        let mut found: Vec<(u64, Entry)> = found.into_iter().collect();
        let cut = skipped || found.len() > limit;
        if cut {
            // The oldest are the ones a snapshot is about: keep those.
            found.select_nth_unstable_by_key(limit.saturating_sub(1), |(id, e)| (e.opened, *id));
            found.truncate(limit);
        }
        let mut out: Vec<TrackedSpan> = found
            .into_iter()
            .map(|(id, e)| {
                let (active, last_tid) = unpack(e.last);
                let (count, on) = entered.get(&id).copied().unwrap_or((0, 0));
                TrackedSpan {
                    id,
                    slot: SpanSlot {
                        meta: e.meta,
                        opened: e.opened,
                        // The activity word keeps ~1 ms units: never before the open.
                        active: active.max(e.opened),
                        thread: if count > 0 { on } else { last_tid },
                        entered: count,
                    },
                }
            })
            .collect();
        out.sort_by_key(|t| t.id);
        (out, cut)
    }

    /// The slot of one span, when tracked.
    #[cfg(test)]
    pub(crate) fn get(&self, id: u64) -> Option<SpanSlot> {
        self.collect(usize::MAX)
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.slot)
    }
}

#[cfg(test)]
mod tests;
