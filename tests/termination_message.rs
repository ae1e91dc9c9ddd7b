//! `with_termination_message` (the gateway's `--termination-message PATH`): what `kubectl
//! describe pod` shows under `Last State` is the file's content at the container's end.
//!
//! Real processes: the gateway example, stopped by a SIGTERM from a separate `kill` process;
//! its drain held by its own server-sent-events client (`--sse-client`). Checked at each point:
//! before the stop (the empty file the kubelet creates), after the kill deadline's snapshot
//! (the phase, how long, where stuck, the expected SIGKILL), after the SIGKILL this test sends
//! at the deadline (unchanged), and after a stop that completes (replaced: complete, total,
//! slowest phase). One run has the file bind-mounted as the kubelet mounts it (a private mount
//! namespace: the rename that makes the write atomic fails there with `EBUSY`).

mod gateway_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_support::{gateway_bin, kill_from_other_process, Gateway};

const MAX: usize = 4096;

/// Waits (generously) until `path` holds text that `done` accepts; returns it.
fn wait_content(path: &Path, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got the expected text; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The message before the kill: where the drain was, for how long, stuck where, kill when.
fn assert_before_kill(text: &str, deadline: &str) {
    assert!(text.len() <= MAX, "{} bytes", text.len());
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("shutdown not finished at +"), "{text}");
    for needle in [
        ": in phase drain for ",
        &format!("; a SIGKILL is expected at +{deadline} (kill deadline); stuck in GET /events "),
    ] {
        assert!(first.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert!(
        text.contains("\nIf it ended with exit code 137 (SIGKILL) or 134 (SIGABRT), it was killed during phase drain;"),
        "{text}"
    );
    assert!(text.contains("\nstop: SIGTERM from pid "), "{text}");
    assert!(text.contains("\nphases: notify "), "{text}");
}

#[test]
fn killed_at_the_deadline_the_message_says_where_the_stop_was_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("termination-log");
    std::fs::write(&term, "").unwrap(); // as the kubelet creates it
    let flags = [
        "--wait",
        "--sse-client",
        "--drain-timeout",
        "60",
        "--kill-deadline",
        "3",
        "--termination-message",
        term.to_str().unwrap(),
    ];
    let mut gw = Gateway::start(&dir.path().join("run"), &flags);
    assert_eq!(
        std::fs::read(&term).unwrap().len(),
        0,
        "nothing before the stop"
    );
    let sent = Instant::now();
    let mut kill = kill_from_other_process("-TERM", gw.pid());
    gw.wait_for("drain stuck (kill deadline near)", Duration::from_secs(20));
    let _ = kill.wait();
    let before = wait_content(&term, |t| !t.is_empty());
    assert_before_kill(&before, "3.00s");
    let mode = std::fs::metadata(&term).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    eprintln!("--- before the kill ({} bytes):\n{before}", before.len());

    // The supervisor's SIGKILL at the deadline.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(sent.elapsed()));
    let pid = libc::pid_t::try_from(gw.pid()).unwrap();
    // SAFETY: kill(2) with our child's pid and a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = gw.wait_exit(Duration::from_secs(20));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let after = std::fs::read_to_string(&term).unwrap();
    assert_eq!(after, before, "what the kubelet reads after the SIGKILL");
}

/// A stop whose drain is stuck when the kill deadline's snapshot comes, but ends (its own
/// 3 s timeout) and completes, unkilled. `cmd` runs the gateway (directly, or through a
/// wrapper); `host` is where the message is read from.
fn completing_stop(run_dir: &Path, term: &Path, host: &Path, cmd: Command) -> (String, String) {
    let flags = [
        "--wait",
        "--sse-client",
        "--kill-deadline",
        "2",
        "--termination-message",
        term.to_str().unwrap(),
    ];
    let mut gw = Gateway::start_with(run_dir, &flags, cmd);
    let mut kill = kill_from_other_process("-TERM", gw.pid());
    gw.wait_for("drain stuck (kill deadline near)", Duration::from_secs(20));
    let _ = kill.wait();
    let before = wait_content(host, |t| t.starts_with("shutdown not finished"));
    let status = gw.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", gw.seen.join("\n"));
    let after = std::fs::read_to_string(host).unwrap();
    (before, after)
}

fn assert_complete(text: &str) {
    assert!(text.len() <= MAX, "{} bytes", text.len());
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("shutdown complete in "), "{text}");
    assert!(
        first.contains("; slowest phase drain 3.0") && first.contains("s (over budget 3.00s)"),
        "{text}"
    );
    assert!(text.contains("\nphases: notify "), "{text}");
    assert!(text.contains(", db_close "), "{text}");
    assert!(
        text.contains(" in drain (kill_deadline): GET /events "),
        "the snapshot on the way: {text}"
    );
    assert!(
        !text.contains("not finished"),
        "nothing of the first message left:\n{text}"
    );
}

#[test]
fn a_stop_that_completes_replaces_it_with_the_total_and_the_slowest_phase() {
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("termination-log");
    let cmd = Command::new(gateway_bin());
    let (before, after) = completing_stop(&dir.path().join("run"), &term, &term, cmd);
    assert_before_kill(&before, "2.00s");
    assert_complete(&after);
    eprintln!("--- at finish ({} bytes):\n{after}", after.len());
}

/// Why a private mount namespace cannot be had here, if it cannot.
fn no_mount_namespace() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: a bind mount needs root".into());
    }
    let ok = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "no `unshare --mount`".into())
}

#[test]
fn a_bind_mounted_file_as_the_kubelet_mounts_it_is_overwritten_in_place() {
    if let Some(why) = no_mount_namespace() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The kubelet's file on the host, mounted over the path the container writes.
    let host = dir.path().join("host-termination-log");
    let term = dir.path().join("termination-log");
    std::fs::write(&host, "").unwrap();
    std::fs::write(&term, "").unwrap();
    // The mount lives and dies with the namespace of this one process (no machine state).
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(&host)
        .arg(&term)
        .arg(gateway_bin());
    let (before, after) = completing_stop(&dir.path().join("run"), &term, &host, cmd);
    assert_before_kill(&before, "2.00s");
    assert_complete(&after);
    // Outside the namespace nothing was mounted: the path itself was never written.
    assert_eq!(std::fs::read(&term).unwrap().len(), 0);
}
