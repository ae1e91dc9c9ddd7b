//! `write_private_file` (the report, the gateway's trace) replaces a file by renaming a synced
//! temporary over it, then syncs the directory: without that, a crash right after the rename
//! can lose the new entry. A crash cannot be staged here, so the system calls of a real write
//! are traced with strace(1) and their order is checked: the file synced, renamed over the
//! target, then the directory opened and synced.

use std::path::Path;
use std::process::Command;

#[test]
fn the_directory_is_synced_after_the_rename() {
    if Command::new("strace").arg("-V").output().is_err() {
        // `.ci/run` installs strace; elsewhere say why nothing was proven.
        eprintln!("SKIPPED: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("report.json");
    let trace = dir.path().join("strace.out");
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,rename,renameat,renameat2,fsync,fdatasync,close",
            "-o",
        ])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "role_write_private_file",
            "--ignored",
            "--nocapture",
        ])
        .env("PRIVATE_FILE_TARGET", &target)
        .output()
        .expect("run strace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "{\"ok\":true}");
    let calls = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let rename = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains(&quoted(&target)) && l.ends_with("= 0"))
        .unwrap_or_else(|| panic!("no rename onto the target:\n{calls}"));
    // The temporary file was synced before it was renamed.
    assert!(
        lines[..rename]
            .iter()
            .any(|l| l.contains("fsync(") || l.contains("fdatasync(")),
        "no file sync before the rename:\n{calls}"
    );
    // After it: the directory opened, then that descriptor synced.
    let (open_at, fd) = lines[rename..]
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let opened =
                l.contains("openat(") && l.contains(&format!("{}\"", dir.path().display()));
            let fd = l.rsplit("= ").next()?.trim().parse::<i32>().ok()?;
            opened.then_some((rename + i, fd))
        })
        .unwrap_or_else(|| panic!("the directory is not opened after the rename:\n{calls}"));
    assert!(
        lines[open_at..]
            .iter()
            .any(|l| l.contains(&format!("fsync({fd})")) && l.ends_with("= 0")),
        "the directory (fd {fd}) is not synced after the rename:\n{calls}"
    );
}

#[test]
#[ignore = "a role: run under strace by the_directory_is_synced_after_the_rename"]
fn role_write_private_file() {
    let target = std::env::var_os("PRIVATE_FILE_TARGET").expect("PRIVATE_FILE_TARGET");
    shutdown_forensics::report::write_private_file(Path::new(&target), b"{\"ok\":true}").unwrap();
}
