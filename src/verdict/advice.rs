//! What the history of the last stops advises at a start (pure; the signal helper logs it):
//! a supervisor timeout below what recent stops took, and a phase that took far longer in the
//! last stop than it usually does.

use std::time::Duration;

use super::summary::StopSummary;
use crate::sys::logfmt::Logfmt;

/// How many of the most recent stops the timeout advice looks at.
pub const RECENT_STOPS: usize = 20;
/// Headroom over the slowest recent stop: half of it, and at least this.
const MIN_HEADROOM: Duration = Duration::from_secs(5);
/// A phase regressed when its last time is more than this many times its median...
pub(crate) const REGRESSION_FACTOR: f64 = 3.0;
/// ... over at least this many earlier stops that ran it ...
pub(crate) const REGRESSION_MIN_STOPS: usize = 5;
/// ... and it grew by at least this much (0.01 s to 0.05 s is 5x and nobody's problem).
const REGRESSION_MIN_GROWTH_S: f64 = 1.0;

/// The stop timeout a supervisor should give, from `stops` (a history, oldest first): the
/// slowest of the last [`RECENT_STOPS`] stops that have a duration, plus half of it as
/// headroom (at least 5 s), rounded up to a whole second. A stop that was killed counts with
/// the time it had run when it was killed (a lower bound: it needed more). `None` when no
/// recent stop has a duration.
///
/// ```
/// use shutdown_forensics::verdict;
///
/// assert_eq!(verdict::stop_timeout_needed(&[]), None);
/// ```
#[must_use]
pub fn stop_timeout_needed(stops: &[StopSummary]) -> Option<Duration> {
    slowest(stops).map(|(s, _)| needed(s))
}

fn needed(slowest: f64) -> Duration {
    let headroom = (slowest / 2.0).max(MIN_HEADROOM.as_secs_f64());
    Duration::from_secs_f64((slowest + headroom).ceil().min(1e9))
}

/// The slowest of the recent stops with a duration, and its summary.
fn slowest(stops: &[StopSummary]) -> Option<(f64, &StopSummary)> {
    let recent = &stops[stops.len().saturating_sub(RECENT_STOPS)..];
    recent
        .iter()
        .filter_map(|s| Some((s.total_s.filter(|t| t.is_finite())?, s)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// Where the supervisor's stop timeout was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeoutSource {
    /// systemd's `TimeoutStopUSec` of this unit.
    Systemd(String),
    /// `ForensicsBuilder::with_kill_deadline`.
    KillDeadline,
}

/// The timeout advice, when the supervisor's timeout is below what recent stops call for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeoutAdvice {
    pub(crate) message: String,
    pub(crate) slowest_s: f64,
    pub(crate) timeout_s: f64,
    pub(crate) needed_s: f64,
    pub(crate) stops: usize,
}

/// The timeout advice for `stops` and the supervisor's `timeout`; `None` when it is enough.
pub(crate) fn timeout_advice(
    stops: &[StopSummary],
    timeout: Duration,
    source: &TimeoutSource,
) -> Option<TimeoutAdvice> {
    let (slow, stop) = slowest(stops)?;
    let need = needed(slow);
    if timeout >= need {
        return None;
    }
    let considered = stops[stops.len().saturating_sub(RECENT_STOPS)..]
        .iter()
        .filter(|s| s.total_s.is_some())
        .count();
    let pid = stop.pid.map_or("?".to_owned(), |p| p.to_string());
    let how = if stop.complete {
        String::new()
    } else {
        let during = match &stop.phase {
            Some(p) => format!(" during {}", Logfmt(p)),
            None => String::new(),
        };
        format!(", {}{during}: it needed longer", Logfmt(&stop.verdict))
    };
    let secs = need.as_secs();
    let (who, fix) = match source {
        TimeoutSource::Systemd(unit) => (
            format!("TimeoutStopUSec of {}", Logfmt(unit)),
            format!(
                "set TimeoutStopSec={secs}s in {} (or make the stop faster)",
                Logfmt(unit)
            ),
        ),
        TimeoutSource::KillDeadline => (
            "the kill deadline given to with_kill_deadline".to_owned(),
            format!(
                "give the supervisor >= {secs}s (terminationGracePeriodSeconds, docker stop -t) \
                 and with_kill_deadline the same (or make the stop faster)"
            ),
        ),
    };
    let which = if considered == 1 {
        "the last stop".to_owned()
    } else {
        format!("the slowest of the last {considered} stops")
    };
    let message = format!(
        "Supervisor stop timeout below recent stops: {which} took {slow:.2}s (pid {pid}{how}), \
         the supervisor kills after {:.2}s ({who}); it needs >= {secs}s (the slowest plus headroom \
         of half of it, 5s at least): {fix}",
        timeout.as_secs_f64()
    );
    Some(TimeoutAdvice {
        message,
        slowest_s: slow,
        timeout_s: timeout.as_secs_f64(),
        needed_s: need.as_secs_f64(),
        stops: considered,
    })
}

/// A phase of the last stop that took far longer than it usually does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Regression {
    pub(crate) message: String,
    pub(crate) phase: String,
    pub(crate) duration_s: f64,
    pub(crate) median_s: f64,
    pub(crate) stops: usize,
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// The phase of the last stop in `stops` that regressed most (more than 3x its median over at
/// least 5 earlier recent stops, and by at least a second); `None` when none did. `dir` is
/// named in the fix (`shutdown-forensics last DIR`).
pub(crate) fn regression(stops: &[StopSummary], dir: &str) -> Option<Regression> {
    let (last, before) = stops.split_last()?;
    let before = &before[before.len().saturating_sub(RECENT_STOPS)..];
    let mut worst: Option<(f64, Regression)> = None;
    for phase in &last.phases {
        let mut earlier: Vec<f64> = before
            .iter()
            .filter_map(|s| s.phase_duration(&phase.name))
            .collect();
        if earlier.len() < REGRESSION_MIN_STOPS {
            continue;
        }
        let count = earlier.len();
        let med = median(&mut earlier);
        let d = phase.duration_s;
        let growth = d - med;
        if d <= REGRESSION_FACTOR * med || growth < REGRESSION_MIN_GROWTH_S {
            continue;
        }
        if worst.as_ref().is_some_and(|(g, _)| *g >= growth) {
            continue;
        }
        let pid = last.pid.map_or("?".to_owned(), |p| p.to_string());
        let still = if phase.open {
            " (still running at the end)"
        } else {
            ""
        };
        let times = if med > 0.0 {
            format!("{:.1}x", d / med)
        } else {
            "far more than".to_owned()
        };
        let message = format!(
            "Shutdown phase {name} regressed: {d:.2}s in the last stop (pid {pid}){still}, {times} \
             its median of {med:.2}s over the {count} stops before; see where it went with \
             `shutdown-forensics last {dir}` (waterfall, stuck findings) and look at what \
             changed in the release that came with it",
            name = Logfmt(&phase.name),
            dir = Logfmt(dir),
        );
        worst = Some((
            growth,
            Regression {
                message,
                phase: phase.name.clone(),
                duration_s: d,
                median_s: med,
                stops: count,
            },
        ));
    }
    worst.map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::summary::{PhaseTime, RecordedBy};

    fn stop(total: f64, drain: f64) -> StopSummary {
        let mut s = StopSummary::new("clean", RecordedBy::Finish);
        s.pid = Some(7);
        s.complete = true;
        s.total_s = Some(total);
        s.phases = vec![PhaseTime {
            name: "drain".into(),
            duration_s: drain,
            open: false,
        }];
        s
    }

    #[test]
    fn the_timeout_called_for_is_the_slowest_plus_half() {
        let stops = [stop(10.0, 9.0), stop(41.2, 40.0), stop(3.0, 2.0)];
        assert_eq!(stop_timeout_needed(&stops), Some(Duration::from_secs(62)));
        assert_eq!(
            stop_timeout_needed(&[stop(2.0, 1.0)]),
            Some(Duration::from_secs(7))
        );
        let unit = TimeoutSource::Systemd("gw.service".into());
        assert!(timeout_advice(&stops, Duration::from_secs(62), &unit).is_none());
        let a = timeout_advice(&stops, Duration::from_secs(30), &unit).unwrap();
        assert_eq!(a.stops, 3);
        assert!(
            a.message
                .contains("the slowest of the last 3 stops took 41.20s (pid 7)")
                && a.message
                    .contains("kills after 30.00s (TimeoutStopUSec of gw.service)")
                && a.message.contains("set TimeoutStopSec=62s in gw.service"),
            "{}",
            a.message
        );
        // A killed stop counts with what it ran, and says it needed longer.
        let mut killed = stop(30.0, 29.0);
        killed.complete = false;
        killed.verdict = "killed".into();
        killed.phase = Some("drain".into());
        let a = timeout_advice(
            &[killed],
            Duration::from_secs(30),
            &TimeoutSource::KillDeadline,
        )
        .unwrap();
        assert!(
            a.message.contains(
                "the last stop took 30.00s (pid 7, killed during drain: it needed longer)"
            ),
            "{}",
            a.message
        );
        assert!(a.message.contains("with_kill_deadline"), "{}", a.message);
        // Only the recent ones count.
        let mut many = vec![stop(100.0, 1.0)];
        many.extend((0..RECENT_STOPS).map(|_| stop(1.0, 1.0)));
        assert_eq!(stop_timeout_needed(&many), Some(Duration::from_secs(6)));
    }

    #[test]
    fn a_phase_regressed_past_three_times_its_median_over_five_stops() {
        let mut stops: Vec<StopSummary> = [2.0, 3.0, 3.0, 4.0, 3.0]
            .iter()
            .map(|d| stop(5.0, *d))
            .collect();
        stops.push(stop(14.0, 12.4));
        let r = regression(&stops, "/var/lib/gw").unwrap();
        assert_eq!(r.phase, "drain");
        assert_eq!((r.median_s, r.stops), (3.0, 5));
        assert!(
            r.message.starts_with("Shutdown phase drain regressed: 12.40s in the last stop (pid 7), 4.1x its median of 3.00s over the 5 stops before")
                && r.message.contains("shutdown-forensics last /var/lib/gw"),
            "{}",
            r.message
        );
        // Four earlier stops are not enough; 3x exactly is not more; a tiny phase is nobody's problem.
        assert!(regression(&stops[1..], "d").is_none());
        let mut even = stops.clone();
        even.last_mut().unwrap().phases[0].duration_s = 9.0;
        assert!(regression(&even, "d").is_none());
        let mut tiny: Vec<StopSummary> = (0..5).map(|_| stop(1.0, 0.01)).collect();
        tiny.push(stop(1.0, 0.5));
        assert!(regression(&tiny, "d").is_none());
    }
}
