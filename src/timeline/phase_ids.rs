//! The ids of the phase spans alive now: while a phase is open, the callbacks of every other
//! span tell "not a phase" from a few atomic loads instead of a registry lookup.

use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::atomic::{AtomicU64, AtomicUsize};

/// Phase spans alive at once that are told apart without a lookup (more fall back to it).
const SLOTS: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct PhaseIds {
    ids: [AtomicU64; SLOTS],
    /// Phase spans alive that found no slot: while any is, every span may be one.
    overflow: AtomicUsize,
}

impl PhaseIds {
    /// A phase span was created (span ids are never 0).
    pub(crate) fn add(&self, id: u64) {
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
        self.overflow.load(Relaxed) > 0 || self.ids.iter().any(|s| s.load(Relaxed) == id)
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
        // One more than the slots: every id may be a phase until it closes.
        assert!(p.may_contain(8));
        p.remove(7);
        // 7's slot is free, the overflowed one (the last added) is still counted.
        assert!(p.may_contain(8));
        p.remove(100 + SLOTS as u64 - 1);
        assert!(!p.may_contain(8) && !p.may_contain(7));
        for id in 100..100 + SLOTS as u64 - 1 {
            p.remove(id);
        }
        assert!(!p.may_contain(100));
        p.remove(5); // never added: nothing happens
        assert!(!p.may_contain(5));
    }
}
