//! The usual sender under a supervisor is the parent (systemd is pid 1 and the parent of its
//! services; so are supervisord and an init that forwards signals). The helper reads that
//! sender through the parent's `stat` it keeps open: the context must name it all the same.
//!
//! This checks the outcome only (it would pass by path too); that the parent's open file is
//! what is read is checked in `ContextCapturer`'s unit tests, by swapping the file under it.
//!
//! The receiver is this test binary run again (role `receiver`): it installs the helper,
//! says `ready`, and prints what the context says of the sender; this test is its parent and
//! sends the SIGTERM itself.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use shutdown_forensics::Forensics;
use support::{comm, rerun_as};

mod support;

const ROLE_VAR: &str = "SF_FROM_PARENT_ROLE";

#[test]
fn a_sigterm_from_the_parent_names_the_parent() {
    let mut child = rerun_as("receiver")
        .env(ROLE_VAR, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| -> String {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("no {what} line: {e}"));
            if line.starts_with(what) {
                return line;
            }
        }
    };
    next("ready");
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let line = next("sender ");
    assert!(child.wait().unwrap().success(), "{line}");
    let me = std::process::id();
    assert_eq!(
        line,
        format!(
            "sender pid={me} name={} ppid={} cause=kill parent_pid={me}",
            comm(me),
            std::os::unix::process::parent_id()
        )
    );
}

/// Run only by the test above.
#[test]
#[ignore = "receiver process for a_sigterm_from_the_parent_names_the_parent"]
fn receiver() {
    if std::env::var_os(ROLE_VAR).is_none() {
        return;
    }
    let forensics = Forensics::builder().install().expect("install");
    println!("ready");
    let ctx = forensics
        .signal()
        .wait_timeout(Duration::from_secs(20))
        .expect("the SIGTERM came");
    let sender = ctx.sender.as_ref().expect("a sender");
    println!(
        "sender pid={} name={} ppid={} cause={} parent_pid={}",
        sender.pid,
        sender.name.as_deref().unwrap_or("?"),
        sender
            .ppid
            .map_or_else(|| "?".to_owned(), |p| p.to_string()),
        sender.cause.as_str(),
        ctx.parent.pid
    );
}
