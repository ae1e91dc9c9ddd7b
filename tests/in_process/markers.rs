//! Planned-stop and takeover markers as the context sees them: seed parity and the reference's
//! weaknesses (substring matching, unbounded reads, FIFOs) beaten.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use shutdown_forensics::context::markers::MarkerStatus;
use shutdown_forensics::context::{ContextOptions, ShutdownContext};

// ---- seed: markers -------------------------------------------------------------------------

fn capture_with_markers(dir: &Path) -> ShutdownContext {
    ShutdownContext::capture_with(
        &ContextOptions::default().with_marker_dir(dir),
        Some(libc::SIGTERM),
    )
}

#[test]
fn detects_takeover_marker_for_self() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"{{"target_pid": {}, "replacer_pid": 99999}}"#,
        std::process::id()
    );
    std::fs::write(dir.path().join(".takeover.json"), body).unwrap();
    let ctx = capture_with_markers(dir.path());
    let m = ctx.takeover_marker.as_ref().expect("marker");
    assert!(m.for_self);
    assert!(ctx.is_planned());
    assert!(ctx.to_log_line().contains("takeover_marker_present=self"));
}

#[test]
fn detects_takeover_marker_for_other() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".takeover.json"),
        r#"{"target_pid": 1, "replacer_pid": 99999}"#,
    )
    .unwrap();
    let ctx = capture_with_markers(dir.path());
    assert!(!ctx.takeover_marker.as_ref().unwrap().for_self);
    assert!(!ctx.is_planned());
    assert!(ctx.to_log_line().contains("takeover_marker_present=other"));
}

#[test]
fn detects_planned_stop_marker() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".planned-stop.json"),
        format!(r#"{{"target_pid": {}}}"#, std::process::id()),
    )
    .unwrap();
    let ctx = capture_with_markers(dir.path());
    assert!(ctx.planned_stop_marker.as_ref().unwrap().for_self);
    assert!(ctx
        .to_log_line()
        .contains("planned_stop_marker_present=yes"));
}

#[test]
fn marker_names_are_configurable_and_absent_markers_are_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stop.json"),
        format!(r#"{{"target_pid":{}}}"#, std::process::id()),
    )
    .unwrap();
    let opts = ContextOptions::default()
        .with_marker_dir(dir.path())
        .with_marker_names("t.json", "stop.json");
    let ctx = ShutdownContext::capture_with(&opts, None);
    assert!(ctx.takeover_marker.is_none());
    assert!(ctx.planned_stop_marker.unwrap().for_self);
}

// ---- weakness 2: markers are parsed, bounded and never hang -------------------------------

#[test]
fn compact_json_and_pid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    std::fs::write(
        dir.path().join(".takeover.json"),
        format!(r#"{{"target_pid":{pid}}}"#),
    )
    .unwrap();
    // A pid that is a prefix of ours never matches (the reference matched by substring).
    std::fs::write(
        dir.path().join(".planned-stop.json"),
        format!(r#"{{"target_pid": {}}}"#, pid / 10),
    )
    .unwrap();
    let ctx = capture_with_markers(dir.path());
    assert!(ctx.takeover_marker.unwrap().for_self);
    let planned = ctx.planned_stop_marker.unwrap();
    assert_eq!(planned.status, MarkerStatus::Valid);
    assert!(!planned.for_self);
}

#[test]
fn recycled_pid_with_other_start_time_is_not_us() {
    let dir = tempfile::tempdir().unwrap();
    let ours = ShutdownContext::capture(None).process.start_time.unwrap();
    let body = format!(
        r#"{{"target_pid":{},"target_start_time":{}}}"#,
        std::process::id(),
        ours + 1
    );
    std::fs::write(dir.path().join(".takeover.json"), body).unwrap();
    assert!(
        !capture_with_markers(dir.path())
            .takeover_marker
            .unwrap()
            .for_self
    );
}

#[test]
fn huge_marker_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join(".takeover.json")).unwrap();
    f.set_len(1 << 30).unwrap(); // 1 GiB, sparse
    let start = Instant::now();
    let ctx = capture_with_markers(dir.path());
    assert!(start.elapsed() < Duration::from_millis(500));
    let m = ctx.takeover_marker.unwrap();
    assert_eq!(m.status, MarkerStatus::TooLarge);
    assert!(!m.for_self);
    assert!(m.raw.is_empty());
}

#[test]
fn fifo_marker_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".planned-stop.json");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let start = Instant::now();
    let ctx = capture_with_markers(dir.path());
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(
        ctx.planned_stop_marker.unwrap().status,
        MarkerStatus::NotAFile
    );
}

#[test]
fn malformed_marker_is_reported_as_malformed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".takeover.json"), b"target_pid=123 {").unwrap();
    let ctx = capture_with_markers(dir.path());
    assert_eq!(
        ctx.takeover_marker.as_ref().unwrap().status,
        MarkerStatus::Malformed
    );
    assert!(ctx
        .to_log_line()
        .contains("takeover_marker_present=malformed"));
}

#[test]
fn unreadable_marker_is_reported() {
    if unsafe { libc::geteuid() } == 0 {
        // root reads everything; a directory stands in for an unreadable marker.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".takeover.json")).unwrap();
        let m = capture_with_markers(dir.path()).takeover_marker.unwrap();
        assert_ne!(m.status, MarkerStatus::Valid);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(".takeover.json");
    std::fs::write(&p, "{}").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    assert_eq!(
        capture_with_markers(dir.path())
            .takeover_marker
            .unwrap()
            .status,
        MarkerStatus::Unreadable
    );
}
