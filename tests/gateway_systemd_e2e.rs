//! The gateway as if systemd ran it: placed in a real `x.service` cgroup (systemd's
//! `name=systemd` hierarchy, which a root process can write here), with `INVOCATION_ID`, a real
//! `NOTIFY_SOCKET` bound by this test, and a fake `systemctl` on PATH (no systemd is booted
//! here) whose unit asks for too short a `TimeoutStopSec`.
//!
//! Real or fake: FAKE systemd. The real one is proven in `tests/systemd_real.rs` (READY, sender,
//! STOPPING/STATUS, EXTEND_TIMEOUT_USEC, SIGKILL, stale unit, journald). This test stays for
//! what a real systemd cannot be made to do: the exact order of every datagram the gateway sends
//! (READY=1 first, STOPPING=1 second, `STATUS=shutdown complete` last), read off a socket.

mod gateway_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_support::{gateway_bin, Gateway};

const HIERARCHY: &str = "/sys/fs/cgroup/systemd";

/// A service cgroup of our own, removed (once empty) on drop.
struct ServiceCgroup(PathBuf);

impl ServiceCgroup {
    fn create(name: &str) -> std::io::Result<Self> {
        let dir = Path::new(HIERARCHY).join("system.slice").join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for ServiceCgroup {
    fn drop(&mut self) {
        // The diagnostic child may still be finishing: wait (bounded) until the group is empty.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(self.0.join("cgroup.procs"))
            .is_ok_and(|p| !p.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn under_a_systemd_unit_the_stop_is_explained_and_a_stale_timeout_is_flagged() {
    let unit = format!("sf-e2e-{}.service", std::process::id());
    let cgroup = match ServiceCgroup::create(&unit) {
        Ok(c) => c,
        Err(e) => {
            // Needs root and systemd's v1 hierarchy mounted writable (as on this project's
            // machines, where CI runs as root). Say so loudly rather than pass silently.
            eprintln!("SKIPPED: cannot create a cgroup under {HIERARCHY}: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("systemctl.calls");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nprintf 'TimeoutStopUSec=10s\\nLoadState=loaded\\n'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read as systemd does, while the gateway runs: a unix datagram queue holds only
    // `net.unix.max_dgram_qlen` (often 10) messages, and the sender never blocks on it.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (received, done) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match notify.recv(&mut buf) {
                    Ok(n) => received
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) if done.load(std::sync::atomic::Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
        })
    };

    // The wrapper moves itself into the unit's cgroup, then becomes the gateway.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
        .arg(&cgroup.0)
        .arg(gateway_bin())
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .env("NOTIFY_SOCKET", &notify_path)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let mut gw = Gateway::start_with(
        dir.path(),
        &[
            "--self-signal-after",
            "0.5",
            "--drain-secs",
            "0.2",
            "--adapters",
            "slack",
        ],
        cmd,
    );
    let stale = gw.wait_for("Stale systemd unit detected", Duration::from_secs(20));
    let status = gw.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");

    // notify 2 + drain 30 + disconnect 5 + db_close 5 = 42 s budget, + 30 s headroom.
    assert!(
        stale.contains(&format!(
            "{unit} has TimeoutStopSec=10s but the shutdown budget needs >=72s"
        )),
        "{stale}"
    );
    assert!(
        stale.contains("TimeoutStopSec=72s"),
        "the fix to apply: {stale}"
    );
    let asked = std::fs::read_to_string(&calls).unwrap();
    assert!(
        asked.contains(&unit) && !asked.contains("--user"),
        "{asked}"
    );

    let log = gw.log_file_text();
    let ctx = log
        .lines()
        .find(|l| l.contains("Shutdown context"))
        .expect("context line");
    assert!(
        ctx.contains(&format!("under_systemd=true unit={unit} ")),
        "{ctx}"
    );
    assert!(ctx.contains("supervisor=systemd-system"), "{ctx}");

    done.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    let datagrams = received.lock().unwrap().clone();
    let pos = |needle: &str| {
        datagrams
            .iter()
            .position(|d| d.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {datagrams:?}"))
    };
    // Type=notify: READY=1 once serving, then STOPPING=1 first thing at the signal.
    assert_eq!(pos("READY=1"), 0, "{datagrams:?}");
    assert_eq!(pos("STOPPING=1"), 1, "{datagrams:?}");
    assert!(
        pos("STATUS=shutting down: drain") < pos("STATUS=shutting down: db_close"),
        "{datagrams:?}"
    );
    assert_eq!(
        datagrams.last().map(String::as_str),
        Some("STATUS=shutdown complete"),
        "{datagrams:?}"
    );
}
