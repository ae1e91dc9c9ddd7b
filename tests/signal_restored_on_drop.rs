//! Dropping `Forensics` gives each signal back what it did before the install (issue 18,
//! item 4): `let _ = Forensics::builder().install()?;` (which gets around `#[must_use]`) used to
//! leave SIGTERM caught with nobody listening, so the service could no longer be stopped
//! gracefully and its supervisor waited its whole timeout before a SIGKILL.
//!
//! Each case is a child process (this binary re-run as a role: signal dispositions are
//! process-wide) that this process sends a real SIGTERM with `kill`.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use shutdown_forensics::Forensics;
use support::{rerun_as, wait_until, LOOSE};

const READY: &str = "ready for SIGTERM";

fn say(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn install(signals: &[i32]) -> Forensics {
    Forensics::builder()
        .with_signals(signals)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .expect("install")
}

fn kill(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "run by sigterm_ends_the_process_after_the_helper_is_dropped"]
fn role_dropped_at_once() {
    if std::env::var_os("SF_ROLE").is_none() {
        return;
    }
    let _ = install(&[libc::SIGTERM, libc::SIGINT]);
    say(READY);
    wait_forever();
}

#[test]
#[ignore = "run by a_second_install_listens_and_its_drop_restores_the_default_again"]
fn role_installed_twice() {
    if std::env::var_os("SF_ROLE").is_none() {
        return;
    }
    // SIGUSR2 ignored before the install: it stays ignored after the drop.
    // SAFETY: sets a disposition of a signal the test binary does not use.
    unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
    drop(install(&[libc::SIGTERM, libc::SIGUSR2]));
    // Installing again listens afresh: this SIGTERM is caught, not fatal.
    let second = install(&[libc::SIGTERM]);
    kill("TERM", std::process::id());
    let ctx = second
        .signal()
        .wait_timeout(LOOSE)
        .expect("the second install caught SIGTERM");
    assert_eq!(ctx.signal, "SIGTERM");
    drop(second);
    kill("USR2", std::process::id());
    std::thread::sleep(Duration::from_millis(50));
    say("alive after SIGUSR2");
    say(READY);
    wait_forever();
}

/// Starts `role`, waits for READY, sends SIGTERM with `kill`, returns how it ended and what
/// it printed.
fn sigterm_after_ready(role: &str) -> (Option<i32>, Vec<String>) {
    let mut child = rerun_as(role)
        .env("SF_ROLE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line.contains(READY);
        lines.push(line);
        if ready {
            break;
        }
    }
    assert!(lines.iter().any(|l| l.contains(READY)), "{lines:?}");
    kill("TERM", child.id());
    let ended = wait_until(LOOSE, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        return (None, lines);
    }
    (child.wait().unwrap().signal(), lines)
}

#[test]
fn sigterm_ends_the_process_after_the_helper_is_dropped() {
    let (signal, lines) = sigterm_after_ready("role_dropped_at_once");
    assert_eq!(
        signal,
        Some(libc::SIGTERM),
        "SIGTERM did not end the process after the drop ({lines:?})"
    );
}

#[test]
fn a_second_install_listens_and_its_drop_restores_the_default_again() {
    let (signal, lines) = sigterm_after_ready("role_installed_twice");
    assert!(
        lines.iter().any(|l| l == "alive after SIGUSR2"),
        "{lines:?}"
    );
    assert_eq!(signal, Some(libc::SIGTERM), "{lines:?}");
}
