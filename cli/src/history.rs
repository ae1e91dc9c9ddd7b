//! `history PATH`: the last stops as a table, p50/p90/max per phase, and the supervisor stop
//! timeout they call for.

use std::fmt::Write as _;
use std::path::Path;

use shutdown_forensics::verdict::{self, StopSummary};

use crate::last::clean;
use crate::time::utc;

/// The nearest-rank percentile `p` (0..=1) of `sorted` (not empty, ascending).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil().max(1.0);
    // A rank within 1..=len: the cast cannot truncate anything that matters.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = (rank as usize).min(sorted.len()) - 1;
    sorted[i]
}

/// `3.41s`, with `+` when the time is a lower bound (the stop or phase was cut short).
fn secs(s: f64, lower_bound: bool) -> String {
    format!("{s:.2}s{}", if lower_bound { "+" } else { "" })
}

/// Who stopped it, in a few words.
fn who(s: &StopSummary) -> String {
    let mut w = match (&s.signal, s.sender_pid, &s.sender_name) {
        (Some(sig), Some(0), _) => format!("{sig} from outside"),
        (Some(sig), Some(pid), Some(name)) => format!("{sig} from {pid} ({name})"),
        (Some(sig), Some(pid), None) => format!("{sig} from {pid}"),
        (Some(sig), None, _) => sig.clone(),
        (None, ..) if s.started_unix_s.is_some() => "the app".to_owned(),
        (None, ..) => "-".to_owned(),
    };
    if s.planned {
        w.push_str(", planned");
    }
    clean(&w)
}

pub(crate) fn run(path: &Path) -> Result<String, String> {
    crate::resolve::history_path(path)?;
    let stops = verdict::history(path).map_err(|e| e.to_string())?;
    if stops.is_empty() {
        return Err(format!(
            "no stop recorded in the history of {} ({} is written at each stop)",
            path.display(),
            verdict::HISTORY_FILE
        ));
    }
    let mut out = String::new();
    let rows: Vec<[String; 7]> = stops
        .iter()
        .map(|s| {
            [
                utc(s.started_unix_s.or(s.run_started_unix_s)),
                s.pid.map_or("?".to_owned(), |p| p.to_string()),
                who(s),
                clean(&s.verdict),
                s.phase.as_deref().map_or("-".to_owned(), clean),
                s.total_s.map_or("-".to_owned(), |t| secs(t, !s.complete)),
                s.stuck.as_deref().map_or(String::new(), clean),
            ]
        })
        .collect();
    let head = [
        "started (UTC)",
        "pid",
        "stopped by",
        "verdict",
        "ended in",
        "total",
        "stuck",
    ];
    table(&mut out, &head, &rows);

    // Per phase, over every stop that ran it, in the order phases first appear.
    let mut names: Vec<&str> = Vec::new();
    for s in &stops {
        for p in &s.phases {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
    }
    let mut phase_rows = Vec::new();
    for name in names {
        let mut times: Vec<(f64, bool)> = stops
            .iter()
            .filter_map(|s| s.phases.iter().find(|p| p.name == name))
            .map(|p| (p.duration_s, p.open))
            .collect();
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sorted: Vec<f64> = times.iter().map(|t| t.0).collect();
        let max = times.last().copied().unwrap_or((0.0, false));
        phase_rows.push([
            clean(name),
            times.len().to_string(),
            secs(percentile(&sorted, 0.5), false),
            secs(percentile(&sorted, 0.9), false),
            secs(max.0, max.1),
        ]);
    }
    let _ = writeln!(out);
    table(
        &mut out,
        &["phase", "stops", "p50", "p90", "max"],
        &phase_rows,
    );

    let _ = writeln!(out);
    let recent = stops.len().min(verdict::RECENT_STOPS);
    match verdict::stop_timeout_needed(&stops) {
        Some(t) => {
            let which = if recent == 1 {
                "the last stop".to_owned()
            } else {
                format!("the slowest of the last {recent} stops")
            };
            let _ = writeln!(
                out,
                "supervisor stop timeout these stops call for: >= {}s ({which} plus headroom \
                 of half of it, 5s at least): TimeoutStopSec=, terminationGracePeriodSeconds, \
                 docker stop -t",
                t.as_secs()
            );
        }
        None => {
            let _ = writeln!(out, "no recent stop has a duration: no timeout to suggest");
        }
    }
    if stops.iter().any(|s| !s.complete && s.total_s.is_some()) {
        let _ = writeln!(
            out,
            "+: cut short (killed, crashed or exited): the time to its last record line, a lower bound"
        );
    }
    Ok(out)
}

/// Columns padded to their widest cell (counted in characters).
fn table<const N: usize>(out: &mut String, head: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            text.push_str(c);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(out, head.to_vec());
    for r in rows {
        line(out, r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), 5.0);
        assert_eq!(percentile(&v, 0.9), 9.0);
        assert_eq!(percentile(&[3.0], 0.9), 3.0);
    }
}
