//! Budgets that never applied: configured for a phase name no phase of this shutdown had
//! (`phase!("Drain")` with a budget for `"drain"`, or `info_span!("drain")` where
//! `phase!("drain")` was meant). Such a budget is silently no budget at all: no over-budget
//! warning, no stuck snapshot. Said at finish, once per budget, with the closest phase name
//! and, when one exists, the span that is named like the phase but is not one.

use std::fmt::Write as _;

use crate::sys::clock::Secs;
use crate::sys::logfmt::Logfmt;
use crate::timeline::state::Timeline;

impl Timeline {
    /// One sentence per configured budget that no phase of this shutdown matched.
    pub(crate) fn budgets_never_applied(&self) -> Vec<String> {
        let names: Vec<String> = {
            let st = self.lock();
            let mut names: Vec<String> = Vec::new();
            for (_, p) in st.live_phases() {
                for n in [p.name, p.label.as_str()] {
                    if !names.iter().any(|k| k == n) {
                        names.push(n.to_owned());
                    }
                }
            }
            names
        };
        let mut out = Vec::new();
        for (key, budget) in &self.config.budgets {
            if names.iter().any(|n| n == key) {
                continue;
            }
            let mut line = format!(
                "phase budget {} ({}) never applied: no phase named {} ran",
                Logfmt(key),
                Secs(*budget),
                Logfmt(key)
            );
            if let Some(near) = closest(key, &names) {
                let _ = write!(line, " (closest: {}; names match exactly)", Logfmt(near));
            }
            for target in self.startup.misnamed_targets(key) {
                let _ = write!(
                    line,
                    "; a span named {} with target {} is not a phase: open it with \
                     phase!({key:?}) (target `shutdown`)",
                    Logfmt(key),
                    Logfmt(target)
                );
            }
            out.push(line);
        }
        out
    }
}

/// The name nearest to `key`: equal but for case first, else within a third of its length
/// in edits (at least two); `None` when nothing is that near.
fn closest<'a>(key: &str, names: &'a [String]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    if let Some(n) = names.iter().find(|n| n.to_lowercase() == lower) {
        return Some(n);
    }
    let max = (key.chars().count() / 3).max(2);
    names
        .iter()
        .map(|n| (edit_distance(&lower, &n.to_lowercase()), n))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

/// Levenshtein distance over characters (names are short: at most a few dozen).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().take(256).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().take(256).enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_name_is_the_same_but_for_case_or_a_few_edits_away() {
        let names: Vec<String> = ["Drain", "db-close", "notify"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(closest("drain", &names), Some("Drain"));
        assert_eq!(closest("db_close", &names), Some("db-close"));
        assert_eq!(closest("disconnect", &names), None);
        assert_eq!(closest("x", &[]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
