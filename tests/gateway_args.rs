//! The gateway example's command line as a newcomer meets it: `--help` is an answer, not an
//! error; a mistyped flag is named as unknown (with the flag it probably meant) instead of
//! being taken for a flag that needs a value; `--journald` where no journal listens names the
//! socket it could not reach. Each runs the built example binary in an empty directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod gateway_support;
use gateway_support::gateway_bin;

/// The socket `tracing-journald` sends to (its `JOURNALD_PATH`).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Runs the gateway with `args` in `dir`; kills it if it is still running after a minute (a
/// command line it should have refused would start the service).
fn gateway(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(gateway_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SHUTDOWN_KILL_DEADLINE_SECS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the gateway");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Nothing was started: the directory the gateway ran in is still empty (no `logs/`, no
/// `state/`).
fn assert_nothing_created(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the gateway created {left:?}");
}

#[test]
fn help_exits_0_and_prints_every_flag_on_stdout() {
    for flag in ["--help", "-h"] {
        let dir = tempfile::tempdir().unwrap();
        let out = gateway(dir.path(), &[flag]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{flag}: {stdout}{stderr}");
        assert!(stdout.starts_with("gateway: "), "{flag}: {stdout}");
        assert!(stdout.contains("usage: gateway"), "{flag}: {stdout}");
        for known in [
            "--log-dir DIR",
            "--state-dir DIR",
            "--port N",
            "--adapters",
            "--sessions N",
            "--drain-secs S",
            "--drain-timeout S",
            "--self-signal-after S",
            "--wait",
            "--escalate-after N",
            "--kill-deadline S",
            "--kill-after",
            "SHUTDOWN_KILL_DEADLINE_SECS",
            "--journald",
            "--extend-timeout",
            "--extend-ceiling",
            "--slow-upload",
            "--help",
        ] {
            assert!(stdout.contains(known), "{flag}: no {known} in\n{stdout}");
        }
        assert_eq!(stderr, "", "{flag}");
        assert_nothing_created(dir.path());
    }
}

#[test]
fn a_mistyped_flag_is_unknown_and_the_closest_flag_is_named() {
    for (args, unknown, meant) in [
        (&["--slow-uplaod"][..], "--slow-uplaod", "--slow-upload"),
        (
            &["--wait", "--slow-uplaod"][..],
            "--slow-uplaod",
            "--slow-upload",
        ),
        // Before its "value" is taken: `--wait` stays a flag of its own.
        (
            &["--drain-timout", "--wait"][..],
            "--drain-timout",
            "--drain-timeout",
        ),
        (&["--prot", "8080"][..], "--prot", "--port"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = gateway(dir.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("gateway: unknown flag {unknown}")),
            "{args:?}: {stderr}"
        );
        assert!(
            first.contains(&format!("did you mean {meant}?")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("needs a value"), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "points to the help: {stderr}");
        assert_nothing_created(dir.path());
    }

    // Nothing close: no guess.
    let dir = tempfile::tempdir().unwrap();
    let out = gateway(dir.path(), &["--frobnicate-everything"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("gateway: unknown flag --frobnicate-everything"),
        "{stderr}"
    );
    assert!(!stderr.contains("did you mean"), "{stderr}");

    // A word that is not a flag at all.
    let out = gateway(dir.path(), &["wait"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("gateway: unexpected argument wait (did you mean --wait?)"),
        "{stderr}"
    );
}

#[test]
fn a_known_flag_without_its_value_still_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = gateway(dir.path(), &["--wait", "--port"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("gateway: --port needs a value"),
        "{stderr}"
    );
    assert_nothing_created(dir.path());
}

#[test]
fn journald_without_a_journal_names_the_missing_socket() {
    if Path::new(JOURNAL_SOCKET).exists() {
        println!("SKIPPED: {JOURNAL_SOCKET} exists here; the test needs a machine without one");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = gateway(dir.path(), &["--journald", "--wait"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("gateway: --journald: no systemd journal at "),
        "{stderr}"
    );
    assert!(stderr.contains(JOURNAL_SOCKET), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    // It gave up before serving or creating anything.
    assert!(!stderr.contains("gateway started"), "{stderr}");
    assert_nothing_created(dir.path());
}
