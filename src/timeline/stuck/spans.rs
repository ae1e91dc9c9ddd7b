//! Every open span of the app, tracked from the start (a request that began before the stop
//! and now waits on its peer must appear in the snapshot), at the cost of a few uncontended
//! lock operations per span: no allocation per span, no field formatting. Names come from the
//! span's static metadata; fields and parents are read from the registry only when a snapshot
//! is taken.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_core::Metadata;

/// Decides which spans are tracked (see `ShutdownLayerBuilder::with_stuck_spans`).
pub(crate) type SpanFilter = Arc<dyn Fn(&Metadata<'_>) -> bool + Send + Sync>;

const SHARDS: usize = 64;
/// Counters of a counting filter over span ids, used when a filter leaves most spans out:
/// enter, exit and close of an untracked span then cost one atomic load, not a lock.
const PRESENCE: usize = 4096;
/// At most this many spans are tracked at once; more are counted, not tracked.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// What is kept per open span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanSlot {
    pub(crate) meta: &'static Metadata<'static>,
    /// Coarse monotonic nanoseconds at creation.
    pub(crate) opened: u64,
    /// Coarse monotonic nanoseconds at the last exit (creation until then).
    pub(crate) active: u64,
    /// The thread (tid) of the last enter or exit (the creating thread until then).
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

type Table = HashMap<u64, SpanSlot, BuildHasherDefault<IdHasher>>;

#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<Table>);

/// The open spans of the app.
pub(crate) struct SpanTracker {
    shards: Box<[Shard]>,
    filter: Option<SpanFilter>,
    /// With a filter: how many tracked spans hash to each counter.
    presence: Option<Box<[AtomicU32]>>,
    len: AtomicUsize,
    untracked: AtomicU64,
}

impl std::fmt::Debug for SpanTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanTracker")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("filtered", &self.filter.is_some())
            .finish_non_exhaustive()
    }
}

fn shard_of(id: u64) -> usize {
    // The top bits of the multiplicative hash: well spread for sequential ids.
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
}

fn presence_of(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % PRESENCE
}

impl SpanTracker {
    pub(crate) fn new(filter: Option<SpanFilter>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            presence: filter
                .is_some()
                .then(|| (0..PRESENCE).map(|_| AtomicU32::new(0)).collect()),
            filter,
            len: AtomicUsize::new(0),
            untracked: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, Table> {
        // A panic elsewhere must not stop the tracking (nor panic in a callback).
        self.shards[shard_of(id)]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A span was created.
    pub(crate) fn open(&self, id: u64, meta: &'static Metadata<'static>) {
        if let Some(f) = &self.filter {
            if !f(meta) {
                return;
            }
        }
        if self.len.load(Ordering::Relaxed) >= MAX_TRACKED {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = coarse_now();
        let slot = SpanSlot {
            meta,
            opened: now,
            active: now,
            thread: current_tid(),
            entered: 0,
        };
        if self.shard(id).insert(id, slot).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = &self.presence {
                p[presence_of(id)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// False when span `id` is certainly not tracked (no lock taken to know it).
    fn may_track(&self, id: u64) -> bool {
        if self.len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        match &self.presence {
            Some(p) => p[presence_of(id)].load(Ordering::Relaxed) > 0,
            None => true,
        }
    }

    /// The span was entered (`delta = 1`) or exited (`delta = -1`) on this thread.
    pub(crate) fn activity(&self, id: u64, entered: bool) {
        if !self.may_track(id) {
            return;
        }
        // Idle time counts from the last exit: an entered span is running, not idle.
        let now = if entered { 0 } else { coarse_now() };
        let tid = current_tid();
        if let Some(slot) = self.shard(id).get_mut(&id) {
            slot.thread = tid;
            if entered {
                slot.entered = slot.entered.saturating_add(1);
            } else {
                slot.active = now;
                slot.entered = slot.entered.saturating_sub(1);
            }
        }
    }

    /// The span closed.
    pub(crate) fn close(&self, id: u64) {
        if !self.may_track(id) {
            return;
        }
        if self.shard(id).remove(&id).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
            if let Some(p) = &self.presence {
                p[presence_of(id)].fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// How many spans are tracked now.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Spans that were not tracked because [`MAX_TRACKED`] were open.
    pub(crate) fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// A copy of every tracked span; each shard is locked only while it is copied, so no
    /// app thread waits longer than one shard's copy.
    pub(crate) fn collect(&self, limit: usize) -> Vec<TrackedSpan> {
        let mut out = Vec::with_capacity(self.len().min(limit));
        for shard in self.shards.iter() {
            let table = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            let room = limit.saturating_sub(out.len());
            out.extend(table.iter().take(room).map(|(id, slot)| TrackedSpan {
                id: *id,
                slot: *slot,
            }));
        }
        out
    }

    /// The slot of one span, when tracked.
    #[cfg(test)]
    pub(crate) fn get(&self, id: u64) -> Option<SpanSlot> {
        self.shard(id).get(&id).copied()
    }
}

/// Coarse monotonic time in nanoseconds (a few ms resolution, a few ns to read): spans are
/// judged in tenths of seconds, and every span callback pays for this read.
pub(crate) fn coarse_now() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    if unsafe { libc::clock_gettime(CLOCK, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Nanoseconds between two [`coarse_now`] readings, as a duration (zero if `later` is not).
pub(crate) fn coarse_since(earlier: u64, later: u64) -> Duration {
    Duration::from_nanos(later.saturating_sub(earlier))
}

/// This thread's kernel id (cached per thread: one syscall per thread's life); 0 when unknown.
pub(crate) fn current_tid() -> u32 {
    thread_local!(static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    TID.try_with(|c| {
        if c.get() == 0 {
            c.set(gettid());
        }
        c.get()
    })
    .unwrap_or(0)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn gettid() -> u32 {
    // SAFETY: gettid(2) has no preconditions and cannot fail.
    u32::try_from(unsafe { libc::gettid() }).unwrap_or(0)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn gettid() -> u32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> &'static Metadata<'static> {
        struct Cs;
        impl tracing_core::Callsite for Cs {
            fn set_interest(&self, _: tracing_core::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &META
            }
        }
        static CS: Cs = Cs;
        static META: Metadata<'static> = tracing_core::metadata! {
            name: "request",
            target: "app",
            level: tracing_core::Level::INFO,
            fields: &[],
            callsite: &CS,
            kind: tracing_core::metadata::Kind::SPAN,
        };
        &META
    }

    #[test]
    fn spans_are_tracked_from_open_to_close_with_their_activity() {
        let t = SpanTracker::new(None);
        t.open(7, meta());
        t.open(8, meta());
        assert_eq!(t.len(), 2);
        t.activity(7, true);
        let s = t.get(7).unwrap();
        assert_eq!(s.entered, 1);
        assert_eq!(s.thread, current_tid());
        assert_ne!(s.thread, 0);
        t.activity(7, false);
        assert_eq!(t.get(7).unwrap().entered, 0);
        t.close(7);
        assert!(t.get(7).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(t.collect(10).len(), 1);
        assert_eq!(t.collect(0).len(), 0);
        t.close(7); // twice: nothing happens
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_filter_chooses_and_the_cap_counts_what_is_left_out() {
        let t = SpanTracker::new(Some(Arc::new(|m: &Metadata<'_>| m.name() != "request")));
        t.open(1, meta());
        assert_eq!(t.len(), 0);
        let t = SpanTracker::new(None);
        for id in 0..(MAX_TRACKED as u64 + 5) {
            t.open(id + 1, meta());
        }
        assert_eq!(t.len(), MAX_TRACKED);
        assert_eq!(t.untracked(), 5);
    }

    #[test]
    fn the_coarse_clock_moves_forward() {
        let a = coarse_now();
        std::thread::sleep(Duration::from_millis(30));
        let b = coarse_now();
        assert!(coarse_since(a, b) >= Duration::from_millis(20));
        assert_eq!(coarse_since(b, a), Duration::ZERO);
    }
}
