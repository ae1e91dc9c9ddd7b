//! Every open span of the app, tracked from the start (a request that began before the stop
//! and now waits on its peer must appear in the snapshot).
//!
//! Three parts, each simple:
//! - `table.rs`: every tracked span, in one table found from any thread by the span id alone
//!   (its hash names a window of 8 slots; a full window sends the span to a sharded
//!   `Mutex<HashMap>` overflow). Open claims a slot with one compare-and-swap; exit stores
//!   the span's activity word (time and thread); close empties the slot. A span entered,
//!   exited and closed on other threads than its opener's costs the same as on one thread
//!   (besides the cache line that moves), and relies on no other crate's id layout.
//! - `stacks.rs`: each thread's stack of entered spans (what runs where now), written by its
//!   thread only.
//! - `clock.rs`: the time of a stamp, one relaxed load of a word a ticker thread sets every
//!   20 ms (the snapshot judges in tenths of seconds).
//!
//! Names come from the span's static metadata; fields are captured by the layer
//! (`stuck/fields.rs`) and parents read from the registry only when a snapshot is taken.
//!
//! What the tracker cannot see, it says: nesting deeper than 32 entered spans on one thread,
//! and enters on a thread whose thread-locals are gone (it is exiting), are listed in the
//! snapshot's `unknown`. A span entered on one thread and exited on another (an `Entered`
//! guard held across an `.await`) stays "entered" on the first until that thread exits the
//! same span or ends, as in `tracing-subscriber`'s own registry. In a forked child, the stacks
//! of the parent's other threads stay as they were: take snapshots in the process that
//! installed the layer (the clock is right in the child: see `clock.rs`).

mod clock;
mod stacks;
mod table;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tracing_core::Metadata;

pub(crate) use clock::{coarse_since, current_tid, now as coarse_now};
use stacks::{Stacks, STACK};
use table::{pack, unpack, Entry, Table};

use crate::stuck::fields::SlotFields;
pub(crate) use table::{IdHasher, SpanFilter};

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
    /// Its fields, when they fit in the slot (else they are in its registry extension).
    pub(crate) fields: SlotFields,
}

/// One tracked span as a snapshot sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackedSpan {
    pub(crate) id: u64,
    pub(crate) slot: SpanSlot,
}

/// The open spans of the app.
pub(crate) struct SpanTracker {
    filter: Option<SpanFilter>,
    table: Table,
    stacks: Arc<Stacks>,
    /// Enters and exits on threads that are exiting (their stacks are gone).
    blind_enters: AtomicU64,
}

impl std::fmt::Debug for SpanTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanTracker")
            .field("filtered", &self.filter.is_some())
            .field("thread_stacks", &self.stacks.len())
            .finish_non_exhaustive()
    }
}

impl SpanTracker {
    /// A tracker; its clock's ticker starts with [`SpanTracker::start_clock`] (a layer that
    /// tracks no span starts no thread).
    pub(crate) fn new(filter: Option<SpanFilter>) -> Self {
        Self {
            filter,
            table: Table::new(),
            stacks: Arc::new(Stacks::default()),
            blind_enters: AtomicU64::new(0),
        }
    }

    /// Starts the clock's ticker thread (`shutdown-clock`), unless it runs in this process.
    pub(crate) fn start_clock(&self) {
        clock::ensure_ticking();
    }

    /// A span was created; false when the filter leaves it out (it is not tracked).
    #[inline]
    #[cfg(test)]
    pub(crate) fn open(&self, id: u64, meta: &'static Metadata<'static>) -> bool {
        if !self.wants(meta) {
            return false;
        }
        self.open_with(id, meta, &SlotFields::NONE);
        true
    }

    /// A span the filter wants was created, with `fields` (as [`SpanTracker::wants`] said).
    #[inline]
    pub(crate) fn open_with(&self, id: u64, meta: &'static Metadata<'static>, fields: &SlotFields) {
        self.table
            .open(id, meta, clock::now(), current_tid(), fields);
    }

    /// The fields span `id`'s slot holds, when it is tracked.
    pub(crate) fn slot_fields(&self, id: u64) -> Option<SlotFields> {
        self.table.get(id).map(|e| e.fields)
    }

    /// Whether the filter lets this span be tracked (no filter: every span).
    pub(crate) fn wants(&self, meta: &Metadata<'_>) -> bool {
        self.filter.as_ref().is_none_or(|f| f(meta))
    }

    /// The span was entered on this thread.
    #[inline]
    pub(crate) fn enter(&self, id: u64) {
        if Stacks::with_mine(&self.stacks, |s| s.push(id)).is_none() {
            self.blind_enter();
        }
    }

    #[cold]
    #[inline(never)]
    fn blind_enter(&self) {
        self.blind_enters.fetch_add(1, Relaxed);
    }

    /// The span was exited on this thread.
    #[inline]
    pub(crate) fn exit(&self, id: u64) {
        // The thread id from the stack: no second thread-local lookup.
        let tid = Stacks::with_mine(&self.stacks, |s| {
            s.pop(id);
            s.tid
        })
        .unwrap_or_else(current_tid);
        self.table.exit(id, pack(clock::now(), tid));
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
        self.table.close(id);
    }

    /// How many spans are tracked now (counted, not free: a snapshot-time figure).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let mut n = 0;
        self.table.for_each(|_, _| n += 1);
        n
    }

    /// Spans that were not tracked because [`table::MAX_TRACKED`] were held in the overflow.
    pub(crate) fn untracked(&self) -> u64 {
        self.table.untracked.load(Relaxed)
    }

    /// What the tracked spans cannot tell, one sentence each (for a snapshot's `unknown`).
    pub(crate) fn caveats(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.stacks.live() {
            let depth = s.read().1;
            if depth > STACK {
                out.push(format!(
                    "spans: thread tid {} has {depth} spans entered, deeper than the {STACK} \
                     recorded: the innermost are shown as idle since their last exit",
                    s.tid
                ));
            }
        }
        let blind = self.blind_enters.load(Relaxed);
        if blind > 0 {
            out.push(format!(
                "spans: {blind} enters on exiting threads were not recorded: spans running \
                 there are shown as idle"
            ));
        }
        out
    }

    /// A copy of every tracked span (at most `limit`, the oldest). The table is read without a
    /// lock; each overflow shard is locked only while it is copied, so no app thread waits
    /// longer than one shard's copy.
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
        clock::ensure_ticking();
        for s in self.stacks.live() {
            let (ids, _) = s.read();
            for id in ids {
                let e = entered.entry(id).or_default();
                e.0 += 1;
                e.1 = s.tid;
            }
        }
        self.table.for_each(|id, e| {
            if keep(id, e.opened) {
                add(&mut found, id, e);
            }
        });
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
                        fields: e.fields,
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
