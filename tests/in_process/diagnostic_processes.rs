//! The detached diagnostic's processes: reaped, bounded, given values only as arguments,
//! never showing other processes' argv, and useful when tools are missing or hang.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use shutdown_forensics::diagnostic::{
    spawn_diagnostic_with, Diagnostic, DiagnosticOptions, DiagnosticOutcome,
};

const FINISH_WITHIN: Duration = Duration::from_secs(20);

fn finish(diagnostic: &Diagnostic) -> DiagnosticOutcome {
    match diagnostic.wait_timeout(FINISH_WITHIN) {
        Some(outcome) => outcome,
        None => panic!("diagnostic {} still running", diagnostic.pid()),
    }
}

fn run(options: &DiagnosticOptions) -> String {
    let diagnostic = spawn_diagnostic_with(options).expect("spawn");
    let outcome = finish(&diagnostic);
    assert!(
        matches!(outcome, DiagnosticOutcome::Exited(status) if status.success()),
        "{outcome:?}"
    );
    fs::read_to_string(options.log_path()).expect("read log")
}

/// `(state, process group)` from `/proc/<pid>/stat`, `None` once the pid is gone.
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text.get(text.rfind(')')? + 2..)?.split(' ');
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Pids of live (non-zombie) processes whose process group is `pgid`.
#[cfg(target_os = "linux")]
fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(
            |&pid| matches!(proc_stat(pid), Some((state, group)) if group == pgid && state != 'Z'),
        )
        .collect()
}

/// Wait until no live process of group `pgid` remains. The script's own watchdog `sleep`
/// would otherwise linger for the timeout plus a second, longer than `within`.
#[cfg(target_os = "linux")]
fn group_drains(pgid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if live_group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn write_script(path: &Path, body: &str) {
    fs::write(path, body).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[cfg(target_os = "linux")]
#[test]
fn child_is_reaped_without_the_caller_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("diag.log");
    let pid =
        shutdown_forensics::diagnostic::spawn_diagnostic(&log, "SIGTERM", Duration::from_secs(5))
            .expect("spawn");
    // Nobody here waits: the crate's reaper must. A zombie would keep state 'Z' forever.
    let deadline = Instant::now() + FINISH_WITHIN;
    let mut last = proc_stat(pid);
    while Instant::now() < deadline {
        last = proc_stat(pid);
        match last {
            None => break,
            // The pid was reused by an unrelated process: ours is gone.
            Some((_, group)) if group != pid => break,
            Some(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    assert!(
        last.is_none() || last.is_some_and(|(_, group)| group != pid),
        "diagnostic {pid} still present as {last:?}"
    );
    assert!(
        group_drains(pid, Duration::from_secs(3)),
        "group {pid} left behind"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn finished_diagnostic_leaves_no_zombie_and_no_group_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let diagnostic =
        spawn_diagnostic_with(&DiagnosticOptions::new(dir.path().join("diag.log"))).expect("spawn");
    let pid = diagnostic.pid();
    assert!(matches!(finish(&diagnostic), DiagnosticOutcome::Exited(_)));
    // The outcome is published after waitpid, so the zombie is already gone.
    assert!(
        !matches!(proc_stat(pid), Some(('Z', group)) if group == pid),
        "zombie {pid}"
    );
    assert!(
        group_drains(pid, Duration::from_secs(3)),
        "group {pid} left behind"
    );
}

#[test]
fn other_processes_argv_is_not_written_by_default() {
    let secret = format!("sf-secret-token-{}-hunter2", std::process::id());
    let mut holder = Command::new("/bin/sh")
        .args(["-c", "sleep 30", &secret])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn secret holder");
    let dir = tempfile::tempdir().expect("tempdir");
    let private = run(&DiagnosticOptions::new(dir.path().join("private.log")));
    // Control: with command lines on, the same secret does show (so the check can fail).
    let revealed = run(&DiagnosticOptions::new(dir.path().join("revealed.log"))
        .with_include_cmdline(true)
        .with_target_pid(holder.id()));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!private.contains(&secret), "secret leaked:\n{private}");
    assert!(
        revealed.contains(&secret),
        "control run lacks argv:\n{revealed}"
    );
}

#[test]
fn hostile_signal_name_and_correlation_id_are_inert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = |n: u32| dir.path().join(format!("pwned{n}"));
    let hostile = format!(
        "$(touch {}); touch {} `touch {}` \"'$HOME",
        mark(1).display(),
        mark(2).display(),
        mark(3).display()
    );
    let id = format!("x;touch {}|| true\nFORGED LINE", mark(4).display());
    let log = run(&DiagnosticOptions::new(dir.path().join("diag.log"))
        .with_signal_name(hostile.as_str())
        .with_correlation_id(id.as_str()));
    for n in 1..=4 {
        assert!(!mark(n).exists(), "value {n} was executed");
    }
    assert!(
        log.contains(&format!("=== shutdown diagnostic @ {hostile} ===")),
        "{log}"
    );
    assert!(
        !log.contains("\nFORGED LINE"),
        "control character reached the log"
    );
    assert!(log.contains("?FORGED LINE"), "{log}");
}

#[test]
fn missing_tools_are_reported_per_section() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty-bin");
    fs::create_dir(&empty).expect("mkdir");
    let log = run(&DiagnosticOptions::new(dir.path().join("diag.log"))
        .with_signal_name("SIGTERM")
        .with_search_path(&empty));
    for note in [
        "ps not found on PATH; process table skipped",
        "pstree not found on PATH; process tree skipped",
        "dmesg not found on PATH",
        "journalctl not found on PATH; kernel messages skipped",
        "=== end of shutdown diagnostic",
    ] {
        assert!(log.contains(note), "missing {note:?} in\n{log}");
    }
    #[cfg(target_os = "linux")]
    assert!(
        log.split("--- load average ---\n")
            .nth(1)
            .is_some_and(|rest| {
                rest.split_whitespace()
                    .next()
                    .is_some_and(|v| v.parse::<f64>().is_ok())
            }),
        "loadavg needs no tool:\n{log}"
    );
}

#[test]
fn failing_dmesg_falls_back_to_journalctl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    write_script(
        &bin.join("dmesg"),
        "#!/bin/sh\necho 'dmesg: read kernel buffer failed: Operation not permitted' >&2\nexit 1\n",
    );
    write_script(
        &bin.join("journalctl"),
        "#!/bin/sh\necho \"fake journalctl $*\"\n",
    );
    let log = run(&DiagnosticOptions::new(dir.path().join("diag.log")).with_search_path(&bin));
    assert!(
        log.contains("dmesg not permitted or failed (status 1): dmesg: read kernel buffer failed"),
        "{log}"
    );
    assert!(
        log.contains("fake journalctl -k -n 40 --no-pager -q"),
        "{log}"
    );
}

#[test]
fn hanging_tool_is_killed_with_the_group_at_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    // A `ps` that never answers; `sleep` must come from the real PATH.
    let pid_file = dir.path().join("ps.pid");
    let body = format!(
        "#!/bin/sh\necho $$ >'{}'\nexec sleep 60\n",
        pid_file.display()
    );
    write_script(&bin.join("ps"), &body);
    if let Ok(real) = which_sleep() {
        symlink(real, bin.join("sleep")).expect("symlink sleep");
    }
    let log_path = dir.path().join("diag.log");
    let started = Instant::now();
    let diagnostic = spawn_diagnostic_with(
        &DiagnosticOptions::new(&log_path)
            .with_timeout(Duration::from_secs(1))
            .with_search_path(&bin),
    )
    .expect("spawn");
    assert!(started.elapsed() < Duration::from_secs(1), "spawn waited");
    assert_eq!(finish(&diagnostic), DiagnosticOutcome::KilledAtTimeout);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not killed near its timeout"
    );
    let log = fs::read_to_string(&log_path).expect("read");
    assert!(
        log.contains("killed with its process group after the 1.0s timeout"),
        "{log}"
    );
    assert!(!log.contains("=== end of shutdown diagnostic"), "{log}");

    #[cfg(target_os = "linux")]
    {
        let hung: u32 = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
            .expect("fake ps recorded its pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while live_group_members(diagnostic.pid()).contains(&hung) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !live_group_members(diagnostic.pid()).contains(&hung),
            "hung ps survived"
        );
    }
}

fn which_sleep() -> Result<&'static str, ()> {
    ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or(())
}
