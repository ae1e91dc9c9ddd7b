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

    /// A fake `systemctl`: logs its arguments to `argv.log`, then runs `body`.
    fn fake(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let log = dir.join("argv.log");
        let path = dir.join("systemctl");
        let script = format!("#!/bin/sh\necho \"$*\" >> '{}'\n{body}\n", log.display());
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_query_names_the_manager_and_puts_options_before_the_unit() {
        let dir = tempfile::tempdir().unwrap();
        let program = fake(dir.path(), "echo '11 -x.service stop running'");
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let job = ask(
            program.as_os_str(),
            SystemdManager::User,
            "-x.service",
            deadline,
        );
        assert_eq!(
            job,
            ManagerJob::Stop {
                job_type: "stop".into(),
                job_id: 11
            }
        );
        let argv = std::fs::read_to_string(dir.path().join("argv.log")).unwrap();
        assert_eq!(argv, "--user list-jobs --no-legend --full -- -x.service\n");
    }

    #[test]
    fn a_hanging_failing_missing_or_garbled_systemctl_is_unknown_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let limit = std::time::Duration::from_millis(300);
        for (body, why) in [
            ("sleep 30", "timed out"),
            ("exit 1", "non-zero exit"),
            (
                "echo 'Failed to connect to bus'",
                "unexpected list-jobs output",
            ),
        ] {
            let program = fake(dir.path(), body);
            let started = Instant::now();
            let job = ask(
                program.as_os_str(),
                SystemdManager::System,
                "gw.service",
                started + limit,
            );
            assert_eq!(job, unknown(why), "{body}");
            // Loose: the bound is 300 ms; a hang past it would take the 30 s sleep.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{body}"
            );
        }
        let missing = dir.path().join("no-such-systemctl");
        let job = ask(
            missing.as_os_str(),
            SystemdManager::System,
            "gw.service",
            Instant::now() + limit,
        );
        assert_eq!(job, unknown("no systemctl"));
    }

    fn context(supervisor: Supervisor, sender_pid: u32, ppid: u32) -> ShutdownContext {
        let capturer =
            crate::context::ContextCapturer::new(crate::context::ContextOptions::default());
        let mut ctx = capturer.capture(Some(libc::SIGTERM), None);
        ctx.supervisor = supervisor;
        ctx.ppid = ppid;
        ctx.sender = Some(crate::context::SignalSender::from_raw(
            i32::try_from(sender_pid).unwrap(),
            0,
            libc::SI_USER,
        ));
        ctx
    }

    #[test]
    fn only_the_managers_own_signal_is_asked_about() {
        let system = Supervisor::Systemd {
            manager: SystemdManager::System,
            unit: Some("gw.service".into()),
        };
        let user = Supervisor::Systemd {
            manager: SystemdManager::User,
            unit: Some("gw.service".into()),
        };
        let c = context(system.clone(), 1, 1);
        assert_eq!(
            manager_signal(&c),
            Some((SystemdManager::System, "gw.service"))
        );
        // `kill` from a shell under systemd: no stop job sends from there.
        assert_eq!(manager_signal(&context(system, 4242, 1)), None);
        // A user manager is our parent.
        let c = context(user.clone(), 900, 900);
        assert_eq!(
            manager_signal(&c),
            Some((SystemdManager::User, "gw.service"))
        );
        assert_eq!(manager_signal(&context(user, 1, 900)), None);
        // No unit, not systemd, or a name systemd would not have made.
        let no_unit = Supervisor::Systemd {
            manager: SystemdManager::System,
            unit: None,
        };
        assert_eq!(manager_signal(&context(no_unit, 1, 1)), None);
        assert_eq!(manager_signal(&context(Supervisor::Terminal, 1, 1)), None);
        let odd = Supervisor::Systemd {
            manager: SystemdManager::System,
            unit: Some("a b.service".into()),
        };
        assert_eq!(manager_signal(&context(odd, 1, 1)), None);
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
