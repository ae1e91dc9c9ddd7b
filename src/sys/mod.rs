//! Plumbing shared by every question: pure parsers of `/proc` and cgroup text, private
//! (0600, no-follow) files, the replaceable clock, logfmt escaping, and events with field
//! names known only at run time.
//!
//! Nothing here knows about shutdowns: data flows in as bytes or paths and out as plain
//! values. Every other folder may import from here; nothing here imports from them.
//! Read `proc.rs` first (how a process is read: one bounded read per file, ESRCH means gone).

pub(crate) mod cgroup;
pub(crate) mod clock;
pub(crate) mod dyn_event;
pub(crate) mod fd;
pub(crate) mod logfmt;
pub(crate) mod net;
pub(crate) mod private_file;
pub(crate) mod proc;
pub(crate) mod stderr;
pub(crate) mod target;
pub(crate) mod task;
pub(crate) mod tcp_stall;
