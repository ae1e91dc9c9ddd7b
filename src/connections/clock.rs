//! The entries' clock: coarse monotonic nanoseconds, one atomic per instant.

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::sync::OnceLock;
use std::time::Duration;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::time::Instant;

/// Monotonic nanoseconds, coarse (a scheduler tick, 1-10 ms, is plenty for "silent for
/// 29.8s" and costs a fraction of a precise read on every socket read and write); never 0.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return 1;
    }
    let ns = u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0));
    ns.max(1)
}

/// Monotonic nanoseconds since the first call; never 0.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// `now - ns`, zero when `ns` is later.
pub(crate) fn since(ns: u64, now: u64) -> Duration {
    Duration::from_nanos(now.saturating_sub(ns))
}
