//! When the process that spawned the diagnostic exits first (the usual end of a shutdown),
//! its reaper thread is gone; the child's own watchdog must still bound it.
//!
//! The spawning process is this test binary run again, so the test's own environment is
//! never changed: the helper gets its settings through its child environment.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use shutdown_forensics::diagnostic::{spawn_diagnostic_with, DiagnosticOptions};
use support::rerun_as;

mod support;

const LOG_VAR: &str = "SF_DIAG_ORPHAN_LOG";
const BIN_VAR: &str = "SF_DIAG_ORPHAN_BIN";

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn watchdog_kills_the_group_when_the_spawner_has_exited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let ps = bin.join("ps");
    let pid_file = dir.path().join("ps.pid");
    let body = format!(
        "#!/bin/sh\necho $$ >'{}'\nexec sleep 60\n",
        pid_file.display()
    );
    fs::write(&ps, body).expect("write ps");
    fs::set_permissions(&ps, fs::Permissions::from_mode(0o755)).expect("chmod");
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("this test needs sleep(1)");
    symlink(sleep, bin.join("sleep")).expect("symlink");
    let log = dir.path().join("diag.log");

    let helper = rerun_as("helper_spawns_and_exits")
        .env(LOG_VAR, &log)
        .env(BIN_VAR, &bin)
        .output()
        .expect("run helper");
    let stdout = String::from_utf8_lossy(&helper.stdout);
    assert!(helper.status.success(), "helper failed: {stdout}");
    let diag_pid: u32 = stdout
        .split("diagnostic pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .expect("helper printed the diagnostic pid");

    // Timeout 1 s, so the watchdog fires after 2 s; allow plenty on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut contents = String::new();
    while Instant::now() < deadline {
        contents = fs::read_to_string(&log).unwrap_or_default();
        if contents.contains("killed by its own 2s watchdog") && !alive(diag_pid) {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        contents.contains("killed by its own 2s watchdog"),
        "{contents}"
    );
    assert!(
        !alive(diag_pid),
        "diagnostic {diag_pid} outlived its watchdog"
    );
    let hung: u32 = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|pid| pid.trim().parse().ok())
        .expect("fake ps recorded its pid");
    assert!(!alive(hung), "hung ps {hung} outlived the watchdog");
}

/// Run only by the test above, in a separate process that exits right after spawning.
#[test]
#[ignore = "helper process for watchdog_kills_the_group_when_the_spawner_has_exited"]
fn helper_spawns_and_exits() {
    let (Some(log), Some(bin)) = (std::env::var_os(LOG_VAR), std::env::var_os(BIN_VAR)) else {
        return;
    };
    let diagnostic = spawn_diagnostic_with(
        &DiagnosticOptions::new(log)
            .with_timeout(Duration::from_secs(1))
            .with_search_path(bin),
    )
    .expect("spawn");
    println!("diagnostic pid {}", diagnostic.pid());
    // Exit without letting the reaper thread reach the timeout.
    std::process::exit(0);
}
