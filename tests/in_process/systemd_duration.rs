//! `parse_systemd_duration` accepts exactly what systemd's `parse_sec()` accepts.
//!
//! The accepted/rejected cases were checked against `systemd-analyze timespan` (systemd 252).

use std::time::Duration;

use shutdown_forensics::systemd::parse_systemd_duration as parse;

fn us(n: u64) -> Option<Duration> {
    Some(Duration::from_micros(n))
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

// Ports of the reference's `_parse_systemd_duration_to_us` tests.

#[test]
fn seed_seconds_minutes_hours_milliseconds() {
    assert_eq!(parse("90s"), secs(90));
    assert_eq!(parse("3min"), secs(180));
    assert_eq!(parse("1min 30s"), secs(90));
    assert_eq!(parse("1h"), secs(3600));
    assert_eq!(parse("500ms"), us(500_000));
}

#[test]
fn seed_empty_is_none() {
    assert_eq!(parse(""), None);
}

#[test]
fn seed_unknown_unit_is_none() {
    // The reference called `90weeks` unknown; systemd accepts it (see below).
    assert_eq!(parse("90fortnights"), None);
}

#[test]
fn weeks_are_a_systemd_unit() {
    assert_eq!(parse("90weeks"), secs(90 * 7 * 86_400));
}

#[test]
fn every_unit_spelling() {
    let cases: &[(&[&str], u64)] = &[
        (&["us", "usec", "\u{b5}s", "\u{3bc}s"], 1),
        (&["ms", "msec"], 1_000),
        (&["s", "sec", "second", "seconds", ""], 1_000_000),
        (&["m", "min", "minute", "minutes"], 60_000_000),
        (&["h", "hr", "hour", "hours"], 3_600_000_000),
        (&["d", "day", "days"], 86_400_000_000),
        (&["w", "week", "weeks"], 604_800_000_000),
        (&["M", "month", "months"], 2_629_800_000_000),
        (&["y", "year", "years"], 31_557_600_000_000),
    ];
    for (spellings, usec) in cases {
        for unit in *spellings {
            assert_eq!(parse(&format!("3{unit}")), us(3 * usec), "3{unit}");
            assert_eq!(parse(&format!("3 {unit}")), us(3 * usec), "3 {unit}");
        }
    }
}

#[test]
fn fractions_and_compounds() {
    assert_eq!(parse("1.5h"), secs(5400));
    assert_eq!(parse(".5s"), us(500_000));
    assert_eq!(parse("1h30min"), secs(5400));
    assert_eq!(parse("1h 30min"), secs(5400));
    assert_eq!(parse("2 min"), secs(120));
    assert_eq!(parse("  3 min  "), secs(180));
    assert_eq!(parse("1min30"), secs(90));
    assert_eq!(parse("12.34 .56"), us(12_900_000));
    assert_eq!(parse("12.34s.56"), us(12_900_000));
    assert_eq!(parse("1.5us"), us(1)); // below systemd's resolution
    assert_eq!(parse("1.0000005s"), us(1_000_000));
    assert_eq!(parse("0.000001s"), us(1));
}

#[test]
fn bare_numbers_are_seconds_and_add_up() {
    assert_eq!(parse("0"), Some(Duration::ZERO));
    assert_eq!(parse("5"), secs(5));
    assert_eq!(parse("1.5"), us(1_500_000));
    assert_eq!(parse("1 2"), secs(3));
    assert_eq!(parse("5 min 3"), secs(303));
    assert_eq!(parse("1\t2min"), secs(121));
    assert_eq!(parse("+5s"), secs(5));
}

#[test]
fn infinity() {
    assert_eq!(parse("infinity"), Some(Duration::MAX));
    assert_eq!(parse(" infinity \n"), Some(Duration::MAX));
    assert_eq!(parse("infinityx"), None);
    assert_eq!(parse("infinity 5"), None);
    assert_eq!(parse("5 infinity"), None);
}

#[test]
fn rejected_like_systemd() {
    for text in [
        "",
        " ",
        "s",
        ".",
        "1.",
        "5.s",
        "90fortnights",
        "-5s",
        "-0",
        "1h-5m",
        "1.2.3s",
        "5ns",
        "5mins",
        "5secs",
        "5S",
        "5H",
        "1e3s",
        "0x10s",
        "1_000s",
        "1,5s",
        "++5",
        "+-5",
        "5hx",
        "5 h x",
        "5\x0b",
        "soon",
        "90 s s",
    ] {
        assert_eq!(parse(text), None, "{text:?}");
    }
}

#[test]
fn overflow_is_none() {
    assert_eq!(
        parse("9223372036854775807us"),
        us(9_223_372_036_854_775_807)
    );
    assert_eq!(parse("9223372036854775808us"), None);
    assert_eq!(parse("18446744073709551615"), None);
    // systemd refuses a count that reaches u64::MAX / unit, even when the product would fit.
    assert_eq!(parse("584541y"), us(584_541 * 31_557_600_000_000));
    assert_eq!(parse("584542y"), None);
    assert_eq!(parse("584541y 584541y"), None);
}

/// systemd's `format_timespan(t, accuracy = 1)`, the shape `systemctl show` and
/// `systemd-analyze timespan` print (`1min 30s`, `1h 30min`, `500ms`, `1.500000s`).
fn format_timespan(mut t: u64) -> String {
    const TABLE: &[(&str, u64)] = &[
        ("y", 31_557_600_000_000),
        ("month", 2_629_800_000_000),
        ("w", 604_800_000_000),
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("min", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
        ("us", 1),
    ];
    if t == u64::MAX {
        return "infinity".into();
    }
    if t == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for &(suffix, unit) in TABLE {
        if t == 0 {
            break;
        }
        if t < unit {
            continue;
        }
        let sep = if out.is_empty() { "" } else { " " };
        let (a, b) = (t / unit, t % unit);
        let digits = unit.ilog10() as usize;
        if t < 60_000_000 && b > 0 && digits > 0 {
            out += &format!("{sep}{a}.{b:0digits$}{suffix}");
            break;
        }
        out += &format!("{sep}{a}{suffix}");
        t = b;
    }
    out
}

#[test]
fn formatter_matches_systemd_output() {
    // Values printed by `systemd-analyze timespan` (systemd 252).
    assert_eq!(format_timespan(90_000_000), "1min 30s");
    assert_eq!(format_timespan(5_400_000_000), "1h 30min");
    assert_eq!(format_timespan(500_000), "500ms");
    assert_eq!(format_timespan(12_900_000), "12.900000s");
    assert_eq!(format_timespan(54_432_000_000_000), "1y 8month 3w 6h");
}

/// A small deterministic generator (xorshift), so that failures reproduce.
fn values() -> impl Iterator<Item = u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Spread over every magnitude, from 1 µs to centuries.
        x >> (x % 40 + 1)
    })
}

#[test]
fn what_systemd_prints_parses_back() {
    let edges = [0, 1, 999, 1_000, 59_999_999, 60_000_000, u64::MAX];
    for t in values().take(20_000).chain(edges) {
        let text = format_timespan(t);
        let want = if t == u64::MAX {
            Duration::MAX
        } else {
            Duration::from_micros(t)
        };
        assert_eq!(parse(&text), Some(want), "{t} printed as {text:?}");
        let compact = text.replace(' ', "");
        assert_eq!(parse(&compact), Some(want), "{t} printed as {compact:?}");
    }
}
