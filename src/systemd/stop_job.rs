//! Was the stop signal a routine stop job? Asked of the manager after the signal was handled.
//!
//! The sender cannot tell: `systemctl stop` and `systemctl kill` both make pid 1 send the
//! unit's `KillSignal` with `kill(2)` (`SI_USER`). The unit's state cannot tell either once our
//! `STOPPING=1` arrived: the manager then moves it to `deactivating`/`stop-sigterm` as if it had
//! sent the signal for a stop. systemd keeps no job state outside its memory (nothing under
//! `/run/systemd` says which jobs run), so the job queue is asked over its bus, through
//! `systemctl list-jobs`, bounded: the answer for our unit is a `stop` or `restart` job, or
//! none.

use std::ffi::OsStr;
use std::time::Instant;

use crate::context::{ManagerJob, ShutdownContext, Supervisor};
use crate::sys::cgroup::SystemdManager;

use super::systemctl::{self, Failure};

/// Job types that stop the unit. (`try-restart` collapses into `restart` when queued for a
/// running unit; `reload`, `start`, `verify-active`, `nop` never send a stop signal.)
const STOP_JOB_TYPES: &[&str] = &["stop", "restart", "try-restart"];

/// The manager to ask and our unit, when `ctx` is a signal the service manager sent us: under
/// the system manager from pid 1, under a user manager from our parent (the manager runs its
/// services as its children). `None` for any other sender: a stop job's signal comes from the
/// manager, so there is nothing to ask.
pub(crate) fn manager_signal(ctx: &ShutdownContext) -> Option<(SystemdManager, &str)> {
    let Supervisor::Systemd {
        manager,
        unit: Some(unit),
    } = &ctx.supervisor
    else {
        return None;
    };
    let sender = ctx.sender.as_ref()?;
    let from_manager = match manager {
        SystemdManager::System => sender.pid == 1,
        SystemdManager::User => sender.pid == ctx.ppid && sender.pid > 1,
    };
    (from_manager && super::unit::is_valid_unit_name(unit)).then_some((*manager, unit.as_str()))
}

/// Asks `program` (`systemctl`) for the jobs of `unit` on `manager`, giving up at `deadline`.
pub(crate) fn ask(
    program: &OsStr,
    manager: SystemdManager,
    unit: &str,
    deadline: Instant,
) -> ManagerJob {
    let mut args = Vec::with_capacity(7);
    if manager == SystemdManager::User {
        args.push("--user");
    }
    // Options before `--`, so that no unit name can pass for one.
    args.extend(["list-jobs", "--no-legend", "--full", "--", unit]);
    match systemctl::run(program, &args, deadline) {
        Ok(output) => match std::str::from_utf8(&output) {
            Ok(text) => parse_list_jobs(text, unit),
            Err(_) => unknown("output is not UTF-8"),
        },
        Err(Failure::Missing) => unknown("no systemctl"),
        Err(Failure::Failed(why)) => unknown(why),
    }
}

fn unknown(why: &str) -> ManagerJob {
    ManagerJob::Unknown {
        why: why.to_owned(),
    }
}

/// Reads `systemctl list-jobs --no-legend` output (`11 gw.service stop running`, one job a
/// line, nothing or `No jobs running.` when there is none) for `unit`'s job. A line that is not four words, or whose
/// id is not a number, makes the answer unknown: it is not systemctl's.
pub(crate) fn parse_list_jobs(text: &str, unit: &str) -> ManagerJob {
    let mut found = ManagerJob::None;
    // Older systemctl versions say so even with `--no-legend`.
    let lines = text.lines().map(str::trim);
    for line in lines.filter(|l| !l.is_empty() && *l != "No jobs running.") {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [id, name, job_type, _state] = words[..] else {
            return unknown("unexpected list-jobs output");
        };
        let Ok(job_id) = id.parse::<u32>() else {
            return unknown("unexpected list-jobs output");
        };
        if name == unit && STOP_JOB_TYPES.contains(&job_type) {
            found = ManagerJob::Stop {
                job_type: job_type.to_owned(),
                job_id,
            };
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_or_restart_job_of_our_unit_is_a_stop() {
        assert_eq!(
            parse_list_jobs("11 gw.service stop running\n", "gw.service"),
            ManagerJob::Stop {
                job_type: "stop".into(),
                job_id: 11
            }
        );
        let out = "7 other.service start waiting\n15 gw.service restart running\n";
        assert_eq!(
            parse_list_jobs(out, "gw.service"),
            ManagerJob::Stop {
                job_type: "restart".into(),
                job_id: 15
            }
        );
    }

    #[test]
    fn no_job_or_another_units_job_or_a_reload_is_none() {
        assert_eq!(parse_list_jobs("", "gw.service"), ManagerJob::None);
        assert_eq!(
            parse_list_jobs("No jobs running.\n", "gw.service"),
            ManagerJob::None
        );
        assert_eq!(
            parse_list_jobs("3 gw2.service stop running\n", "gw.service"),
            ManagerJob::None
        );
        assert_eq!(
            parse_list_jobs("3 gw.service reload running\n", "gw.service"),
            ManagerJob::None
        );
    }

    #[test]
    fn output_that_is_not_systemctls_is_unknown() {
        for garbage in [
            "no jobs\n",
            "x gw.service stop running\n",
            "11 gw.service stop\n",
        ] {
            assert!(
                matches!(
                    parse_list_jobs(garbage, "gw.service"),
                    ManagerJob::Unknown { .. }
                ),
                "{garbage:?}"
            );
        }
    }
}
