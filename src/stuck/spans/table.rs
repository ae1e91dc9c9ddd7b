//! Where every tracked span lives: one table for the whole process (per tracker), found from
//! any thread by the span id alone. A span goes into one of the [`WINDOW`] slots after its
//! id's hash (a compare-and-swap claims an empty one); when all are taken, into the overflow,
//! a 64-way sharded `Mutex<HashMap>`. It never moves after that: an exit or a close, on any
//! thread, looks in the same window (a few loads), then in the overflow only when that holds
//! spans.
//!
//! The slot protocol. Only the opener moves a key away from `EMPTY` (compare-and-swap to
//! `BUSY`, then the span's words, then the id with `Release`); only the closer (`on_close`
//! runs once per span) moves it back, with a `Release` store. An exit stores the span's
//! activity word while the span is open (it holds a handle, so its close comes after). A
//! snapshot reads a slot without a lock: key (`Acquire`), the words, a fence, the key again;
//! a slot rewritten meanwhile is skipped. Its tests run under Miri, which checks every access
//! for undefined behaviour and data races and emulates weak memory (smaller runs there, and a
//! table of 64 slots, so that the overflow is used too):
//! `MIRIFLAGS=-Zmiri-ignore-leaks cargo +nightly miri test --lib stuck::spans` (the clock's
//! ticker thread outlives the tests). On 2026-12-06: 10 tests passed, Miri found nothing, in
//! 7.4 minutes on the development machine, so by hand, not in CI (the clock test, which
//! bounds a lag in time, and the 100 000-span cap test are not run there).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing_core::Metadata;

use crate::stuck::fields::{SlotFields, SLOT_BYTES};

/// Words of a slot that hold its span's fields: the bytes, then one word of lengths.
const FIELD_WORDS: usize = SLOT_BYTES / 8;

/// Decides which spans are tracked (see `ShutdownLayerBuilder::with_stuck_spans`).
pub(crate) type SpanFilter = Arc<dyn Fn(&Metadata<'_>) -> bool + Send + Sync>;

/// Slots of the table (a power of two): 4096 of 96 bytes, 384 KiB of zeroed memory (pages
/// are touched as spans land in them).
/// Under Miri, 64: each snapshot reads every slot, and a small table sends more spans through
/// the overflow, so that both paths are checked in minutes.
pub(super) const SLOTS: usize = if cfg!(miri) { 64 } else { 4096 };
/// Slots a span may take, from its hash on.
pub(super) const WINDOW: usize = 8;
/// Shards of the overflow.
pub(super) const SHARDS: usize = 64;
/// At most this many spans are held in the overflow; more are counted, not tracked.
pub(crate) const MAX_TRACKED: usize = 100_000;
/// Slot keys that are not span ids (a span with one of these ids goes to the overflow).
pub(super) const EMPTY: u64 = 0;
pub(super) const BUSY: u64 = u64::MAX;
/// Bits of a thread id in a packed activity word (Linux's PID_MAX_LIMIT is 2^22).
pub(super) const TID_BITS: u32 = 22;
/// The time unit of an activity word: 2^20 ns (about 1.05 ms), a shift to compute.
pub(super) const UNIT_SHIFT: u32 = 20;

/// A span as the table holds it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) meta: &'static Metadata<'static>,
    pub(super) opened: u64,
    /// Packed last activity (see [`pack`]).
    pub(super) last: u64,
    /// Its fields, when they fit in the slot (else in the span's registry extension).
    pub(super) fields: SlotFields,
}

/// One slot of the table.
#[repr(align(32))]
pub(super) struct Slot {
    key: AtomicU64,
    meta: AtomicPtr<Metadata<'static>>,
    opened: AtomicU64,
    last: AtomicU64,
    /// [`SlotFields`]' bytes, then its length, count and dropped count in one word; written
    /// by the opener before it publishes the key, like the other words.
    fields: [AtomicU64; FIELD_WORDS + 1],
}

/// `fields` as the words of a slot.
fn field_words(fields: &SlotFields) -> [u64; FIELD_WORDS + 1] {
    let mut w = [0u64; FIELD_WORDS + 1];
    for (i, chunk) in fields.bytes.chunks_exact(8).enumerate() {
        w[i] = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    w[FIELD_WORDS] =
        u64::from(fields.len) | u64::from(fields.count) << 8 | u64::from(fields.dropped) << 16;
    w
}

/// The words of a slot as [`SlotFields`].
fn from_field_words(w: &[u64; FIELD_WORDS + 1]) -> SlotFields {
    let mut f = SlotFields::NONE;
    for (i, chunk) in f.bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&w[i].to_le_bytes());
    }
    let head = w[FIELD_WORDS];
    f.len = (head & 0xff) as u8;
    f.count = (head >> 8 & 0xff) as u8;
    f.dropped = (head >> 16 & 0xff) as u8;
    f
}

impl Slot {
    /// The span in this slot, read without a lock: `None` when empty or being rewritten.
    pub(super) fn read(&self) -> Option<(u64, Entry)> {
        let key = self.key.load(Acquire);
        if key == EMPTY || key == BUSY {
            return None;
        }
        let meta = self.meta.load(Relaxed);
        let opened = self.opened.load(Relaxed);
        let last = self.last.load(Relaxed);
        let mut words = [0u64; FIELD_WORDS + 1];
        // Only a span that has fields wrote them: the length word first says whether.
        words[FIELD_WORDS] = self.fields[FIELD_WORDS].load(Relaxed);
        if words[FIELD_WORDS] != 0 {
            for (w, a) in words.iter_mut().zip(&self.fields[..FIELD_WORDS]) {
                *w = a.load(Relaxed);
            }
        }
        fence(Acquire);
        if self.key.load(Relaxed) != key {
            return None;
        }
        // SAFETY: every pointer ever stored in `meta` comes from a `&'static Metadata`
        // (null before the first span: `as_ref` gives `None`).
        let meta = unsafe { meta.cast_const().as_ref() }?;
        Some((
            key,
            Entry {
                meta,
                opened,
                last,
                fields: from_field_words(&words),
            },
        ))
    }
}

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

type Overflow = HashMap<u64, Entry, BuildHasherDefault<IdHasher>>;

#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<Overflow>);

/// The tracked spans.
pub(super) struct Table {
    slots: Box<[Slot]>,
    shards: Box<[Shard]>,
    /// Spans in the overflow.
    overflow_len: AtomicUsize,
    /// Spans not tracked: the overflow was full.
    pub(super) untracked: AtomicU64,
}

fn hash(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Table {
    pub(super) fn new() -> Self {
        let layout = std::alloc::Layout::array::<Slot>(SLOTS)
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Slot>()));
        // SAFETY: `layout` has a non-zero size (SLOTS slots of 96 bytes).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Slot>();
        if raw.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `raw` is a fresh allocation of `layout` (the global allocator's, as `Box`
        // frees it), holding SLOTS slots; a `Slot` is four atomics, for which all-zero bytes
        // are a valid value (`EMPTY`, a null pointer, zeros). Zeroed memory from the
        // allocator is not touched here, so untouched pages cost no memory.
        let slots = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(raw, SLOTS)) };
        Self {
            slots,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            overflow_len: AtomicUsize::new(0),
            untracked: AtomicU64::new(0),
        }
    }

    /// The window of span `id`: [`WINDOW`] slots from its hash on (wrapping).
    #[inline]
    fn window(&self, id: u64) -> impl Iterator<Item = &Slot> {
        let at = (hash(id) >> 40) as usize;
        (0..WINDOW).map(move |i| &self.slots[(at + i) % SLOTS])
    }

    /// The slot holding span `id`, if it is in the table proper.
    #[inline]
    fn find(&self, id: u64) -> Option<&Slot> {
        self.window(id).find(|s| s.key.load(Relaxed) == id)
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, Overflow> {
        // A panic elsewhere must not stop the tracking (nor panic in a callback).
        self.shards[(hash(id) >> 58) as usize % SHARDS]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Span `id` opened at `now` on thread `tid`.
    #[inline]
    pub(super) fn open(
        &self,
        id: u64,
        meta: &'static Metadata<'static>,
        now: u64,
        tid: u32,
        fields: &SlotFields,
    ) {
        if id != EMPTY && id != BUSY {
            for slot in self.window(id) {
                if slot.key.load(Relaxed) == EMPTY
                    && slot
                        .key
                        .compare_exchange(EMPTY, BUSY, Acquire, Relaxed)
                        .is_ok()
                {
                    // The words before the id: a reader that sees the id sees them.
                    fence(Release);
                    slot.meta.store(ptr::from_ref(meta).cast_mut(), Relaxed);
                    slot.opened.store(now, Relaxed);
                    slot.last.store(pack(now, tid), Relaxed);
                    // The length word is 0 for a span without fields: its bytes are not read
                    // (and, on this path of most spans, not written).
                    if fields.is_none() && fields.len == 0 {
                        if slot.fields[FIELD_WORDS].load(Relaxed) != 0 {
                            slot.fields[FIELD_WORDS].store(0, Relaxed);
                        }
                    } else {
                        for (a, w) in slot.fields.iter().zip(field_words(fields)) {
                            a.store(w, Relaxed);
                        }
                    }
                    slot.key.store(id, Release);
                    return;
                }
            }
        }
        self.open_overflow(id, meta, now, tid, fields);
    }

    #[cold]
    #[inline(never)]
    fn open_overflow(
        &self,
        id: u64,
        meta: &'static Metadata<'static>,
        now: u64,
        tid: u32,
        fields: &SlotFields,
    ) {
        let mut shard = self.shard(id);
        if self.overflow_len.load(Relaxed) >= MAX_TRACKED {
            drop(shard);
            self.untracked.fetch_add(1, Relaxed);
            return;
        }
        let entry = Entry {
            meta,
            opened: now,
            last: pack(now, tid),
            fields: *fields,
        };
        if shard.insert(id, entry).is_none() {
            self.overflow_len.fetch_add(1, AcqRel);
        }
    }

    /// Span `id` as the table holds it, if it does.
    pub(super) fn get(&self, id: u64) -> Option<Entry> {
        if id != EMPTY && id != BUSY {
            if let Some((key, e)) = self.find(id).and_then(Slot::read) {
                if key == id {
                    return Some(e);
                }
            }
        }
        if self.overflow_len.load(Acquire) == 0 {
            return None;
        }
        self.shard(id).get(&id).copied()
    }

    /// Span `id` was exited: `word` is its new activity word.
    #[inline]
    pub(super) fn exit(&self, id: u64, word: u64) {
        match self.find(id).filter(|_| id != EMPTY && id != BUSY) {
            Some(slot) => slot.last.store(word, Relaxed),
            _ => self.exit_overflow(id, word),
        }
    }

    #[cold]
    #[inline(never)]
    fn exit_overflow(&self, id: u64, word: u64) {
        if self.overflow_len.load(Acquire) == 0 {
            return;
        }
        if let Some(e) = self.shard(id).get_mut(&id) {
            e.last = word;
        }
    }

    /// Span `id` closed.
    #[inline]
    pub(super) fn close(&self, id: u64) {
        match self.find(id).filter(|_| id != EMPTY && id != BUSY) {
            Some(slot) => slot.key.store(EMPTY, Release),
            _ => self.close_overflow(id),
        }
    }

    #[cold]
    #[inline(never)]
    fn close_overflow(&self, id: u64) {
        if self.overflow_len.load(Acquire) == 0 {
            return;
        }
        if self.shard(id).remove(&id).is_some() {
            self.overflow_len.fetch_sub(1, AcqRel);
        }
    }

    /// Calls `f` with every tracked span: the slots without a lock, then each shard of the
    /// overflow, locked only while it is visited.
    pub(super) fn for_each(&self, mut f: impl FnMut(u64, Entry)) {
        for (id, e) in self.slots.iter().filter_map(Slot::read) {
            f(id, e);
        }
        if self.overflow_len.load(Acquire) == 0 {
            return;
        }
        for shard in self.shards.iter() {
            let map = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, e) in map.iter() {
                f(*id, *e);
            }
        }
    }
}

/// An activity word: coarse time in [`UNIT_SHIFT`] units and the thread id.
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
