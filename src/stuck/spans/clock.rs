//! The coarse clock and the thread id every span callback reads: each a few nanoseconds.

use std::time::Duration;

/// Coarse monotonic time in nanoseconds (a few ms resolution, a few ns to read): spans are
/// judged in tenths of seconds, and every span callback pays for this read.
#[inline]
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
    // A monotonic clock is never negative; `as` keeps this a few instructions.
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
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
