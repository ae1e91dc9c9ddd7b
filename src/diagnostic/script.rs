//! The diagnostic shell script and the values handed to it as positional arguments.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The script; it reads every value from `$1`…`$8`, see the comment at its top.
pub(super) const SCRIPT: &str = include_str!("diagnostic.sh");

/// Searched after the caller's `PATH`: `ps`, `dmesg` and friends often live in an `sbin`.
const STANDARD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest signal name or correlation id written to the log.
const MAX_VALUE_CHARS: usize = 128;

/// The values the script receives, in argument order.
#[derive(Debug)]
pub(super) struct Arguments<'a> {
    pub(super) signal_name: String,
    pub(super) target_pid: u32,
    pub(super) correlation_id: &'a str,
    pub(super) timeout: Duration,
    pub(super) include_cmdline: bool,
    /// Absolute file size limit in bytes (size at open + cap).
    pub(super) size_limit: u64,
}

impl Arguments<'_> {
    /// `$0` followed by `$1`…`$8`.
    pub(super) fn to_argv(&self) -> [String; 9] {
        [
            "shutdown-diagnostic".to_owned(),
            self.signal_name.clone(),
            self.target_pid.to_string(),
            self.correlation_id.to_owned(),
            format_utc(SystemTime::now()),
            format!("{:.1}s", self.timeout.as_secs_f64()),
            if self.include_cmdline { "1" } else { "0" }.to_owned(),
            watchdog_seconds(self.timeout).to_string(),
            (self.size_limit / 512).to_string(),
        ]
    }
}

/// The child's own watchdog fires a second after the crate's deadline, so that while this
/// process lives the crate-side kill (which also writes the trailer) always comes first.
fn watchdog_seconds(timeout: Duration) -> u64 {
    let whole = timeout.as_secs();
    let rounded_up = if timeout.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    rounded_up.saturating_add(1)
}

/// Replace control characters (which could forge lines in the log) by `?` and cut the value
/// to [`MAX_VALUE_CHARS`] characters. Shell syntax needs no treatment: values are arguments.
pub(super) fn sanitize(value: &str) -> String {
    value
        .chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A fresh 16-hex-digit id: std's randomly keyed hasher over time, pid and a counter.
pub(crate) fn generate_correlation_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

/// The child's `PATH`: the caller's choice verbatim, else ours followed by the standard dirs.
pub(super) fn search_path(chosen: Option<&OsStr>) -> OsString {
    if let Some(path) = chosen {
        return path.to_owned();
    }
    match std::env::var_os("PATH") {
        Some(ours) if !ours.is_empty() => {
            let mut path = ours;
            path.push(":");
            path.push(STANDARD_PATH);
            path
        }
        _ => OsString::from(STANDARD_PATH),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, computed here so the header needs no `date` tool.
pub(super) fn format_utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`,
/// restricted to dates on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(format_utc(leap_day), "2000-02-29T01:02:03Z");
        let new_year = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        assert_eq!(format_utc(new_year), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn sanitize_replaces_controls_and_truncates() {
        assert_eq!(sanitize("SIG\nTERM\x1b[31m"), "SIG?TERM?[31m");
        assert_eq!(sanitize("$(rm -rf ~);"), "$(rm -rf ~);");
        assert_eq!(sanitize(&"x".repeat(500)).len(), MAX_VALUE_CHARS);
    }

    #[test]
    fn watchdog_rounds_up_and_adds_a_second() {
        assert_eq!(watchdog_seconds(Duration::from_secs(5)), 6);
        assert_eq!(watchdog_seconds(Duration::from_millis(1500)), 3);
        assert_eq!(watchdog_seconds(Duration::ZERO), 1);
        assert_eq!(watchdog_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn generated_ids_differ() {
        let a = generate_correlation_id();
        let b = generate_correlation_id();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn chosen_search_path_is_verbatim() {
        assert_eq!(search_path(Some(OsStr::new("/nowhere"))), "/nowhere");
        let default = search_path(None);
        assert!(default.to_string_lossy().ends_with(STANDARD_PATH));
    }
}
