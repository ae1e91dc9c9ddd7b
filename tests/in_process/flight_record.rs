//! The flight record on disk: one JSON line per step, the verdict on the previous run,
//! tolerance of torn lines, bounded reads and bounded size across restarts.

use std::fs;
use std::path::Path;

use crate::support::{ms, setup, Capture};
use serde_json::{json, Value};
use shutdown_forensics::context::{ShutdownTrigger, SignalSender};
use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, ShutdownLayer};
use tracing::dispatcher::with_default;
use tracing_subscriber::layer::SubscriberExt;

/// The record's lines, without the heartbeats the watchdog writes at its own pace (each is
/// checked to be a well-formed `{"kind":"heartbeat","t":..}` line).
fn records(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .expect("read record")
        .lines()
        // Blank lines: a line that would cross a page of the file starts on the next one.
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("every line is one JSON object"))
        .filter(|r| {
            let beat = r["kind"] == "heartbeat";
            assert!(!beat || r["t"].as_f64().is_some(), "{r}");
            !beat
        })
        .collect()
}

fn kinds(path: &Path) -> Vec<String> {
    records(path)
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// One run: begin with a trigger, `notify` done, `drain` entered; finishes when `finish`.
fn run(path: &Path, finish: bool) {
    let record = FlightRecord::open(path).expect("open");
    let (dispatch, handle, _capture, clock) =
        setup(ShutdownLayer::builder().with_flight_record(record));
    with_default(&dispatch, || {
        let mut sender = SignalSender::from_raw(1, 0, 0);
        sender.name = Some("systemd".into());
        let trigger = ShutdownTrigger::new(clock.now())
            .with_signal(15)
            .with_sender(sender)
            .with_correlation_id("deploy-7");
        handle.begin_with(trigger);
        handle.record("context", json!({"signal": "SIGTERM"}));
        phase!("notify").in_scope(|| clock.advance(ms(100)));
        clock.advance(ms(2000));
        let drain = phase!("drain", active_at_start = 3);
        let _g = drain.enter();
        clock.advance(ms(87_850));
        handle.record("heartbeat", json!(1));
        if finish {
            drop(_g);
            drop(drain);
            handle.finish();
        } else {
            // A SIGKILL now would leave exactly what is on disk: nothing more is written.
            std::mem::forget(_g);
            std::mem::forget(drain);
        }
        handle.flush().expect("fdatasync");
    });
}

#[test]
fn a_completed_run_is_recorded_line_by_line_and_judged_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    run(&path, true);
    assert_eq!(
        kinds(&path),
        [
            "run",
            "begin",
            "note",
            "phase_start",
            "phase_end",
            "phase_start",
            "note",
            "phase_end",
            "complete"
        ]
    );
    let recs = records(&path);
    assert_eq!(recs[1]["trigger"]["signal_name"], "SIGTERM");
    assert_eq!(recs[1]["trigger"]["correlation_id"], "deploy-7");
    assert_eq!(recs[2]["note"], "context");
    assert_eq!(recs[7]["fields"], json!({"active_at_start": 3}));
    let verdict = FlightRecord::previous(&path).expect("read");
    assert!(
        matches!(verdict, PreviousShutdown::Clean { pid: Some(_), .. }),
        "{verdict:?}"
    );
    assert_eq!(verdict.message(), None);
}

#[test]
fn a_killed_run_names_the_phase_and_the_next_start_warns_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    // A kill leaves whole lines (one write(2) each); a torn last line is another story
    // (tests/flight_record_limits.rs).
    run(&path, false);
    let record = FlightRecord::open(&path).expect("reopen");
    let verdict = record.previous_shutdown().clone();
    let PreviousShutdown::Killed {
        phase,
        open_phases,
        trigger,
        ..
    } = &verdict
    else {
        panic!("expected Killed, got {verdict:?}");
    };
    assert_eq!(phase.as_deref(), Some("drain"));
    assert_eq!(open_phases, &["drain"]);
    assert_eq!(
        trigger.as_ref().and_then(|t| t.correlation_id.as_deref()),
        Some("deploy-7")
    );
    let capture = Capture::default();
    let fmt = tracing_subscriber::fmt::layer()
        .without_time()
        .with_ansi(false)
        .with_writer(capture.clone());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(fmt), || verdict.log());
    // The watchdog's heartbeat may or may not have stamped +89.95s on the manual clock: the
    // kill is then bounded (`killed between 87.85s and 88.85s`), else `87.85s or later`.
    let lines = capture.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let head = format!(
        " WARN shutdown: Previous shutdown did not complete: pid {} was killed during phase drain (entered +2.10s, last record +89.95s, killed ",
        std::process::id()
    );
    let tail = lines[0]
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{lines:?}"));
    let fields = format!(
        "into drain) previous_phase=\"drain\" previous_pid={} verdict=killed last_record_s=89.95",
        std::process::id()
    );
    assert!(
        [
            format!("between 87.85s and 88.85s {fields}"),
            format!("87.85s or later {fields}")
        ]
        .contains(&tail.to_owned()),
        "{lines:?}"
    );
    // The new run starts fresh; the old one is kept once as `.prev`.
    assert_eq!(kinds(&path), ["run"]);
    assert!(dir.path().join("flight.jsonl.prev").exists());
}

#[test]
fn a_run_that_never_began_a_shutdown_is_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    drop(FlightRecord::open(&path).expect("open"));
    let verdict = FlightRecord::previous(&path).expect("read");
    let me = Some(std::process::id());
    assert!(
        matches!(verdict, PreviousShutdown::NoShutdown { pid, .. } if pid == me),
        "{verdict:?}"
    );
    assert!(!verdict.is_clean());
}

#[test]
fn reading_is_bounded_and_size_stays_bounded_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    // 1 MiB of old junk before a valid run: only the last 64 KiB are read.
    let mut text = "x".repeat(1 << 20);
    text.push_str("\n{\"kind\":\"run\",\"pid\":5}\n{\"kind\":\"begin\",\"t\":0}\n");
    fs::write(&path, text).expect("write");
    let verdict = FlightRecord::previous(&path).expect("read");
    assert!(
        matches!(&verdict, PreviousShutdown::Killed { pid: Some(5), phase: None, open_phases, .. } if open_phases.is_empty()),
        "{verdict:?}"
    );
    for _ in 0..20 {
        run(&path, false);
    }
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let prev = dir.path().join("flight.jsonl.prev");
    assert!(
        size(&path) < 4096 && size(&prev) < 4096,
        "{} {}",
        size(&path),
        size(&prev)
    );
}

#[test]
fn missing_record_is_none_and_symlinks_are_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    assert_eq!(
        FlightRecord::previous(&path).expect("read"),
        PreviousShutdown::None
    );
    let target = dir.path().join("elsewhere");
    fs::write(&target, "keep").expect("write");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    assert!(FlightRecord::open_strict(&path).is_err());
    // The lenient open runs without a record rather than refuse to start.
    let record = FlightRecord::open(&path).expect("disabled, not refused");
    assert!(record
        .error()
        .is_some_and(|e| e.to_string().contains("symlink")));
    assert_eq!(fs::read_to_string(&target).expect("read"), "keep");
}

#[test]
fn every_checkpoint_lists_exactly_the_phases_the_lines_before_it_left_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    let record = FlightRecord::open(&path).expect("open");
    let (dispatch, handle, _capture, _clock) =
        setup(ShutdownLayer::builder().with_flight_record(record));
    handle.begin();
    // ~1.5 kB a note, within the per-string cap: a checkpoint every ~20 notes.
    let big = vec!["x".repeat(250); 6];
    std::thread::scope(|s| {
        for t in 0..4 {
            let (dispatch, handle, big) = (dispatch.clone(), handle.clone(), &big);
            s.spawn(move || {
                with_default(&dispatch, || {
                    for i in 0..150 {
                        if t % 2 == 0 {
                            phase!("step", n = i).in_scope(|| handle.record("n", json!(big)));
                        } else {
                            handle.record("n", json!(big));
                        }
                    }
                });
            });
        }
    });
    let mut open: Vec<u64> = Vec::new();
    let mut checkpoints = 0;
    for r in records(&path) {
        let id = r["id"].as_u64();
        match r["kind"].as_str() {
            Some("phase_start") => open.extend(id),
            Some("phase_end") => open.retain(|i| Some(*i) != id),
            Some("checkpoint") => {
                checkpoints += 1;
                let mut listed: Vec<u64> = (r["open"].as_array().into_iter().flatten())
                    .filter_map(|p| p["id"].as_u64())
                    .collect();
                listed.sort_unstable();
                let mut expected = open.clone();
                expected.sort_unstable();
                assert_eq!(listed, expected, "checkpoint {checkpoints}: {r}");
            }
            _ => {}
        }
    }
    assert!(checkpoints > 10, "{checkpoints}");
}

/// Runs `f` on a thread; `None` when it has not returned after 5 s (it hangs).
fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5)).ok()
}

#[test]
fn a_fifo_at_the_record_path_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    let c = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("no NUL");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let p = path.clone();
    let previous = within_5s(move || FlightRecord::previous(&p).is_err());
    assert_eq!(previous, Some(true), "previous() hung or accepted a FIFO");
    let opened = within_5s(move || FlightRecord::open_strict(&path).is_err());
    assert_eq!(opened, Some(true), "open() hung or accepted a FIFO");
}

#[test]
fn an_existing_record_is_narrowed_to_0600_and_so_is_its_prev_copy() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode() & 0o777).ok();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flight.jsonl");
    // Unreadable as a record: the file is kept (truncated) for the new run.
    fs::write(&path, "garbage\n").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(FlightRecord::open(&path).expect("open"));
    assert_eq!(mode(&path), Some(0o600));
    // A previous run: kept as `.prev`, which holds its context JSON too.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(FlightRecord::open(&path).expect("open"));
    assert_eq!(mode(&path), Some(0o600));
    assert_eq!(mode(&dir.path().join("flight.jsonl.prev")), Some(0o600));
}

#[test]
fn reading_the_previous_record_does_not_follow_a_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("elsewhere");
    fs::write(&target, "{\"kind\":\"run\",\"pid\":5}\n").expect("write");
    let path = dir.path().join("flight.jsonl");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let err = FlightRecord::previous(&path).expect_err("a symlink is refused");
    assert!(err.to_string().contains("symlink"), "{err}");
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks after boot.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn a_predecessor_still_running_is_not_judged() {
    // A takeover: the old instance is mid-drain when the new one opens the record.
    let mut old = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let text = format!(
        concat!(
            "{{\"kind\":\"run\",\"pid\":{pid},\"start_time\":{start}}}\n",
            "{{\"kind\":\"begin\",\"t\":0.0}}\n",
            "{{\"kind\":\"phase_start\",\"id\":0,\"phase\":\"drain\",\"t\":0.1}}\n"
        ),
        pid = old.id(),
        start = start_time(old.id())
    );
    std::fs::write(&path, &text).unwrap();
    let pid = old.id();
    assert!(
        matches!(FlightRecord::previous(&path).unwrap(), PreviousShutdown::StillRunning { pid: p, .. } if p == pid)
    );
    assert_eq!(FlightRecord::previous(&path).unwrap().message(), None);
    old.kill().unwrap();
    old.wait().unwrap();
    // Gone: now it was killed during drain.
    let verdict = FlightRecord::previous(&path).unwrap();
    assert!(
        matches!(&verdict, PreviousShutdown::Killed { phase: Some(p), .. } if p == "drain"),
        "{verdict:?}"
    );
    // A recycled pid (the same pid, another start time) is not the predecessor either.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let recycled = format!(
        "{{\"kind\":\"run\",\"pid\":{},\"start_time\":{}}}\n{{\"kind\":\"begin\",\"t\":0.0}}\n",
        other.id(),
        start_time(other.id()) + 1
    );
    std::fs::write(&path, recycled).unwrap();
    assert!(matches!(
        FlightRecord::previous(&path).unwrap(),
        PreviousShutdown::Killed { .. }
    ));
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn a_record_from_another_boot_is_never_still_running() {
    // The same pid and start time as a live process, but written before a reboot.
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let record = |boot: &str| {
        format!(
            "{{\"kind\":\"run\",\"pid\":{},\"start_time\":{},\"boot_id\":\"{boot}\"}}\n\
             {{\"kind\":\"begin\",\"t\":0.0}}\n",
            live.id(),
            start_time(live.id())
        )
    };
    let this_boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    fs::write(&path, record(this_boot.trim())).unwrap();
    assert!(matches!(
        FlightRecord::previous(&path).unwrap(),
        PreviousShutdown::StillRunning { .. }
    ));
    fs::write(&path, record("00000000-0000-0000-0000-000000000000")).unwrap();
    let verdict = FlightRecord::previous(&path).unwrap();
    assert!(
        matches!(verdict, PreviousShutdown::Killed { .. }),
        "{verdict:?}"
    );
    // A fresh record states this boot.
    drop(FlightRecord::open(&path).unwrap());
    assert_eq!(records(&path)[0]["boot_id"], this_boot.trim());
    live.kill().unwrap();
    live.wait().unwrap();
}
