//! Unix seconds as `2026-12-06 20:38:01` (UTC), without a date crate.

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-12-06 20:38:01`, or `?` for a time that is not one.
pub(crate) fn utc(unix_s: Option<f64>) -> String {
    let Some(s) = unix_s.filter(|s| s.is_finite() && s.abs() < 1e12) else {
        return "?".to_owned();
    };
    // Whole seconds: the value is bounded above, so the cast cannot overflow.
    #[allow(clippy::cast_possible_truncation)]
    let secs = s.floor() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn dates() {
        assert_eq!(utc(Some(0.0)), "1970-01-01 00:00:00");
        assert_eq!(utc(Some(951_782_400.5)), "2000-02-29 00:00:00");
        assert_eq!(utc(Some(1_733_500_000.0)), "2024-12-06 15:46:40");
        assert_eq!(utc(None), "?");
        assert_eq!(utc(Some(f64::NAN)), "?");
    }
}
