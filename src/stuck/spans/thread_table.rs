//! One thread's table of the spans it opened, and its stack of entered spans: written only
//! by that thread (no lock, no read-modify-write), read by snapshots with a per-slot
//! validation; other threads only close a span or record its exit there, each with a
//! compare-and-swap.

use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use tracing_core::Metadata;

/// Slots of one thread's table (a power of two): 4 KiB per thread.
pub(super) const THREAD_SLOTS: usize = 128;
/// Entered spans one thread's stack holds; deeper nesting is counted, its spans not named.
pub(super) const STACK: usize = 32;
/// Slot keys that are not span ids (a span with one of these ids goes to the shared table).
pub(super) const EMPTY: u64 = 0;
pub(super) const BUSY: u64 = u64::MAX;
/// Bits of a thread id in a packed activity word (Linux's PID_MAX_LIMIT is 2^22).
pub(super) const TID_BITS: u32 = 22;

/// A span: what a thread's slot and the shared table hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) meta: &'static Metadata<'static>,
    pub(super) opened: u64,
    /// Packed last activity (see [`pack`]).
    pub(super) last: u64,
}

/// One slot of a thread's table. Only the owning thread writes `meta` and `opened`, and moves
/// `key` away from `EMPTY`; other threads only take a key back to `EMPTY` (a close) or update
/// `last` (an exit), each with a compare-and-swap.
#[repr(align(32))]
pub(super) struct Slot {
    pub(super) key: AtomicU64,
    pub(super) meta: AtomicPtr<Metadata<'static>>,
    pub(super) opened: AtomicU64,
    pub(super) last: AtomicU64,
}

impl Slot {
    pub(super) const fn new() -> Self {
        Self {
            key: AtomicU64::new(EMPTY),
            meta: AtomicPtr::new(ptr::null_mut()),
            opened: AtomicU64::new(0),
            last: AtomicU64::new(0),
        }
    }

    /// The span in this slot, read without a lock: `None` when empty or being rewritten.
    pub(super) fn read(&self) -> Option<(u64, Entry)> {
        let key = self.key.load(Acquire);
        if key == EMPTY || key == BUSY {
            return None;
        }
        let meta = self.meta.load(Relaxed);
        let opened = self.opened.load(Relaxed);
        let last = self.last.load(Relaxed);
        fence(Acquire);
        if self.key.load(Relaxed) != key {
            return None;
        }
        // SAFETY: every pointer ever stored in `meta` comes from a `&'static Metadata`.
        let meta = unsafe { meta.cast_const().as_ref() }?;
        Some((key, Entry { meta, opened, last }))
    }
}

/// One thread's spans and its stack of entered spans.
pub(super) struct ThreadTable {
    /// Owned by a live thread (a table is reused after its thread exits).
    pub(super) claimed: AtomicBool,
    pub(super) tid: AtomicU32,
    /// Its place in the tracker's list (for the lookup hints).
    pub(super) index: u16,
    /// The registry shard of the last span it opened (see [`registry_shard`]).
    pub(super) shard_hint: AtomicU32,
    /// How many spans are entered on the thread (its stack holds the first [`STACK`]).
    pub(super) depth: AtomicUsize,
    pub(super) stack: [AtomicU64; STACK],
    pub(super) slots: [Slot; THREAD_SLOTS],
}

impl ThreadTable {
    pub(super) fn new(tid: u32, index: u16) -> Self {
        Self {
            claimed: AtomicBool::new(true),
            index,
            shard_hint: AtomicU32::new(u32::MAX),
            tid: AtomicU32::new(tid),
            depth: AtomicUsize::new(0),
            stack: [const { AtomicU64::new(0) }; STACK],
            slots: [const { Slot::new() }; THREAD_SLOTS],
        }
    }

    #[inline]
    pub(super) fn slot(&self, id: u64) -> &Slot {
        &self.slots[slot_of(id)]
    }

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
    pub(super) fn pop_unordered(&self, id: u64, d: usize) {
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
}

pub(super) fn hash(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

pub(super) fn slot_of(id: u64) -> usize {
    (hash(id) >> 40) as usize % THREAD_SLOTS
}

/// The time unit of a last-activity word: 2^20 ns (about 1.05 ms), a shift to compute.
pub(super) const UNIT_SHIFT: u32 = 20;

/// A last-activity word: coarse time in [`UNIT_SHIFT`] units and the thread id.
#[inline]
pub(super) fn pack(now_ns: u64, tid: u32) -> u64 {
    let tid = if tid < (1 << TID_BITS) {
        u64::from(tid)
    } else {
        0
    };
    ((now_ns >> UNIT_SHIFT) << TID_BITS) | tid
}

/// `(nanoseconds, tid)` of a [`pack`]ed word.
pub(super) fn unpack(word: u64) -> (u64, u32) {
    let tid = (word & ((1 << TID_BITS) - 1)) as u32;
    ((word >> TID_BITS) << UNIT_SHIFT, tid)
}

/// Registry shards a span id can name (`tracing-subscriber`'s registry stores spans in a
/// `sharded-slab` with its default layout: 38 address bits, then 13 bits naming the shard of
/// the thread that created the span).
pub(super) const REGISTRY_SHARDS: usize = 1 << 13;

/// The registry shard span `id` was created in, if the subscriber is `tracing-subscriber`'s
/// registry; with any other subscriber, an arbitrary number. Only a hint: it says which
/// thread's table to look in first, and a miss falls back to looking in all of them.
#[inline]
pub(super) fn registry_shard(id: u64) -> usize {
    ((id.wrapping_sub(1) >> 38) as usize) % REGISTRY_SHARDS
}
