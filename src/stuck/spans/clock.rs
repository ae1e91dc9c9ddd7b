//! The clock every span callback reads, and the thread id: one relaxed load each.
//!
//! Span stamps come from [`now`]: a process-wide word a ticker thread (`shutdown-clock`,
//! started by the first tracker) sets from `CLOCK_MONOTONIC_COARSE` every [`TICK`]: a
//! snapshot judges spans in tenths of seconds, so a stamp may lag the real clock by up to one
//! tick. Idle, the ticker costs `1 s / TICK` = 50 wake-ups a second. Until it runs (and in
//! the child of a `fork`, whose ticker did not survive: a fork handler clears the word),
//! [`now`] reads the coarse clock itself (about 6 ns through the vDSO).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

/// How often the ticker sets the clock word.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// Coarse monotonic nanoseconds, set by the ticker; 0 while no ticker runs in this process.
static NOW: AtomicU64 = AtomicU64::new(0);
/// The pid whose ticker runs (0: none started, or a fork handler cleared it).
static TICKER_PID: AtomicU32 = AtomicU32::new(0);

/// Coarse monotonic time in nanoseconds, at most one [`TICK`] behind: one relaxed load while
/// the ticker runs. Every span stamp and every "now" a snapshot compares them with.
#[inline]
pub(crate) fn now() -> u64 {
    match NOW.load(Relaxed) {
        0 => coarse_now(),
        t => t,
    }
}

/// Starts the ticker in this process, unless it runs (one load when it does). A failed
/// spawn leaves [`now`] reading the clock itself.
pub(crate) fn ensure_ticking() {
    let pid = std::process::id();
    let running = TICKER_PID.load(Acquire);
    if running == pid
        || TICKER_PID
            .compare_exchange(running, pid, AcqRel, Acquire)
            .is_err()
    {
        return;
    }
    install_fork_handler();
    let spawned = std::thread::Builder::new()
        .name("shutdown-clock".into())
        .spawn(move || {
            // Stops when a fork handler (in a child) or another start took over.
            while TICKER_PID.load(Acquire) == pid {
                NOW.store(coarse_now().max(1), Relaxed);
                std::thread::sleep(TICK);
            }
        });
    if spawned.is_err() {
        NOW.store(0, Relaxed);
        let _ = TICKER_PID.compare_exchange(pid, 0, AcqRel, Acquire);
    }
}

/// In a forked child no ticker runs: the child reads the clock itself until a tracker or a
/// snapshot starts one there.
fn install_fork_handler() {
    extern "C" fn in_child() {
        // Async-signal-safe: two atomic stores.
        NOW.store(0, Relaxed);
        TICKER_PID.store(0, Relaxed);
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `in_child` only stores to atomics (async-signal-safe, as a fork handler
        // in a multithreaded process must be); the handler lives for the program's life.
        #[cfg(not(miri))] // Miri has no `pthread_atfork` (and cannot fork).
        let _ = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// Coarse monotonic time read from the system (a few ms resolution, a few ns to read).
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

/// Nanoseconds between two [`now`] readings, as a duration (zero if `later` is not).
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
