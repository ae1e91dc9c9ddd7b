//! The terminal waterfall: one bar per phase, to scale.

use std::fmt;

use crate::sys::clock::{Offset, Secs};
use crate::sys::logfmt::Logfmt;
use crate::timeline::report::{PhaseOutcome, ShutdownReport};

/// Width of the bar area, in characters.
const BAR_WIDTH: usize = 40;
/// Longest label shown, in characters (indentation included); a longer one is cut and ends
/// in `...`. Labels are untrusted (an adapter name from a flag or a config file): no width
/// may come from their length (a format width past `u16::MAX` panics), and a row must stay
/// readable. The JSON report keeps them whole.
const LABEL_MAX: usize = 60;

/// `label` cut to [`LABEL_MAX`] characters, marked with `...` when cut.
fn shown_label(label: String) -> String {
    if label.chars().count() <= LABEL_MAX {
        return label;
    }
    let mut cut: String = label.chars().take(LABEL_MAX - 3).collect();
    cut.push_str("...");
    cut
}

fn dur(s: f64) -> Secs {
    Secs(std::time::Duration::try_from_secs_f64(s).unwrap_or_default())
}

impl fmt::Display for ShutdownReport {
    /// ```text
    /// shutdown: 3.62s, complete, SIGTERM from pid 1 (systemd), budget 90.00s, margin 86.38s
    /// +0.00s  notify             █                                          0.02s
    /// +0.05s  drain              ██████████████████████████████████████     3.36s
    /// ```
    /// `{:#}` draws the bars with `#` for terminals without Unicode.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let block = if f.alternate() { '#' } else { '█' };
        write!(
            f,
            "shutdown: {}, {}",
            dur(self.elapsed_s),
            if self.complete {
                "complete"
            } else {
                "in progress"
            }
        )?;
        if let Some(t) = &self.trigger {
            write!(f, ", {}", t.describe())?;
        }
        if let (Some(b), Some(m)) = (self.budget_s, self.margin_s) {
            let margin = if m < 0.0 {
                format!("over by {}", dur(-m))
            } else {
                format!("margin {}", dur(m))
            };
            write!(f, ", budget {}, {margin}", dur(b))?;
        }
        writeln!(f)?;
        let labels: Vec<String> = (0..self.phases.len())
            .map(|i| {
                // Nesting past the cap adds nothing readable.
                let indent = "  ".repeat(self.depth(i).min(LABEL_MAX / 4));
                shown_label(format!("{indent}{}", Logfmt(&self.phases[i].name)))
            })
            .collect();
        let label_width = labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
            .max(17)
            + 2;
        let scale = self
            .phases
            .iter()
            .map(|p| p.start_s + p.duration_s)
            .fold(self.elapsed_s, f64::max);
        for (p, label) in self.phases.iter().zip(&labels) {
            let col = |s: f64| {
                if scale > 0.0 {
                    ((s / scale) * BAR_WIDTH as f64).round() as usize
                } else {
                    0
                }
            };
            let start = col(p.start_s).min(BAR_WIDTH - 1);
            let len = col(p.duration_s).clamp(1, BAR_WIDTH - start);
            let mut bar: Vec<char> = std::iter::repeat_n(' ', start)
                .chain(std::iter::repeat_n(block, len))
                .chain(std::iter::repeat_n(' ', BAR_WIDTH - start - len))
                .collect();
            let stuck: Vec<_> = self
                .stuck
                .iter()
                .filter(|s| s.phase.as_deref() == Some(p.name.as_str()))
                .collect();
            for s in &stuck {
                // `!` marks when the snapshot was taken.
                if let Some(c) = bar.get_mut(col(s.at_s).min(BAR_WIDTH - 1)) {
                    *c = '!';
                }
            }
            let bar: String = bar.into_iter().collect();
            let offset =
                Offset(std::time::Duration::try_from_secs_f64(p.start_s).unwrap_or_default());
            // Padding written out, never a format width: see `LABEL_MAX`.
            let pad = " ".repeat(label_width.saturating_sub(label.chars().count()));
            write!(
                f,
                "{:>7}  {label}{pad}{bar} {:>8}",
                offset.to_string(),
                dur(p.duration_s).to_string()
            )?;
            match (p.outcome, p.budget_s) {
                (PhaseOutcome::Open, _) => write!(f, "  open")?,
                (PhaseOutcome::OverBudget, Some(b)) => write!(f, "  over budget ({})", dur(b))?,
                _ => {}
            }
            writeln!(f)?;
            for s in stuck {
                let at = Offset(std::time::Duration::try_from_secs_f64(s.at_s).unwrap_or_default());
                let first = s.findings.first().map_or("", String::as_str);
                let arrow = if f.alternate() { "->" } else { "↳" };
                writeln!(f, "{:>7}  {arrow} stuck at {at}: {first}", "")?;
            }
        }
        Ok(())
    }
}

impl ShutdownReport {
    fn depth(&self, mut i: usize) -> usize {
        let mut depth = 0;
        while let Some(p) = self.phases.get(i).and_then(|p| p.parent) {
            depth += 1;
            if depth >= self.phases.len() {
                break;
            }
            i = p;
        }
        depth
    }
}
