//! Spans the shutdown leaves open: in flight since before the stop, still open when the phase
//! that waited for them gave up (ran out of its budget), or when the shutdown completed.
//! Reported once each, where that is news, never on every later line.
//!
//! A span opened under a phase cannot be left open by it: the registry keeps a parent open
//! until its last child closes, so the phase's close comes after theirs. What is left open is
//! what was in flight at the stop and is neither the closing phase's ancestor (`main`, the
//! task running the shutdown) nor the caller's.
//!
//! Bounded, because it runs on the app's thread as a phase closes: at most [`SCOPE_MAX`]
//! ancestors are looked up in the registry, the tracked spans are visited once without
//! being copied, at most [`MAX_FOUND`] are kept. When the ancestry is deeper than that, the
//! spans that may be among the unread ancestors are left out and the result says so (`cut`).

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use tracing_core::Metadata;

use crate::stuck::spans::{coarse_now, coarse_since, IdHasher, SpanTracker};

/// Ancestors read from the registry at most.
pub(crate) const SCOPE_MAX: usize = 256;
/// Abandoned spans copied (and counted) at most: past it the count is cut, the oldest
/// still named.
pub(crate) const MAX_FOUND: usize = 1024;

type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// What a phase (or the shutdown) left open.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Abandoned {
    pub(crate) count: usize,
    /// Their ids, so that a later line does not report them again.
    pub(crate) ids: Vec<u64>,
    /// The oldest, rendered with its age: `request{method=POST} age 29.8s`.
    pub(crate) oldest: Option<String>,
    /// The count may be short: the ancestry was deeper than [`SCOPE_MAX`], or more than
    /// [`MAX_FOUND`] were open.
    pub(crate) cut: bool,
}

/// The spans opened at or before `before` (coarse clock) that are still open, except the
/// spans of `scope` (the closing phase's ancestors, or the caller's current span and its
/// ancestors, innermost first) and those in `reported`; `None` when there are none. `render`
/// names the oldest.
pub(crate) fn find(
    tracker: &SpanTracker,
    before: u64,
    scope: impl Iterator<Item = u64>,
    reported: &[u64],
    render: impl Fn(u64, &'static Metadata<'static>) -> String,
) -> Option<Abandoned> {
    let mut ancestors: IdSet = IdSet::default();
    let mut deeper = false;
    for (n, id) in scope.enumerate() {
        if n >= SCOPE_MAX {
            deeper = true;
            break;
        }
        ancestors.insert(id);
    }
    // An ancestry deeper than was read: every unread ancestor opened no later than the
    // oldest read one, so spans opened by then may be among them, and are left out.
    let mut after = None;
    if deeper {
        let (read, _) = tracker.select(SCOPE_MAX, |id, _| ancestors.contains(&id));
        match read.iter().map(|t| t.slot.opened).min() {
            Some(oldest_read) => after = Some(oldest_read),
            // None of them is tracked: nothing can be told apart from an ancestor.
            None => return Some(Abandoned::unknown()),
        }
    }
    let reported: IdSet = reported.iter().copied().collect();
    let (mut left, mut cut) = tracker.select(MAX_FOUND + 1, |id, opened| {
        opened <= before
            && after.is_none_or(|a| opened > a)
            && !ancestors.contains(&id)
            && !reported.contains(&id)
    });
    cut |= deeper;
    // A connection's span (`shutdown_forensics::http`) lives as long as the connection: a
    // container, not work left behind; its requests are counted.
    left.retain(|t| {
        !(t.slot.meta.target() == crate::connections::HTTP_TARGET
            && t.slot.meta.name() == "connection")
    });
    left.sort_by_key(|t| (t.slot.opened, t.id));
    if left.len() > MAX_FOUND {
        // The oldest is kept (it is named); one of the others goes.
        left.truncate(MAX_FOUND);
        cut = true;
    }
    let Some(oldest) = left.first() else {
        return cut.then(Abandoned::unknown);
    };
    let age = coarse_since(oldest.slot.opened, coarse_now()).as_secs_f64();
    Some(Abandoned {
        count: left.len(),
        oldest: Some(format!(
            "{} age {age:.1}s",
            render(oldest.id, oldest.slot.meta)
        )),
        ids: left.iter().map(|t| t.id).collect(),
        cut,
    })
}

impl Abandoned {
    /// None found, but the search could not cover every span.
    fn unknown() -> Self {
        Self {
            count: 0,
            ids: Vec::new(),
            oldest: None,
            cut: true,
        }
    }
}
