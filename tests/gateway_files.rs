//! The gateway example's own files and streams (issue 12, defect 5 and the example's risks):
//! it never writes through a planted symlink, reports an unwritable log directory as an
//! error (it panicked in tracing-appender's `rolling::daily`), and a closed stderr does not
//! turn a clean stop into exit code 101.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

mod gateway_support;
use gateway_support::{gateway_bin, Gateway};

#[test]
fn the_trace_is_written_privately_never_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    for planted in [
        logs.join("shutdown-trace.json"),
        state.join("last-shutdown.json"),
        state.join("gateway.db"),
    ] {
        std::os::unix::fs::symlink(&victim, planted).unwrap();
    }
    let out = Command::new(gateway_bin())
        .arg("--log-dir")
        .arg(&logs)
        .arg("--state-dir")
        .arg(&state)
        .args(["--self-signal-after", "0.2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // The database refuses the link (SQLITE_OPEN_NOFOLLOW): the gateway fails, loudly.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gateway: "), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    std::fs::remove_file(state.join("gateway.db")).unwrap();

    let mut gw = Gateway::start(dir.path(), &["--self-signal-after", "0.2"]);
    let status = gw.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", gw.seen.join("\n"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    for written in [
        logs.join("shutdown-trace.json"),
        state.join("last-shutdown.json"),
    ] {
        let meta = std::fs::symlink_metadata(&written).unwrap();
        assert!(meta.file_type().is_file(), "{}", written.display());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            written.display()
        );
    }
    assert!(!std::fs::symlink_metadata(logs.join("shutdown-trace.json"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn an_unwritable_log_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A directory in which nobody, not even root, can create a file.
    let out = Command::new(gateway_bin())
        .args(["--log-dir", "/proc/self/fdinfo", "--state-dir"])
        .arg(dir.path().join("state"))
        .args(["--self-signal-after", "0.2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gateway: log directory /proc/self/fdinfo"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_closed_stderr_does_not_make_a_clean_stop_exit_101() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(gateway_bin())
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--self-signal-after", "0.5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its reader is gone at once: every write to stderr fails with EPIPE.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    // The logs still went to the file, context line included.
    let logs = std::fs::read_dir(dir.path().join("logs")).unwrap();
    let text: String = logs
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gateway.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(text.contains("Shutdown context"), "{text}");
    assert!(text.contains("shutdown complete"), "{text}");
}
