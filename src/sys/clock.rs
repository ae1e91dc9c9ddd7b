//! Time as a value: the real clock or one that tests drive, and the `+1.23s` rendering.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A clock that only moves when told to, for tests and replays.
///
/// Install it with [`ShutdownLayerBuilder::with_clock`](crate::ShutdownLayerBuilder::with_clock);
/// every offset, duration and budget check of that layer then reads this clock. Clones share
/// the same time. The budget watchdog wakes up whenever the clock is advanced, so an
/// over-budget warning appears without waiting on real time.
///
/// ```
/// use shutdown_forensics::report::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now() - t0, Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    base: Instant,
    base_wall: SystemTime,
    offset: Mutex<Duration>,
    moved: Condvar,
}

impl ManualClock {
    /// A clock standing at the current instant; it moves only through [`ManualClock::advance`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualInner {
                base: Instant::now(),
                base_wall: SystemTime::now(),
                offset: Mutex::new(Duration::ZERO),
                moved: Condvar::new(),
            }),
        }
    }

    /// Moves the clock forward by `by` and wakes the budget watchdog. The clock stops at the
    /// last instant the platform can represent (`advance(Duration::MAX)` does not panic).
    pub fn advance(&self, by: Duration) {
        let mut offset = self
            .inner
            .offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Add as much of `by` as keeps the instant representable: halve the step whenever it
        // does not fit (at most ~2 x 94 rounds, and only when near the end of time).
        let (mut left, mut step) = (by, by);
        while !step.is_zero() {
            match offset.checked_add(step) {
                Some(next) if self.inner.base.checked_add(next).is_some() => {
                    *offset = next;
                    left -= step;
                    step = step.min(left);
                }
                _ => step /= 2,
            }
        }
        drop(offset);
        self.inner.moved.notify_all();
    }

    /// The clock's current instant.
    #[must_use]
    pub fn now(&self) -> Instant {
        // `advance` keeps `base + offset` representable; the fallback is never taken.
        let base = self.inner.base;
        base.checked_add(self.offset()).unwrap_or(base)
    }

    fn offset(&self) -> Duration {
        *self
            .inner
            .offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until the clock is advanced or `real` (wall) time passes.
    fn wait(&self, real: Duration) {
        let offset = self
            .inner
            .offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = *offset;
        // Spurious wake-ups are harmless: the caller re-checks its deadlines.
        let _ = self
            .inner
            .moved
            .wait_timeout_while(offset, real, |o| *o == before);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The clock a layer reads: the system's, or a [`ManualClock`].
#[derive(Debug, Clone, Default)]
pub(crate) enum Clock {
    #[default]
    System,
    Manual(ManualClock),
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Manual(c) => c.now(),
        }
    }

    /// The wall-clock time matching `at` (exact for a manual clock, estimated for the system).
    pub(crate) fn wall_at(&self, at: Instant) -> SystemTime {
        match self {
            Self::System => wall_at(at),
            Self::Manual(c) => {
                let wall = c.inner.base_wall;
                wall.checked_add(at.saturating_duration_since(c.inner.base))
                    .unwrap_or(wall)
            }
        }
    }

    /// Sleeps up to `d` of this clock's time; a manual clock wakes on `advance` (or after a
    /// short real-time poll so the caller can notice it should stop).
    pub(crate) fn sleep(&self, d: Duration) {
        match self {
            Self::System => std::thread::park_timeout(d),
            Self::Manual(c) => c.wait(d.min(Duration::from_millis(50))),
        }
    }
}

/// The wall-clock time at a past (or future) monotonic instant.
pub(crate) fn wall_at(at: Instant) -> SystemTime {
    let (now, wall) = (Instant::now(), SystemTime::now());
    if at <= now {
        wall.checked_sub(now - at).unwrap_or(wall)
    } else {
        wall.checked_add(at - now).unwrap_or(wall)
    }
}

/// Seconds since the Unix epoch, as a float (0.0 before the epoch).
pub(crate) fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds rounded to the microsecond, for JSON fields that humans also read.
pub(crate) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// An offset from the shutdown origin, displayed as `+1.23s`.
///
/// ```
/// use shutdown_forensics::report::Offset;
/// use std::time::Duration;
///
/// assert_eq!(Offset(Duration::from_millis(1234)).to_string(), "+1.23s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub Duration);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:.2}s", self.0.as_secs_f64())
    }
}

/// A duration displayed as `3.41s`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Secs(pub(crate) Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = Clock::Manual(ManualClock::new());
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        if let Clock::Manual(c) = &clock {
            c.advance(Duration::from_secs(2));
        }
        assert_eq!(clock.now() - t0, Duration::from_secs(2));
        let w0 = clock.wall_at(t0);
        assert_eq!(
            clock.wall_at(clock.now()).duration_since(w0).ok(),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn a_manual_clock_advanced_past_the_end_of_time_stops_there_without_panicking() {
        let manual = ManualClock::new();
        let t0 = manual.now();
        manual.advance(Duration::MAX);
        let end = manual.now();
        assert!(end > t0);
        manual.advance(Duration::from_secs(1));
        assert_eq!(
            manual.now(),
            end,
            "the clock stays at the last representable instant"
        );
        let clock = Clock::Manual(manual);
        assert!(clock.wall_at(clock.now()) >= clock.wall_at(t0));
    }

    #[test]
    fn offsets_render_with_two_decimals() {
        assert_eq!(Offset(Duration::ZERO).to_string(), "+0.00s");
        assert_eq!(Offset(Duration::from_secs(33)).to_string(), "+33.00s");
        assert_eq!(Secs(Duration::from_millis(3410)).to_string(), "3.41s");
    }
}
