//! The shutdown context: seed parity and the weaknesses of the reference that it beats.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shutdown_forensics::context::{
    signal_name, signal_name_or_unknown, signal_number, ContextOptions, ShutdownContext,
    SignalCause, SignalSender,
};

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---- seed: _signal_name -------------------------------------------------------------------

#[test]
fn known_signals_resolve_to_names() {
    assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    assert_eq!(signal_name(libc::SIGINT), "SIGINT");
    for (num, name) in [
        (1, "SIGHUP"),
        (3, "SIGQUIT"),
        (9, "SIGKILL"),
        (10, "SIGUSR1"),
        (31, "SIGSYS"),
    ] {
        assert_eq!(signal_name(num), name);
    }
}

#[test]
fn unknown_int_returns_signal_num_token() {
    assert_eq!(signal_name(9999), "signal#9999");
}

#[test]
fn none_returns_unknown() {
    assert_eq!(signal_name_or_unknown(None), "UNKNOWN");
}

#[test]
fn names_are_accepted_back() {
    // The seed's "non-integer falls back to str": here a name is parsed, not passed through.
    assert_eq!(
        signal_number("SIGTERM").map(signal_name).as_deref(),
        Some("SIGTERM")
    );
}

// ---- seed: snapshot_shutdown_context ------------------------------------------------------

#[test]
fn includes_self_pid_and_signal() {
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    assert_eq!(ctx.pid, std::process::id());
    assert_eq!(ctx.process.pid, std::process::id());
    assert_eq!(ctx.signal, "SIGTERM");
    assert_eq!(ctx.signal_num, Some(libc::SIGTERM));
}

#[test]
fn handles_none_signal() {
    let ctx = ShutdownContext::capture(None);
    assert_eq!(ctx.signal, "UNKNOWN");
    assert_eq!(ctx.signal_num, None);
}

#[test]
fn includes_timestamps() {
    let before = now_s();
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    let after = now_s();
    assert!(
        before <= ctx.ts && ctx.ts <= after,
        "{before} {} {after}",
        ctx.ts
    );
    assert!(ctx.ts_monotonic > 0.0);
}

#[test]
fn includes_parent_summary_on_linux() {
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    assert_eq!(ctx.ppid, std::os::unix::process::parent_id());
    assert_eq!(ctx.parent.pid, ctx.ppid);
    assert!(ctx.parent.name.is_some());
    assert_eq!(ctx.process.start_time.is_some(), cfg!(target_os = "linux"));
    assert!(ctx
        .process_age_s
        .is_some_and(|a| (0.0..86_400.0 * 365.0).contains(&a)));
}

#[test]
fn completes_quickly() {
    // A loose sanity bound like the seed's; speed is measured in benches/context.rs.
    let start = Instant::now();
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(ctx.capture_us < 500_000);
}

#[test]
fn a_prepared_capturer_agrees_with_a_fresh_capture() {
    let capturer = shutdown_forensics::context::ContextCapturer::new(ContextOptions::default());
    let (a, b) = (
        capturer.capture(Some(15), None),
        ShutdownContext::capture(Some(15)),
    );
    assert_eq!(a.process.start_time, b.process.start_time);
    assert_eq!(a.process.name, b.process.name);
    assert_eq!(a.process.uid, b.process.uid);
    assert_eq!(a.ppid, b.ppid);
    assert_eq!(a.parent, b.parent);
    assert_eq!(a.supervisor, b.supervisor);
    assert_eq!(a.under_systemd, b.under_systemd);
    assert!(a.process.state.is_some());
}

#[test]
fn command_lines_are_off_by_default() {
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    assert_eq!(ctx.parent.cmdline, None);
    assert_eq!(ctx.process.cmdline, None);
    assert!(!ctx.to_log_line().contains("cmdline"));
    assert!(!ctx.to_json().contains("--test-threads"));
}

#[test]
fn command_lines_when_asked_are_truncated() {
    let ctx =
        ShutdownContext::capture_with(&ContextOptions::default().with_cmdline(true), Some(15));
    let own = ctx.process.cmdline.clone().expect("own cmdline");
    assert!(own.chars().count() <= 300);
    assert!(ctx.parent.cmdline.is_some());
    // The seed's formatter test: parent_cmdline is there (last) when asked for.
    let line = ctx.to_log_line();
    assert!(line.contains("parent_cmdline="), "{line}");
}

// ---- formatters -----------------------------------------------------------------------------

#[test]
fn format_includes_signal_and_parent_in_order() {
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    let line = ctx.to_log_line();
    assert!(line.starts_with("signal=SIGTERM "), "{line}");
    let keys: Vec<&str> = line
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    let pos = |k: &str| {
        keys.iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{k} missing in {line}"))
    };
    assert!(pos("signal") < pos("cause"));
    assert!(pos("cause") < pos("under_systemd"));
    assert!(pos("under_systemd") < pos("parent_pid"));
    assert!(pos("parent_pid") < pos("parent_name"));
    assert!(line.contains(&format!("parent_pid={}", ctx.ppid)));
    assert_eq!(ctx.to_string(), line);
}

#[test]
fn the_ten_fixed_fields_are_always_there() {
    let mut ctx = ShutdownContext::capture(None);
    ctx.loadavg_1m = None;
    ctx.systemd_unit = None;
    let line = ctx.to_log_line();
    let keys: Vec<&str> = line
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        keys[..10],
        [
            "signal",
            "sender_pid",
            "sender_name",
            "sender_uid",
            "cause",
            "under_systemd",
            "unit",
            "parent_pid",
            "parent_name",
            "loadavg_1m"
        ],
        "{line}"
    );
    assert!(line.starts_with("signal=UNKNOWN sender_pid=unknown sender_name=unknown sender_uid=unknown cause=unknown "), "{line}");
    assert!(
        line.contains(" unit=none ") && line.contains(" loadavg_1m=unknown "),
        "{line}"
    );
}

#[test]
fn json_round_trips() {
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    let v: serde_json::Value = serde_json::from_str(&ctx.to_json()).unwrap();
    assert_eq!(v["pid"], std::process::id());
    assert_eq!(v["signal"], "SIGTERM");
    assert_eq!(v["self"]["pid"], std::process::id());
    let back: ShutdownContext = serde_json::from_str(&ctx.to_json()).unwrap();
    assert_eq!(back.pid, ctx.pid);
}

#[test]
fn json_stays_valid_with_odd_values() {
    // The seed's "unserialisable values": here the types are fixed, so feed it what /proc can:
    // non-finite numbers and names that are not valid text.
    let mut ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    ctx.loadavg_1m = Some(f64::NAN);
    ctx.parent.name = Some("bad\u{fffd}\u{0}\n\"name".into());
    let v: serde_json::Value = serde_json::from_str(&ctx.to_json()).unwrap();
    assert!(v["loadavg_1m"].is_null());
    assert_eq!(v["signal"], "SIGTERM");
}

// ---- weakness 1: the real sender ------------------------------------------------------------

#[test]
fn sender_is_read_from_proc_while_alive() {
    let mut child = Command::new("sleep").arg("5").spawn().unwrap();
    let s = SignalSender::from_siginfo(child.id() as i32, 1000, libc::SI_USER);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s.name.as_deref(), Some("sleep"));
    assert_eq!(s.ppid, Some(std::process::id()));
    assert_eq!(s.cause, SignalCause::Kill);
    assert_eq!(s.uid, 1000);
}

#[test]
fn exited_sender_yields_what_is_left() {
    // Reaped: nothing is left but pid and uid.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let gone = SignalSender::from_siginfo(pid, 0, libc::SI_USER);
    assert_eq!(gone.name, None);
    assert_eq!(gone.display_name(), "unknown");
    // Exited but not reaped (a zombie): the name is still there.
    let zombie = Command::new("true").stdout(Stdio::null()).spawn().unwrap();
    let zpid = zombie.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = SignalSender::from_siginfo(zpid as i32, 0, libc::SI_USER);
    while s.state != Some('Z') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        s = SignalSender::from_siginfo(zpid as i32, 0, libc::SI_USER);
    }
    assert_eq!(s.state, Some('Z'));
    assert_eq!(s.name.as_deref(), Some("true"));
    drop(zombie); // std does not reap on drop; reap explicitly
    unsafe { libc::waitpid(zpid as i32, std::ptr::null_mut(), 0) };
}

#[test]
fn pid_zero_is_outside_our_namespace_never_self() {
    let s = SignalSender::from_siginfo(0, 0, libc::SI_USER);
    assert!(s.is_outside());
    assert_eq!(s.name, None);
    let ctx = ShutdownContext::capture_with_sender(&ContextOptions::default(), Some(15), Some(s));
    let line = ctx.to_log_line();
    assert!(
        line.contains("sender_pid=0 sender_name=outside-pidns sender_uid=0 cause=kill"),
        "{line}"
    );
}

/// A copy of `sleep` whose file name (and so its `comm`) tries to forge a log line.
fn hostile_child(dir: &Path) -> std::process::Child {
    let exe = dir.join("x\nERROR forged");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    crate::support::retry_text_busy(|| Command::new(&exe).arg("5").spawn()).unwrap()
}

#[test]
fn forged_process_name_cannot_break_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = hostile_child(dir.path());
    let s = SignalSender::from_siginfo(child.id() as i32, 0, libc::SI_USER);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(s.name.as_deref(), Some("x\nERROR forged"));
    let ctx = ShutdownContext::capture_with_sender(&ContextOptions::default(), Some(15), Some(s));
    let line = ctx.to_log_line();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains(r#"sender_name="x\nERROR forged""#), "{line}");

    // The tracing event, through fmt, is one line too.
    let cap = crate::support::Capture::default();
    tracing::subscriber::with_default(crate::support::subscriber(&cap), || ctx.log());
    let out = cap.text();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(" WARN Shutdown context signal=SIGTERM sender_pid="),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("ERROR")));
}

#[test]
fn log_event_has_fields_in_design_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".takeover.json"),
        format!(r#"{{"target_pid":{}}}"#, std::process::id()),
    )
    .unwrap();
    let opts = ContextOptions::default().with_marker_dir(dir.path());
    let me = std::process::id() as i32;
    let ctx = ShutdownContext::capture_with_sender(
        &opts,
        Some(15),
        Some(SignalSender::from_siginfo(me, 0, libc::SI_USER)),
    );
    let cap = crate::support::Capture::default();
    tracing::subscriber::with_default(crate::support::subscriber(&cap), || ctx.log());
    let out = cap.text();
    // A takeover marker that names us: a planned stop, so INFO (docs/operators.md).
    let expected_prefix = format!(
        " INFO Shutdown context signal=SIGTERM sender_pid={me} sender_name={} sender_uid=0 cause=kill under_systemd={} ",
        ctx.process.name.as_deref().unwrap(),
        ctx.under_systemd
    );
    assert!(
        out.starts_with(&expected_prefix),
        "{out}\n{expected_prefix}"
    );
    assert!(
        out.contains(&format!("parent_pid={} parent_name=", ctx.ppid)),
        "{out}"
    );
    assert!(out.contains("takeover_marker_present=self"), "{out}");
    // The event and to_log_line carry the same pairs; `loadavg_1m` is a number in the event
    // (`0.4` where the line has the kernel's `0.40`).
    let event_pairs = pairs_after(&out, "parent_pid");
    let line_pairs = pairs_after(&ctx.to_log_line(), "parent_pid");
    assert_eq!(event_pairs.len(), line_pairs.len(), "{out}");
    for (e, l) in event_pairs.iter().zip(&line_pairs) {
        match (e.strip_prefix("loadavg_1m="), l.strip_prefix("loadavg_1m=")) {
            (Some(a), Some(b)) if b != "unknown" => {
                assert_eq!(
                    a.parse::<f64>().unwrap(),
                    b.parse::<f64>().unwrap(),
                    "{out}"
                );
            }
            _ => assert_eq!(e, l, "{out}"),
        }
    }
}

/// The space-separated `key=value` words of `line` from `key` on.
fn pairs_after(line: &str, key: &str) -> Vec<String> {
    let line = line.trim_end();
    line[line.find(key).unwrap()..]
        .split(' ')
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_json_subscriber_gets_numbers_as_numbers_and_booleans_as_booleans() {
    let me = std::process::id();
    let mut ctx = ShutdownContext::capture_with_sender(
        &ContextOptions::default(),
        Some(15),
        Some(SignalSender::from_siginfo(me as i32, 0, libc::SI_USER)),
    );
    ctx.loadavg_1m = Some(0.4);
    ctx.parent.name = Some("my supervisor".to_owned());
    let cap = crate::support::Capture::default();
    let json = tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_writer(cap.clone())
        .finish();
    tracing::subscriber::with_default(json, || ctx.log());
    let event: serde_json::Value = serde_json::from_str(cap.text().trim()).unwrap();
    let f = &event["fields"];
    assert_eq!(f["message"], "Shutdown context");
    assert_eq!(f["signal"], "SIGTERM");
    assert_eq!(f["sender_pid"], serde_json::json!(me));
    assert_eq!(f["sender_uid"], 0);
    assert_eq!(f["parent_pid"], serde_json::json!(ctx.ppid));
    assert_eq!(f["loadavg_1m"], 0.4);
    assert_eq!(f["under_systemd"], ctx.under_systemd);
    assert_eq!(f["cause"], "kill");
    // A string that needs quotes in text is itself in JSON.
    assert_eq!(f["parent_name"], "my supervisor");

    // Facts that could not be had stay `unknown` (a string), as in the text line.
    ctx.sender = None;
    ctx.loadavg_1m = None;
    let cap = crate::support::Capture::default();
    let json = tracing_subscriber::fmt()
        .json()
        .without_time()
        .with_writer(cap.clone())
        .finish();
    tracing::subscriber::with_default(json, || ctx.log());
    let event: serde_json::Value = serde_json::from_str(cap.text().trim()).unwrap();
    assert_eq!(event["fields"]["sender_pid"], "unknown");
    assert_eq!(event["fields"]["loadavg_1m"], "unknown");

    // The text formatter's line is the one users grep: unchanged.
    let cap = crate::support::Capture::default();
    tracing::subscriber::with_default(crate::support::subscriber(&cap), || ctx.log());
    assert!(
        cap.text()
            .contains("sender_pid=unknown sender_name=unknown sender_uid=unknown cause=unknown "),
        "{}",
        cap.text()
    );
    assert!(
        cap.text().contains(" loadavg_1m=unknown "),
        "{}",
        cap.text()
    );
}
