//! The flight record: one JSON line per step of the shutdown, each a single synchronous
//! `write(2)` on an `O_APPEND` file, so that a `SIGKILL` loses at most the line being written and
//! the next start can say which phase wedged.
//!
//! In: JSON values from the timeline and the signal helper. Out: lines on disk, and at the next
//! start the text the verdict is judged from. Read `flight_record.rs` first (open, append, read
//! the tail), then `replace.rs` (how a start puts its new record in place without a gap), and `start_lock.rs` (one start at a
//! time on a record path); `history.rs` writes the history of the last stops beside it.

pub(crate) mod flight_record;
pub(crate) mod history;
pub(crate) mod line_caps;
pub(crate) mod lock;
pub(crate) mod replace;
pub(crate) mod start_lock;
pub(crate) mod tail;
pub(crate) mod takeover;
