//! systemd time spans (`90s`, `1min 30s`, `1h30min`, `infinity`) as [`Duration`]s.
//!
//! This follows `parse_time()` in systemd's `src/basic/time-util.c` rule for rule, so that a value
//! accepted by `TimeoutStopSec=` or printed by `systemctl show` means the same thing here, and a
//! value systemd rejects is rejected here too.

use std::time::Duration;

const USEC_PER_SEC: u64 = 1_000_000;
const USEC_PER_MINUTE: u64 = 60 * USEC_PER_SEC;
const USEC_PER_HOUR: u64 = 60 * USEC_PER_MINUTE;
const USEC_PER_DAY: u64 = 24 * USEC_PER_HOUR;
const USEC_PER_WEEK: u64 = 7 * USEC_PER_DAY;
/// systemd's month: a twelfth of its year, 30.4375 days.
const USEC_PER_MONTH: u64 = 2_629_800 * USEC_PER_SEC;
/// systemd's year: 365.25 days.
const USEC_PER_YEAR: u64 = 31_557_600 * USEC_PER_SEC;

/// systemd's suffix table, in systemd's order: the first entry that is a prefix of the input wins,
/// which is why `5mins` is rejected (`min`, then a stray `s`) just as systemd rejects it.
/// Nanoseconds are deliberately absent: `parse_sec()` (and so `TimeoutStopSec=`) refuses `ns`.
const UNITS: &[(&str, u64)] = &[
    ("seconds", USEC_PER_SEC),
    ("second", USEC_PER_SEC),
    ("sec", USEC_PER_SEC),
    ("s", USEC_PER_SEC),
    ("minutes", USEC_PER_MINUTE),
    ("minute", USEC_PER_MINUTE),
    ("min", USEC_PER_MINUTE),
    ("months", USEC_PER_MONTH),
    ("month", USEC_PER_MONTH),
    ("M", USEC_PER_MONTH),
    ("msec", 1_000),
    ("ms", 1_000),
    ("m", USEC_PER_MINUTE),
    ("hours", USEC_PER_HOUR),
    ("hour", USEC_PER_HOUR),
    ("hr", USEC_PER_HOUR),
    ("h", USEC_PER_HOUR),
    ("days", USEC_PER_DAY),
    ("day", USEC_PER_DAY),
    ("d", USEC_PER_DAY),
    ("weeks", USEC_PER_WEEK),
    ("week", USEC_PER_WEEK),
    ("w", USEC_PER_WEEK),
    ("years", USEC_PER_YEAR),
    ("year", USEC_PER_YEAR),
    ("y", USEC_PER_YEAR),
    ("usec", 1),
    ("us", 1),
    ("\u{3bc}s", 1), // GREEK SMALL LETTER MU
    ("\u{b5}s", 1),  // MICRO SIGN
];

/// Parses a systemd time span, as `systemctl show` prints it or a unit file spells it.
///
/// Accepts every form systemd's own parser does: the units `us usec µs μs`, `ms msec`,
/// `s sec second seconds`, `m min minute minutes`, `h hr hour hours`, `d day days`,
/// `w week weeks`, `M month months` (30.4375 days), `y year years` (365.25 days); fractions
/// (`1.5h`, `.5s`); several components with or without spaces (`1min 30s`, `1h30min`, `2 min`);
/// a number without a unit counts as seconds (so `1min30` is 90 s and `1 2` is 3 s, as in
/// systemd); `infinity` is [`Duration::MAX`]. Precision is one microsecond, like systemd's.
///
/// Returns `None` for what systemd rejects: empty input, unknown units (`90fortnights`),
/// negative values, values that overflow 2⁶⁴ µs, and garbage (`1.2.3s`, `5.s`, `1e3s`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shutdown_forensics::systemd::parse_systemd_duration;
///
/// assert_eq!(parse_systemd_duration("1min 30s"), Some(Duration::from_secs(90)));
/// assert_eq!(parse_systemd_duration("1h30min"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_systemd_duration("500ms"), Some(Duration::from_millis(500)));
/// assert_eq!(parse_systemd_duration("infinity"), Some(Duration::MAX));
/// assert_eq!(parse_systemd_duration("90fortnights"), None);
/// ```
#[must_use]
pub fn parse_systemd_duration(text: &str) -> Option<Duration> {
    parse_usec(text).map(|us| {
        if us == u64::MAX {
            Duration::MAX
        } else {
            Duration::from_micros(us)
        }
    })
}

/// systemd's `WHITESPACE`: what it skips between components.
fn skip_whitespace(s: &str) -> &str {
    s.trim_start_matches([' ', '\t', '\n', '\r'])
}

/// `strtoll(s, &end, 10)`: C `isspace`, an optional sign, decimal digits. `Some((value, rest))`,
/// where `rest` is all of `s` when nothing was converted; `None` when the value does not fit an
/// `i64` or is negative (systemd maps both to `-ERANGE`).
fn strtoll(s: &str) -> Option<(u64, &str)> {
    let body = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, unsigned) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Some((0, s));
    }
    let mut value: u64 = 0;
    for b in unsigned[..digits].bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if value > i64::MAX as u64 || (negative && value != 0) {
        return None;
    }
    Some((value, &unsigned[digits..]))
}

/// The unit at the very start of `s` and what follows it.
fn extract_multiplier(s: &str) -> Option<(u64, &str)> {
    UNITS
        .iter()
        .find_map(|&(suffix, usec)| s.strip_prefix(suffix).map(|rest| (usec, rest)))
}

/// The span in microseconds; `u64::MAX` is `infinity` (systemd's `USEC_INFINITY`), and every
/// finite result is below it.
fn parse_usec(text: &str) -> Option<u64> {
    let mut p = skip_whitespace(text);
    if let Some(rest) = p.strip_prefix("infinity") {
        return skip_whitespace(rest).is_empty().then_some(u64::MAX);
    }
    let mut total: u64 = 0;
    let mut something = false;
    loop {
        p = skip_whitespace(p);
        if p.is_empty() {
            return something.then_some(total);
        }
        if p.starts_with('-') {
            return None;
        }
        let (whole, after_number) = strtoll(p)?;
        let fraction = if let Some(after_dot) = after_number.strip_prefix('.') {
            let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            p = &after_dot[len..];
            Some(&after_dot[..len])
        } else if after_number.len() == p.len() {
            return None; // no number at all
        } else {
            p = after_number;
            None
        };

        let unit_at = skip_whitespace(p);
        let (multiplier, rest) = extract_multiplier(unit_at).unwrap_or((USEC_PER_SEC, unit_at));
        // Same position and not the end: neither whitespace nor a unit follows the number, as in
        // `1.2.3s`. (`12.34 .56` and `12.34s.56` are fine, as in systemd.)
        if rest.len() == p.len() && !rest.is_empty() {
            return None;
        }
        p = rest;

        if whole >= u64::MAX / multiplier {
            return None;
        }
        total = add_below_infinity(total, whole * multiplier)?;
        something = true;

        if let Some(digits) = fraction {
            if digits.is_empty() {
                return None; // `5.s`, `1.`, `3.hoge`
            }
            let mut scale = multiplier / 10;
            for b in digits.bytes() {
                total = add_below_infinity(total, u64::from(b - b'0') * scale)?;
                scale /= 10;
            }
        }
    }
}

/// `total + k`, or `None` when it would reach `USEC_INFINITY`.
fn add_below_infinity(total: u64, k: u64) -> Option<u64> {
    (k < u64::MAX - total).then(|| total + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoll_matches_c() {
        assert_eq!(strtoll("12s"), Some((12, "s")));
        assert_eq!(strtoll("+5"), Some((5, "")));
        assert_eq!(strtoll("\x0b-0"), Some((0, "")));
        assert_eq!(strtoll("-3"), None);
        assert_eq!(strtoll(".5"), Some((0, ".5")));
        assert_eq!(strtoll("+"), Some((0, "+")));
        assert_eq!(strtoll("9223372036854775807"), Some((i64::MAX as u64, "")));
        assert_eq!(strtoll("9223372036854775808"), None);
    }

    #[test]
    fn unit_table_prefers_systemds_order() {
        assert_eq!(extract_multiplier("ms"), Some((1_000, "")));
        assert_eq!(extract_multiplier("min"), Some((USEC_PER_MINUTE, "")));
        assert_eq!(
            extract_multiplier("month 2w"),
            Some((USEC_PER_MONTH, " 2w"))
        );
        assert_eq!(extract_multiplier("fortnight"), None);
    }

    #[test]
    fn infinity_is_the_only_u64_max() {
        assert_eq!(parse_usec("infinity"), Some(u64::MAX));
        assert_eq!(parse_usec("18446744073709551614us"), None);
        assert_eq!(parse_usec("9223372036854775807us"), Some(i64::MAX as u64));
    }
}
