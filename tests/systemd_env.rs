//! The public systemd entry points with the environment they read (`INVOCATION_ID`, `PATH`,
//! `NOTIFY_SOCKET`). The environment is process-wide, so every test here holds `ENV`.
//!
//! Real or fake: no systemd; the environment is set by hand (and `systemctl` faked on `PATH`)
//! to reach the `None`/undeterminable paths a real unit never shows. Under a real systemd:
//! `tests/systemd_real.rs`.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use std::time::Duration;

use shutdown_forensics::systemd::{
    check_systemd_timing_alignment, check_systemd_timing_alignment_async, DEFAULT_STOP_HEADROOM,
};

static ENV: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `/proc/self/cgroup` names a service of ours (deepest `.service`/`.scope` component is
/// a `.service` other than `user@N.service`), i.e. whether the check can find a unit here.
fn runs_in_a_service() -> bool {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|x| x.1))
        })
        .unwrap_or("");
    path.rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .is_some_and(|c| c.ends_with(".service") && !c.starts_with("user@"))
}

#[test]
fn seed_returns_none_when_not_under_systemd() {
    let _guard = lock();
    env::remove_var("INVOCATION_ID");
    assert_eq!(
        check_systemd_timing_alignment(Duration::from_secs(180)),
        None
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let result = runtime.block_on(check_systemd_timing_alignment_async(
        Duration::from_secs(180),
        DEFAULT_STOP_HEADROOM,
    ));
    assert_eq!(result, None);
}

#[test]
fn seed_undeterminable_unit_with_invocation_id_does_not_panic() {
    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("argv.log");
    let fake = dir.path().join("systemctl");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nprintf 'TimeoutStopUSec=1min 30s\\nLoadState=loaded\\n'\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();

    let old_path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.path().to_path_buf()];
    paths.extend(env::split_paths(&old_path));
    env::set_var("PATH", env::join_paths(paths).unwrap());
    env::set_var("INVOCATION_ID", "abc");

    let result = check_systemd_timing_alignment(Duration::from_secs(180));

    env::set_var("PATH", &old_path);
    env::remove_var("INVOCATION_ID");

    if runs_in_a_service() {
        // Under a real service the fake systemctl on PATH answers for it.
        let result = result.expect("a unit and an answer");
        assert_eq!(result.timeout_stop, Duration::from_secs(90));
        assert!(result.mismatch);
        assert!(fs::read_to_string(&log).unwrap().contains(" -- "));
    } else {
        // No service in our cgroup (`0::/`, a session scope): None, and systemctl never ran.
        assert_eq!(result, None);
        assert!(!log.exists(), "systemctl was run without a unit");
    }
}

#[cfg(feature = "systemd")]
#[test]
fn notifier_from_env_reads_notify_socket() {
    use shutdown_forensics::systemd::Notifier;
    use std::os::unix::net::UnixDatagram;

    let _guard = lock();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    env::set_var("NOTIFY_SOCKET", &path);
    let notifier = Notifier::from_env();
    env::remove_var("NOTIFY_SOCKET");
    let notifier = notifier.expect("NOTIFY_SOCKET is set");
    notifier.stopping().unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");

    assert_eq!(Notifier::from_env(), None);
    env::set_var("NOTIFY_SOCKET", "");
    assert_eq!(Notifier::from_env(), None);
    env::remove_var("NOTIFY_SOCKET");
}
