//! The ids of the phase spans alive now: while a phase is open, the callbacks of every other
//! span tell "not a phase" from a few atomic loads instead of a registry lookup.

use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicU64, AtomicUsize};

/// Phase spans alive at once that are told apart without a lookup (more fall back to it).
const SLOTS: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct PhaseIds {
    /// One bit per hash of every phase id ever added (never cleared: a stale bit only sends
    /// a span to the slots): most other spans are told apart by this one load.
    seen: AtomicU64,
    ids: [AtomicU64; SLOTS],
    /// Phase spans alive that found no slot: while any is, every span may be one.
    overflow: AtomicUsize,
}

impl PhaseIds {
    /// A phase span was created (span ids are never 0).
    pub(crate) fn add(&self, id: u64) {
        // Before the slot: whoever finds the id in a slot finds its bit set.
        self.seen.fetch_or(bit(id), AcqRel);
        for slot in &self.ids {
            if slot.compare_exchange(0, id, AcqRel, Relaxed).is_ok() {
                return;
            }
        }
        self.overflow.fetch_add(1, Relaxed);
    }

    /// False when span `id` is certainly not a phase span alive now.
    #[inline]
    pub(crate) fn may_contain(&self, id: u64) -> bool {
        self.seen.load(Relaxed) & bit(id) != 0
            && (self.overflow.load(Relaxed) > 0 || self.ids.iter().any(|s| s.load(Relaxed) == id))
    }

    /// A phase span closed.
    pub(crate) fn remove(&self, id: u64) {
        for slot in &self.ids {
            if slot.compare_exchange(id, 0, AcqRel, Relaxed).is_ok() {
                return;
            }
        }
        let _ = self
            .overflow
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }
}

/// The bit of `id` in [`PhaseIds::seen`] (the top bits of a multiplicative hash).
fn bit(id: u64) -> u64 {
    1 << (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_told_apart_and_overflow_falls_back_to_maybe() {
        let p = PhaseIds::default();
        assert!(!p.may_contain(7));
        p.add(7);
        assert!(p.may_contain(7) && !p.may_contain(8));
        for id in 100..100 + SLOTS as u64 {
            p.add(id);
        }
        // One more than the slots: every id whose bit is seen may be a phase until the
        // overflowed one closes (the overflowed one among them).
        let last = 100 + SLOTS as u64 - 1;
        let seen = |id| p.seen.load(Relaxed) & bit(id) != 0;
        let other = (1000..).find(|&id| seen(id)).unwrap();
        assert!(p.may_contain(last) && p.may_contain(other));
        assert!((1000..)
            .filter(|&id| !seen(id))
            .take(10)
            .all(|id| !p.may_contain(id)));
        p.remove(7);
        // 7's slot is free, the overflowed one (the last added) is still counted.
        assert!(p.may_contain(other));
        p.remove(last);
        assert!(!p.may_contain(other) && !p.may_contain(7) && !p.may_contain(8));
        for id in 100..100 + SLOTS as u64 - 1 {
            p.remove(id);
        }
        assert!(!p.may_contain(100));
        p.remove(5); // never added: nothing happens
        assert!(!p.may_contain(5));
    }

    #[test]
    fn most_other_ids_are_told_apart_by_the_seen_bits() {
        let p = PhaseIds::default();
        for id in [3, 17, 40] {
            p.add(id);
        }
        let passed = (1000..2000)
            .filter(|&id| p.seen.load(Relaxed) & bit(id) != 0)
            .count();
        // Three bits of 64: about 5 % of other ids go on to the slots.
        assert!(passed < 150, "{passed}");
        assert!([3, 17, 40].iter().all(|&id| p.may_contain(id)));
    }
}
