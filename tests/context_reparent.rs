//! A capturer made at install keeps its parent's `/proc/<pid>/stat` open; once that parent
//! exits and the process is re-parented, the capture must name the new parent, not the old one.
//!
//! The re-parented process is this test binary run again (role `reparented_child`), started
//! by a `sh` that exits as soon as the child has made its capturer. This test process is a
//! child subreaper, so the orphan is re-parented to it: a parent whose pid and name are known.
//! The file holds this one test, so the subreaper setting adopts no other test's orphans.
#![cfg(target_os = "linux")]

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use shutdown_forensics::context::{ContextCapturer, ContextOptions};
use support::comm;

mod support;

const OUT_VAR: &str = "SF_REPARENT_OUT";

#[test]
fn a_capture_after_reparenting_names_the_new_parent() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes this process's own attribute.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("child.out");
    // The shell starts the child in the background and exits once the child has made its
    // capturer (its first line), orphaning it. The shell is reaped only at the end: until
    // then it is a zombie whose `stat` the child's open file can still read.
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(
            r#""$0" --exact reparented_child --ignored --nocapture >"$1" 2>&1 &
               i=0; until grep -q '^made ' "$1"; do i=$((i+1)); [ $i -gt 1000 ] && exit 1; sleep 0.01 2>/dev/null || sleep 1; done"#,
        )
        .arg(std::env::current_exe().unwrap())
        .arg(&out)
        .env(OUT_VAR, "1")
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline && !text.contains("\nafter ") {
        std::thread::sleep(Duration::from_millis(10));
        text = fs::read_to_string(&out).unwrap_or_default();
    }
    let field = |line: &str, key: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.split(' ').find_map(|kv| kv.strip_prefix(key)))
            .unwrap_or_else(|| panic!("no {key} in the {line:?} line of {text}"))
            .to_owned()
    };
    let child: i32 = field("made ", "pid=").parse().unwrap();
    // Reap the child (ours now, as the subreaper) whatever the assertions say.
    let mut wstatus = 0;
    // SAFETY: waitpid on a child of this process, with a valid status pointer.
    let reaped = unsafe { libc::waitpid(child, &mut wstatus, 0) };
    assert_eq!(reaped, child, "the child was re-parented to this test");
    assert!(
        libc::WIFEXITED(wstatus) && libc::WEXITSTATUS(wstatus) == 0,
        "{text}"
    );
    assert!(shell.wait().unwrap().success(), "{text}");

    // Before: the shell was the parent.
    assert_eq!(field("made ", "parent_name="), "sh", "{text}");
    assert_eq!(field("made ", "ppid="), shell.id().to_string(), "{text}");
    // After: this process, by pid and by name; not the (zombie) shell the open file is for.
    let me = std::process::id();
    assert_eq!(field("after ", "ppid="), me.to_string(), "{text}");
    assert_eq!(field("after ", "parent_pid="), me.to_string(), "{text}");
    assert_eq!(field("after ", "parent_name="), comm(me), "{text}");
}

/// Run only by the test above: makes a capturer, waits to be orphaned, captures again.
#[test]
#[ignore = "child process for a_capture_after_reparenting_names_the_new_parent"]
fn reparented_child() {
    if std::env::var_os(OUT_VAR).is_none() {
        return;
    }
    let capturer = ContextCapturer::new(ContextOptions::default());
    let before = capturer.capture(Some(libc::SIGTERM), None);
    println!(
        "made pid={} ppid={} parent_name={}",
        std::process::id(),
        before.ppid,
        before.parent.name.as_deref().unwrap_or("?")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::process::parent_id() == before.ppid && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = capturer.capture(Some(libc::SIGTERM), None);
    println!(
        "after ppid={} parent_pid={} parent_name={}",
        after.ppid,
        after.parent.pid,
        after.parent.name.as_deref().unwrap_or("?")
    );
}
