//! The table: the slots of open connections (its mutex taken when one opens or closes, and by
//! a reader while it copies the entries), and the process-wide counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::connections::entry::Entry;

/// Counts for the app and the `drain` phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Open connections.
    pub(crate) connections: usize,
    /// Requests in flight (until their response body was sent or dropped).
    pub(crate) requests: usize,
}

/// The table itself: slots of open connections.
#[derive(Debug, Default)]
pub(crate) struct Table {
    slots: Mutex<Slots>,
    pub(super) open: AtomicUsize,
    requests: AtomicUsize,
    /// Set once a connection source (a tracked listener or stream) was created.
    used: AtomicBool,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Arc<Entry>>>,
    free: Vec<usize>,
}

pub(crate) fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default)
}

/// A registered connection: removed from the table when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) entry: Arc<Entry>,
    slot: usize,
}

impl Table {
    /// Marks that the app serves through tracked connections (its counts mean something).
    pub(crate) fn mark_used(&self) {
        self.used.store(true, Ordering::Release);
    }

    /// Registers a connection accepted now.
    pub(crate) fn register(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
        fd: Option<i32>,
    ) -> Registration {
        self.mark_used();
        let entry = Arc::new(Entry::new(peer, local, fd, &table().requests));
        let mut s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match s.free.pop() {
            Some(i) => {
                s.entries[i] = Some(Arc::clone(&entry));
                i
            }
            None => {
                s.entries.push(Some(Arc::clone(&entry)));
                s.entries.len() - 1
            }
        };
        drop(s);
        self.open.fetch_add(1, Ordering::AcqRel);
        Registration { entry, slot }
    }

    /// Copies (at most `max`) open entries, oldest slot first.
    pub(crate) fn entries(&self, max: usize) -> (Vec<Arc<Entry>>, bool) {
        let s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Arc<Entry>> = s.entries.iter().flatten().take(max).cloned().collect();
        let cut = out.len() == max && s.entries.iter().flatten().count() > max;
        drop(s);
        out.sort_by_key(|e| e.opened);
        (out, cut)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let t = table();
        let mut s = t.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = s.entries.get_mut(self.slot) {
            if slot.as_ref().is_some_and(|e| Arc::ptr_eq(e, &self.entry)) {
                *slot = None;
                s.free.push(self.slot);
            }
        }
        drop(s);
        t.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open connections and requests in flight; `None` until the app served through a tracked
/// listener or stream (the counts would be a misleading zero).
pub(crate) fn counts() -> Option<Counts> {
    let t = table();
    t.used.load(Ordering::Acquire).then(|| Counts {
        connections: t.open.load(Ordering::Acquire),
        requests: t.requests.load(Ordering::Acquire),
    })
}
