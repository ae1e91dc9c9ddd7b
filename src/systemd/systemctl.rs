//! One bounded `systemctl` call (`show`, or `list-jobs` for `stop_job.rs`), and the parsing
//! of `show`'s output.
//!
//! The child gets no stdin and no stderr, its stdout is read on a helper thread (capped), and
//! the whole exchange ends at a deadline: a hanging `systemctl` (dead bus, stuck polkit) is
//! killed and reaped, and a grandchild that keeps the pipe open cannot hold us past the deadline.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::sys::cgroup::SystemdManager;

use super::duration::parse_systemd_duration;

/// `systemctl show` prints two short lines, `list-jobs` one a job; anything longer than this
/// is not systemctl.
const MAX_OUTPUT: u64 = 64 * 1024;
const POLL: Duration = Duration::from_millis(5);

/// What one manager said about a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `LoadState=loaded` and this `TimeoutStopUSec` (`Duration::MAX` = infinity).
    Loaded(Duration),
    /// The manager answered, but the unit is `not-found` (or masked, or failed to load): its
    /// `TimeoutStopUSec` would be a default, not the unit's.
    NotLoaded(String),
    /// No `systemctl` to run (missing or not executable): asking again cannot help.
    Missing,
    /// This manager could not answer: non-zero exit, timeout, unparsable output.
    Failed(&'static str),
}

/// The arguments for one query. Options come before `--` so that no unit name can pass for one.
pub(crate) fn show_args(manager: SystemdManager, unit: &str) -> Vec<&str> {
    let mut args = Vec::with_capacity(6);
    if manager == SystemdManager::User {
        args.push("--user");
    }
    args.extend([
        "show",
        "--property=TimeoutStopUSec",
        "--property=LoadState",
        "--",
        unit,
    ]);
    args
}

/// Runs `program show …` for `unit` on `manager`, giving up at `deadline`.
pub(crate) fn show(
    program: &OsStr,
    manager: SystemdManager,
    unit: &str,
    deadline: Instant,
) -> Answer {
    match run(program, &show_args(manager, unit), deadline) {
        Ok(output) => match std::str::from_utf8(&output) {
            Ok(text) => parse_show_output(text),
            Err(_) => Answer::Failed("output is not UTF-8"),
        },
        Err(Failure::Missing) => Answer::Missing,
        Err(Failure::Failed(why)) => Answer::Failed(why),
    }
}

/// Why one bounded run gave no output to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No `systemctl` to run (missing or not executable).
    Missing,
    /// It ran but could not answer: non-zero exit, timeout, no pipe.
    Failed(&'static str),
}

/// Runs `program args…` (no stdin, no stderr, its own process group) and returns its stdout
/// (capped) when it exits 0 before `deadline`; at the deadline the whole group is killed.
pub(crate) fn run(program: &OsStr, args: &[&str], deadline: Instant) -> Result<Vec<u8>, Failure> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: at the deadline the whole group is killed, grandchildren
        // (a forked `sleep`, a pager holding stdout) included.
        .process_group(0);
    let mut child = match spawn(&mut command, deadline) {
        Ok(child) => child,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            return Err(Failure::Missing)
        }
        Err(_) => return Err(Failure::Failed("spawn failed")),
    };
    let Some(stdout) = child.stdout.take() else {
        stop(&mut child);
        return Err(Failure::Failed("no stdout pipe"));
    };
    let (tx, rx) = mpsc::channel();
    let reader = thread::Builder::new()
        .name("shutdown-systemctl".into())
        .spawn(move || {
            let mut buf = Vec::new();
            let result = stdout.take(MAX_OUTPUT).read_to_end(&mut buf).map(|_| buf);
            let _ = tx.send(result);
        });
    if reader.is_err() {
        stop(&mut child);
        return Err(Failure::Failed("no reader thread"));
    }
    let output = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(output)) => output,
        Ok(Err(_)) => {
            stop(&mut child);
            return Err(Failure::Failed("reading output failed"));
        }
        Err(_) => {
            stop(&mut child);
            return Err(Failure::Failed("timed out"));
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            // SIGCHLD inherited as SIG_IGN: the kernel reaps the child, its status is lost.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                stop(&mut child);
                return Err(Failure::Failed(SIGCHLD_IGNORED));
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) | Err(_) => {
                stop(&mut child);
                return Err(Failure::Failed("timed out"));
            }
        }
    };
    if !status.success() {
        return Err(Failure::Failed("non-zero exit"));
    }
    Ok(output)
}

/// Spawns, retrying briefly on `ETXTBSY`: an executable that another thread's fork still holds
/// open for writing (a freshly written script, a package upgrade) is busy only for a moment.
fn spawn(command: &mut Command, deadline: Instant) -> io::Result<Child> {
    loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                thread::sleep(POLL);
            }
            result => return result,
        }
    }
}

/// Why an answer is unknown when `SIGCHLD` is ignored (the exit status cannot be had).
pub(crate) const SIGCHLD_IGNORED: &str =
    "exit status unknown: SIGCHLD is ignored (SIG_IGN inherited), so children are reaped by the kernel";

/// Kills its whole process group and reaps it, so that no zombie and no grandchild is left.
fn stop(child: &mut Child) {
    if let Ok(pgid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the group we created for this child (process_group(0)); the
        // group id is the child's pid, which stays ours until the child is reaped below.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads `TimeoutStopUSec=` and `LoadState=` from `systemctl show` output.
pub(crate) fn parse_show_output(text: &str) -> Answer {
    let mut timeout = None;
    let mut load_state = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("TimeoutStopUSec=") {
            timeout.get_or_insert(value);
        } else if let Some(value) = line.strip_prefix("LoadState=") {
            load_state.get_or_insert(value);
        }
    }
    match load_state.map(str::trim) {
        None => Answer::Failed("no LoadState in output"),
        Some("loaded") => match timeout.and_then(parse_systemd_duration) {
            Some(timeout) => Answer::Loaded(timeout),
            None => Answer::Failed("no parsable TimeoutStopUSec in output"),
        },
        Some(other) => Answer::NotLoaded(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loaded_units() {
        let out = "TimeoutStopUSec=1min 30s\nLoadState=loaded\n";
        assert_eq!(
            parse_show_output(out),
            Answer::Loaded(Duration::from_secs(90))
        );
        let out = "LoadState=loaded\nTimeoutStopUSec=infinity\n";
        assert_eq!(parse_show_output(out), Answer::Loaded(Duration::MAX));
    }

    #[test]
    fn a_unit_that_is_not_loaded_has_no_timeout_of_its_own() {
        // systemd prints the manager's default for a unit it does not know.
        let out = "TimeoutStopUSec=1min 30s\nLoadState=not-found\n";
        assert_eq!(
            parse_show_output(out),
            Answer::NotLoaded("not-found".into())
        );
        let out = "TimeoutStopUSec=1min 30s\nLoadState=masked\n";
        assert_eq!(parse_show_output(out), Answer::NotLoaded("masked".into()));
    }

    #[test]
    fn garbage_is_a_failure() {
        assert!(matches!(parse_show_output(""), Answer::Failed(_)));
        assert!(matches!(
            parse_show_output("TimeoutStopUSec=90s\n"),
            Answer::Failed(_)
        ));
        assert!(matches!(
            parse_show_output("TimeoutStopUSec=soon\nLoadState=loaded\n"),
            Answer::Failed(_)
        ));
        assert!(matches!(
            parse_show_output("LoadState=loaded\n"),
            Answer::Failed(_)
        ));
    }

    #[test]
    fn options_precede_the_unit() {
        assert_eq!(
            show_args(SystemdManager::User, "-x.service"),
            [
                "--user",
                "show",
                "--property=TimeoutStopUSec",
                "--property=LoadState",
                "--",
                "-x.service"
            ]
        );
        assert_eq!(show_args(SystemdManager::System, "a.service")[0], "show");
    }
}
