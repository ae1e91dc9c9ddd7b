//! The shared table (spans evicted from a thread's table, touched from another thread, or
//! opened by a thread without a table) and the state every thread's table hangs from.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing_core::Metadata;

use super::clock::current_tid;
use super::thread_table::{
    hash, pack, registry_shard, Entry, Slot, ThreadTable, BUSY, EMPTY, TID_BITS,
};

/// Decides which spans are tracked (see `ShutdownLayerBuilder::with_stuck_spans`).
pub(crate) type SpanFilter = Arc<dyn Fn(&Metadata<'_>) -> bool + Send + Sync>;

pub(super) const SHARDS: usize = 64;
/// Counters of a counting filter over span ids, used when a filter leaves most spans out:
/// exit and close of an untracked span then cost one atomic load, not a search.
pub(super) const PRESENCE: usize = 4096;
/// At most this many spans are held in the shared table; more are counted, not tracked.
pub(crate) const MAX_TRACKED: usize = 100_000;
/// Threads with a table of their own; later threads use the shared table.
pub(super) const MAX_THREAD_TABLES: usize = 1024;

/// A multiply-shift hash: span ids are already unique integers.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(super) type Table = HashMap<u64, Entry, BuildHasherDefault<IdHasher>>;

#[repr(align(64))]
#[derive(Default)]
pub(super) struct Shard(pub(super) Mutex<Table>);

/// The state shared by the tracker and the threads that hold a table of it.
pub(super) struct TrackerState {
    pub(super) filter: Option<SpanFilter>,
    /// With a filter: how many tracked spans hash to each counter.
    pub(super) presence: Option<Box<[AtomicU32]>>,
    pub(super) tables: Box<[AtomicPtr<ThreadTable>]>,
    /// Tables allocated so far (`tables[..n]` are not null).
    pub(super) tables_len: AtomicUsize,
    /// Per registry shard, 1 + the index of the table of the thread that last opened a span
    /// in it (0: none): where a span touched from another thread is looked for first.
    pub(super) hints: Box<[AtomicU16]>,
    pub(super) grow: Mutex<()>,
    pub(super) shards: Box<[Shard]>,
    /// Spans in the shared table, plus moves into it under way.
    pub(super) shared_len: AtomicUsize,
    pub(super) untracked: AtomicU64,
    /// Enters on threads without a table (their spans' entered state is unknown).
    pub(super) blind_enters: AtomicU64,
    /// The tracker was dropped (a thread may still hold its table).
    pub(super) dropped: AtomicBool,
}

impl Drop for TrackerState {
    fn drop(&mut self) {
        for t in self.tables.iter() {
            let p = t.load(Acquire);
            if !p.is_null() {
                // SAFETY: allocated by `Box::into_raw` in `claim`; this is the last owner.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

pub(super) fn shard_of(id: u64) -> usize {
    // The top bits of the multiplicative hash: well spread for sequential ids.
    (hash(id) >> 58) as usize % SHARDS
}

pub(super) fn presence_of(id: u64) -> usize {
    (hash(id) >> 52) as usize % PRESENCE
}

impl TrackerState {
    pub(super) fn shard(&self, id: u64) -> MutexGuard<'_, Table> {
        // A panic elsewhere must not stop the tracking (nor panic in a callback).
        self.shards[shard_of(id)]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn tables(&self) -> impl Iterator<Item = &ThreadTable> {
        let n = self.tables_len.load(Acquire).min(self.tables.len());
        self.tables[..n].iter().filter_map(|p| {
            // SAFETY: non-null pointers in `tables` point to tables freed only with `self`.
            unsafe { p.load(Acquire).as_ref() }
        })
    }

    /// The tables a live thread holds (a released table's spans are all in the shards: its
    /// thread moved them there before handing it back).
    pub(super) fn claimed_tables(&self) -> impl Iterator<Item = &ThreadTable> {
        self.tables().filter(|t| t.claimed.load(Acquire))
    }

    /// The slot of span `id` in the table of the thread that created it, found by the
    /// registry-shard hint, and whether that hint names the creating thread for sure (its
    /// table is live and its last span was in that shard: then the span, if not in the slot,
    /// is in the shared table, or about to be).
    fn hinted(&self, id: u64) -> (Option<&Slot>, bool) {
        let shard = registry_shard(id);
        let hinted = usize::from(self.hints[shard].load(Relaxed));
        let Some(t) = hinted
            .checked_sub(1)
            .and_then(|i| self.tables.get(i))
            .and_then(|p| {
                // SAFETY: non-null pointers in `tables` point to tables freed only with `self`.
                unsafe { p.load(Acquire).as_ref() }
            })
        else {
            return (None, false);
        };
        let slot = t.slot(id);
        if slot.key.load(SeqCst) == id {
            return (Some(slot), true);
        }
        let sure = t.claimed.load(Acquire) && t.shard_hint.load(Relaxed) as usize == shard;
        (None, sure)
    }

    /// The slot of span `id` in any live thread's table.
    fn scan(&self, id: u64) -> Option<&Slot> {
        self.claimed_tables()
            .map(|t| t.slot(id))
            .find(|s| s.key.load(SeqCst) == id)
    }

    /// The owning thread opened span `id`: keep the hint to its table current.
    #[inline]
    pub(super) fn note_shard(&self, table: &ThreadTable, id: u64) {
        let shard = registry_shard(id);
        // One compare per open; a store only when the thread's shard changes.
        if table.shard_hint.load(Relaxed) as usize != shard {
            table.shard_hint.store(shard as u32, Relaxed);
            self.hints[shard].store(table.index.saturating_add(1), Relaxed);
        }
    }

    /// A free table for the calling thread, or a new one; `None` when every table is taken.
    pub(super) fn claim(&self) -> Option<*const ThreadTable> {
        let tid = current_tid();
        for t in self.tables() {
            if t.claimed
                .compare_exchange(false, true, AcqRel, Relaxed)
                .is_ok()
            {
                t.tid.store(tid, Relaxed);
                return Some(t);
            }
        }
        let _grow = self.grow.lock().unwrap_or_else(PoisonError::into_inner);
        let n = self.tables_len.load(Acquire);
        if n >= self.tables.len() {
            return None;
        }
        let index = u16::try_from(n).unwrap_or(u16::MAX);
        let t = Box::into_raw(Box::new(ThreadTable::new(tid, index)));
        self.tables[n].store(t, Release);
        self.tables_len.store(n + 1, Release);
        Some(t)
    }

    /// The owning thread is done with `table`: its spans move to the shared table.
    pub(super) fn release(&self, table: &ThreadTable) {
        for slot in &table.slots {
            let key = slot.key.load(Acquire);
            if key != EMPTY && key != BUSY {
                self.evict(slot, key);
                slot.key.store(EMPTY, Release);
            }
        }
        table.depth.store(0, Release);
        table.tid.store(0, Relaxed);
        table.claimed.store(false, Release);
    }

    /// Moves the span `key` from a thread's slot to the shared table (by the owning thread).
    /// Leaves the slot `BUSY`, or `EMPTY` when another thread closed the span meanwhile.
    #[cold]
    #[inline(never)]
    pub(super) fn evict(&self, slot: &Slot, key: u64) {
        let mut shard = self.shard(key);
        // Counted before the swap: a closer that no longer finds the slot then looks here.
        self.shared_len.fetch_add(1, SeqCst);
        if slot
            .key
            .compare_exchange(key, BUSY, SeqCst, SeqCst)
            .is_err()
        {
            self.shared_len.fetch_sub(1, SeqCst);
            return;
        }
        let meta = slot.meta.load(SeqCst);
        let opened = slot.opened.load(SeqCst);
        let last = slot.last.load(SeqCst);
        // SAFETY: every pointer ever stored in `meta` comes from a `&'static Metadata`.
        let meta = unsafe { meta.cast_const().as_ref() };
        match meta {
            Some(meta) if self.shared_len.load(SeqCst) <= MAX_TRACKED => {
                shard.insert(key, Entry { meta, opened, last });
            }
            _ => {
                self.shared_len.fetch_sub(1, SeqCst);
                self.untracked.fetch_add(1, Relaxed);
                self.forget(key);
            }
        }
    }

    /// A tracked span is no longer tracked.
    pub(super) fn forget(&self, id: u64) {
        if let Some(p) = &self.presence {
            p[presence_of(id)].fetch_sub(1, Relaxed);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn blind_enter(&self) {
        self.blind_enters.fetch_add(1, Relaxed);
    }

    /// False when span `id` is certainly not tracked.
    #[inline]
    pub(super) fn may_track(&self, id: u64) -> bool {
        match &self.presence {
            Some(p) => p[presence_of(id)].load(Relaxed) > 0,
            None => true,
        }
    }

    /// An exit of a span that is not in the calling thread's table.
    #[cold]
    #[inline(never)]
    pub(super) fn exit_elsewhere(&self, id: u64, word: u64) {
        // The slot markers are never span ids in a thread's table.
        if id == EMPTY || id == BUSY {
            self.exit_in_shard(id, word);
            return;
        }
        // The creator's slot; else, when the hint is sure, the shared table; else a search
        // of every live table, then the shared table again (the span may have moved there).
        let (slot, sure) = self.hinted(id);
        if let Some(slot) = slot.or_else(|| (!sure).then(|| self.scan(id)).flatten()) {
            if Self::exit_in_slot(slot, id, word) {
                return;
            }
        } else if sure && self.exit_in_shard(id, word) {
            return;
        } else if let Some(slot) = sure.then(|| self.scan(id)).flatten() {
            if Self::exit_in_slot(slot, id, word) {
                return;
            }
        }
        self.exit_in_shard(id, word);
    }

    /// Records the exit in `slot`; false when the span left the slot meanwhile.
    fn exit_in_slot(slot: &Slot, id: u64, word: u64) -> bool {
        let old = slot.last.load(SeqCst);
        let swapped = word >> TID_BITS >= old >> TID_BITS
            && slot
                .last
                .compare_exchange(old, word, SeqCst, SeqCst)
                .is_ok();
        if slot.key.load(SeqCst) == id {
            return true;
        }
        // Moved to the shared table meanwhile. If the slot was already rewritten for another
        // span with an equal activity word, the swap landed on that span: undo it (this fails
        // harmlessly when anything wrote the word since).
        if swapped {
            let _ = slot.last.compare_exchange(word, old, SeqCst, SeqCst);
        }
        false
    }

    /// Records the exit in the shared table; false when the span is not there.
    fn exit_in_shard(&self, id: u64, word: u64) -> bool {
        if self.shared_len.load(SeqCst) == 0 {
            return false;
        }
        match self.shard(id).get_mut(&id) {
            Some(e) => {
                if word >> TID_BITS >= e.last >> TID_BITS {
                    e.last = word;
                }
                true
            }
            None => false,
        }
    }

    /// A close of a span that is not in the calling thread's table.
    #[cold]
    #[inline(never)]
    pub(super) fn close_elsewhere(&self, id: u64) {
        if id == EMPTY || id == BUSY {
            self.close_in_shard(id);
            return;
        }
        // As for an exit: the creator's slot, the shared table when the hint is sure, else
        // every live table, then the shared table (the span may have moved there: its shard
        // lock is held until it is in).
        let (slot, sure) = self.hinted(id);
        if let Some(slot) = slot.or_else(|| (!sure).then(|| self.scan(id)).flatten()) {
            if self.close_in_slot(slot, id) {
                return;
            }
        } else if sure && self.close_in_shard(id) {
            return;
        } else if let Some(slot) = sure.then(|| self.scan(id)).flatten() {
            if self.close_in_slot(slot, id) {
                return;
            }
        }
        self.close_in_shard(id);
    }

    /// Takes span `id` out of `slot`; false when it left the slot meanwhile.
    fn close_in_slot(&self, slot: &Slot, id: u64) -> bool {
        let taken = slot.key.compare_exchange(id, EMPTY, SeqCst, SeqCst).is_ok();
        if taken {
            self.forget(id);
        }
        taken
    }

    /// Takes span `id` out of the shared table; false when it is not there.
    fn close_in_shard(&self, id: u64) -> bool {
        if self.shared_len.load(SeqCst) == 0 {
            return false;
        }
        let removed = self.shard(id).remove(&id).is_some();
        if removed {
            self.shared_len.fetch_sub(1, SeqCst);
            self.forget(id);
        }
        removed
    }

    /// Opens a span in the shared table (a thread without a table).
    #[cold]
    #[inline(never)]
    pub(super) fn open_shared(
        &self,
        id: u64,
        meta: &'static Metadata<'static>,
        now: u64,
        tid: u32,
    ) {
        let mut shard = self.shard(id);
        if self.shared_len.load(SeqCst) >= MAX_TRACKED {
            drop(shard);
            self.untracked.fetch_add(1, Relaxed);
            return;
        }
        let entry = Entry {
            meta,
            opened: now,
            last: pack(now, tid),
        };
        if shard.insert(id, entry).is_none() {
            self.shared_len.fetch_add(1, SeqCst);
            if let Some(p) = &self.presence {
                p[presence_of(id)].fetch_add(1, Relaxed);
            }
        }
    }
}
