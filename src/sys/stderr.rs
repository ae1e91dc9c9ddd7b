//! A last-resort line to stderr for the signal path: never blocks, never panics.
//!
//! `eprintln!` panics when stderr is a broken pipe (`EPIPE` after a terminal hangup) and
//! blocks when it is a full pipe nobody reads; either would stop the signal listener. This
//! writes only when `poll(2)` says stderr can take the line now, and ignores every error.

/// Writes `line` (plus a newline) to fd 2 if that cannot block; returns whether it was written.
pub(crate) fn try_line(line: &str) -> bool {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    // A pipe that polls writable has at least one free page: a shorter write cannot block.
    bytes.truncate(4096);
    let mut fd = libc::pollfd {
        fd: 2,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    if ready != 1
        || fd.revents & libc::POLLOUT == 0
        || fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
    {
        return false;
    }
    // SAFETY: writes from a valid buffer of the given length; errors are only reported.
    let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    n == bytes.len() as isize
}
