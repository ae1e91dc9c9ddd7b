//! A storm of SIGTERMs from one shell: one capture, repeats counted, the log rate-limited.
//!
//! One install per process (signal handlers are process-global): ONE test in this file.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{install_with_capture, lines_with, wait_until, LOOSE};

/// Repeats that are logged: #2..=#11, then every 100th (the first signal is the context).
fn logged_repeats(count: u32) -> usize {
    (2..=count).filter(|n| *n <= 11 || n % 100 == 0).count()
}

#[test]
fn two_hundred_sigterms_capture_once_and_log_a_bounded_number_of_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let (forensics, cap) = install_with_capture();
    let signal = forensics.signal();

    // 200 SIGTERMs from one `sh` (builtin kill): 100, then (once we saw the first, so that
    // coalescing cannot swallow them all) 100 more. The wait for `go` is bounded (~10 s).
    let mut storm = Command::new("sh")
        .args([
            "-c",
            r#"burst() { i=0; while [ $i -lt 100 ]; do kill -TERM "$1"; i=$((i+1)); done; }
               burst "$1"
               n=0; while [ ! -e "$2" ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done
               burst "$1""#,
            "sh",
            &std::process::id().to_string(),
            go.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let ctx = signal.wait_timeout(LOOSE).expect("context");
    std::fs::write(&go, b"").unwrap();
    let sh_pid = storm.id();
    assert_eq!(ctx.sender.as_ref().map(|s| s.pid), Some(sh_pid));
    assert!(storm.wait().unwrap().success());

    // Every signal sent has been delivered to the self-pipe; let the listener drain it.
    let settled = wait_until(LOOSE, || {
        let count = signal.signal_count();
        count >= 2 && lines_with(&cap.text(), "repeated signal").len() == logged_repeats(count)
    });
    std::thread::sleep(Duration::from_millis(200));
    let count = signal.signal_count();
    let text = cap.text();
    assert!(settled, "count {count}: {text}");
    assert!((2..=200).contains(&count), "{count}");
    assert_eq!(lines_with(&text, "Shutdown context").len(), 1, "{text}");
    let repeats = lines_with(&text, "repeated signal");
    assert_eq!(
        repeats.len(),
        logged_repeats(count),
        "count {count}: {text}"
    );
    assert!(repeats.len() <= 10 + 2, "{text}");
    // The repeats are read after the first signal's capture and event; on a loaded machine
    // `sh` may have sent its last burst and been reaped by then, and the line then says, truly,
    // that its name is unknown (the pid still comes from the kernel).
    let named = format!("repeated signal SIGTERM #2 from pid {sh_pid} (sh) at +");
    let gone = format!("repeated signal SIGTERM #2 from pid {sh_pid} (unknown) at +");
    assert!(
        repeats[0].contains(&named) || repeats[0].contains(&gone),
        "{text}"
    );
}
