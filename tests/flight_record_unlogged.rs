//! A start SIGKILLed after it read the previous record and before it logged the verdict: the
//! verdict is not lost. The next start logs it as an earlier one, and only once.
//!
//! Real processes: this test binary re-run as three roles on one record path, each killed or
//! ended for real.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, Forensics, ShutdownLayer};
use support::rerun_as;
use tracing_subscriber::layer::SubscriberExt;

mod support;

const PATH_ENV: &str = "SF_UNLOGGED_RECORD";
const EARLIER: &str = "Earlier verdict, never confirmed as logged by the start that read it: ";

fn record_path() -> Option<std::ffi::OsString> {
    std::env::var_os(PATH_ENV)
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Run 1: a shutdown wedged in `drain`, killed there.
#[test]
#[ignore = "a role of a_verdict_read_by_a_start_killed_before_logging_it_is_logged_by_the_next"]
fn role_wedged_in_drain() {
    let Some(path) = record_path() else { return };
    let record = FlightRecord::open(&path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    handle.begin();
    let _g = phase!("drain").entered();
    say("in drain");
    std::thread::sleep(Duration::from_secs(60));
}

/// Run 2: a start that reads the record and is killed before its subscriber exists (the
/// verdict waits for it, so it is never logged).
#[test]
#[ignore = "a role of a_verdict_read_by_a_start_killed_before_logging_it_is_logged_by_the_next"]
fn role_killed_before_logging() {
    let Some(path) = record_path() else { return };
    let record = FlightRecord::open(&path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let _forensics = Forensics::builder()
        .with_handle(layer.handle())
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    say("installed, no subscriber yet");
    std::thread::sleep(Duration::from_secs(60));
}

/// Run 3: a start that gets as far as logging (to stderr).
#[test]
#[ignore = "a role of a_verdict_read_by_a_start_killed_before_logging_it_is_logged_by_the_next"]
fn role_logs() {
    let Some(path) = record_path() else { return };
    let record = FlightRecord::open(&path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(layer))
        .unwrap();
    let _forensics = Forensics::builder()
        .with_handle(handle)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    say("logged");
}

/// Starts `role` on `path` and waits for its first stdout line.
fn start(role: &str, path: &Path, first_line: &str) -> Child {
    let mut child = rerun_as(role)
        .env(PATH_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = lines.find_map(|l| l.ok().filter(|l| l.contains(first_line)));
    assert!(seen.is_some(), "{role} never said {first_line:?}");
    // Keep reading: the child's test harness writes more and must not get EPIPE.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn kill(mut child: Child) -> u32 {
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    pid
}

#[test]
fn a_verdict_read_by_a_start_killed_before_logging_it_is_logged_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");

    let wedged = kill(start("role_wedged_in_drain", &path, "in drain"));
    let first = FlightRecord::previous(&path).unwrap();
    let first_message = first.message().unwrap();
    assert!(
        first_message.contains(&format!("pid {wedged} was killed during phase drain")),
        "{first_message}"
    );

    // The second start moves that record aside and dies before logging its verdict.
    let unlogged = kill(start(
        "role_killed_before_logging",
        &path,
        "installed, no subscriber yet",
    ));
    assert!(matches!(
        FlightRecord::previous(&path).unwrap(),
        PreviousShutdown::NoShutdown { pid: Some(p), .. } if p == unlogged
    ));

    // The third start logs both: the second run's verdict, and the first run's as earlier.
    let out = start("role_logs", &path, "logged")
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let own = stderr
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "Previous run (pid {unlogged}) ended without starting a shutdown"
            ))
        })
        .count();
    let earlier = stderr
        .lines()
        .filter(|l| l.contains(&format!("{EARLIER}{first_message}")))
        .count();
    assert_eq!((own, earlier), (1, 1), "{stderr}");

    // It confirmed them: the next start does not report the first run again.
    let next = FlightRecord::open(&path).unwrap();
    assert!(
        next.unconfirmed_verdicts().is_empty(),
        "{:?}",
        next.unconfirmed_verdicts()
    );
}

#[test]
fn unconfirmed_verdicts_are_carried_in_process_too() {
    // Without the builder: `log_previous` is what confirms.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(
        &path,
        "{\"kind\":\"run\",\"pid\":11}\n{\"kind\":\"begin\",\"t\":0}\n\
         {\"kind\":\"phase_start\",\"t\":0.1,\"id\":0,\"phase\":\"drain\"}\n",
    )
    .unwrap();
    let killed = FlightRecord::open(&path)
        .unwrap()
        .previous_shutdown()
        .message()
        .unwrap();
    // Dropped without logging: carried.
    let second = FlightRecord::open(&path).unwrap();
    assert_eq!(second.unconfirmed_verdicts(), std::slice::from_ref(&killed));
    drop(second);
    // Still not logged by the second: carried again, once (the third start's own verdict on
    // the second run comes first, then the carried ones).
    let third = FlightRecord::open(&path).unwrap();
    assert_eq!(
        third.unconfirmed_verdicts().len(),
        2,
        "{:?}",
        third.unconfirmed_verdicts()
    );
    assert_eq!(third.unconfirmed_verdicts()[0], killed);
    third.log_previous();
    let fourth = FlightRecord::open(&path).unwrap();
    assert!(fourth.unconfirmed_verdicts().is_empty());
}

/// A pid that is certainly not alive: a process that ran and was reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

const KILLED_IN_DRAIN: &str = "{\"kind\":\"run\",\"pid\":11}\n{\"kind\":\"begin\",\"t\":0}\n\
     {\"kind\":\"phase_start\",\"t\":0.1,\"id\":0,\"phase\":\"drain\"}\n";

#[test]
fn a_start_killed_before_it_replaced_the_record_leaves_the_record_in_place() {
    // What a start killed after writing its own record, before putting it in place, leaves.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(&path, KILLED_IN_DRAIN).unwrap();
    let dead = dead_pid();
    let leftover = dir.path().join(format!("flight.jsonl.{dead}.new"));
    std::fs::write(&leftover, format!("{{\"kind\":\"run\",\"pid\":{dead}}}\n")).unwrap();
    let record = FlightRecord::open(&path).unwrap();
    assert!(
        matches!(record.previous_shutdown(), PreviousShutdown::Killed { phase: Some(p), .. } if p == "drain"),
        "{:?}",
        record.previous_shutdown()
    );
    assert!(!leftover.exists());
}

#[test]
fn a_start_killed_between_moving_the_record_and_replacing_it_is_finished_by_the_next() {
    // Where hard links cannot be made the old record is moved: a start killed then leaves no
    // record at `path`, the old one as `.prev`, and its own (carrying the verdict) aside.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(dir.path().join("flight.jsonl.prev"), KILLED_IN_DRAIN).unwrap();
    let killed = FlightRecord::parse(KILLED_IN_DRAIN).message().unwrap();
    let dead = dead_pid();
    let leftover = dir.path().join(format!("flight.jsonl.{dead}.new"));
    let header = serde_json::json!({"kind": "run", "pid": dead, "previous": killed});
    std::fs::write(&leftover, format!("{header}\n")).unwrap();
    let record = FlightRecord::open(&path).unwrap();
    // The interrupted start is judged (it never began a shutdown), and what it read is logged.
    assert!(
        matches!(record.previous_shutdown(), PreviousShutdown::NoShutdown { pid: Some(p), .. } if *p == dead),
        "{:?}",
        record.previous_shutdown()
    );
    assert_eq!(record.unconfirmed_verdicts(), std::slice::from_ref(&killed));
    assert!(!leftover.exists());
}

#[test]
fn the_record_is_never_missing_while_a_start_replaces_it() {
    // Every start leaves a whole record at `path`: the old run stays readable as `.prev`, and
    // no `.new` file is left behind.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    std::fs::write(&path, KILLED_IN_DRAIN).unwrap();
    let record = FlightRecord::open(&path).unwrap();
    drop(record);
    let now = std::fs::read_to_string(&path).unwrap();
    assert!(
        now.starts_with("{") && now.contains("\"kind\":\"run\""),
        "{now}"
    );
    assert!(now.contains("killed during phase drain"), "{now}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("flight.jsonl.prev")).unwrap(),
        KILLED_IN_DRAIN
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_record_whose_directory_cannot_be_written_still_records_in_place() {
    // A record file the service may write, in a directory it may not (no `.new`, no `.prev`):
    // the run line goes into the record in place, after the evidence it holds.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to drop to another uid");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let path = state.join("flight.jsonl");
    std::fs::write(&path, KILLED_IN_DRAIN).unwrap();
    // The record belongs to uid 65534; the directory stays root's, 0755.
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let out = rerun_as("role_opens_as_nobody")
        .env(PATH_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("record enabled"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("killed during phase drain"), "{stdout}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(KILLED_IN_DRAIN),
        "the evidence is kept: {text}"
    );
    assert_eq!(text.matches("\"kind\":\"run\"").count(), 2, "{text}");
}

#[test]
fn a_record_torn_by_a_full_disk_gets_the_next_run_line_on_a_line_of_its_own_in_place() {
    // As above, but the evidence ends in a fragment (a write cut short by a full disk): the
    // next run's `run` line must not be glued to it.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to drop to another uid");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let path = state.join("flight.jsonl");
    let torn = format!("{KILLED_IN_DRAIN}{{\"kind\":\"phase_e");
    std::fs::write(&path, &torn).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let out = rerun_as("role_opens_as_nobody")
        .env(PATH_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("record enabled"), "{stdout}");
    assert!(stdout.contains("may not have completed"), "{stdout}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&torn), "the evidence is kept: {text}");
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(last["kind"], "run", "{text}");
    // The next start judges this run (it never began a shutdown), not the torn one.
    assert!(
        matches!(
            FlightRecord::previous(&path).unwrap(),
            PreviousShutdown::NoShutdown { .. }
        ),
        "{text}"
    );
}

/// Opens the record as uid 65534 and says whether it works and what it read.
#[test]
#[ignore = "a role of a_record_whose_directory_cannot_be_written_still_records_in_place"]
fn role_opens_as_nobody() {
    let Some(path) = record_path() else { return };
    // SAFETY: plain syscalls, before any other thread exists in this role.
    unsafe {
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    let record = FlightRecord::open(&path).unwrap();
    let state = if record.error().is_none() {
        "enabled"
    } else {
        "disabled"
    };
    say(&format!(
        "record {state}: {:?}",
        record.previous_shutdown().message()
    ));
}

#[test]
fn a_leftover_of_a_start_whose_pid_is_now_another_process_is_still_used() {
    // In a container every start may have the same pid: a `.new` left by an earlier start
    // under a pid that is alive now (here pid 1) is judged by its run line, not by the pid.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let leftover = dir.path().join("flight.jsonl.1.new");
    let killed = FlightRecord::parse(KILLED_IN_DRAIN).message().unwrap();
    let header = serde_json::json!({"kind": "run", "pid": 1, "start_time": 1, "previous": killed});
    std::fs::write(&leftover, format!("{header}\n")).unwrap();
    let record = FlightRecord::open(&path).unwrap();
    assert_eq!(record.unconfirmed_verdicts(), std::slice::from_ref(&killed));
    assert!(!leftover.exists());
}

#[test]
fn a_takeover_link_left_by_a_killed_start_is_not_judged_twice() {
    // A start linked the live record aside as `<path>.<pid>.takeover` and was killed before it
    // replaced it; that process has died since. The next start judges the record once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let dead = dead_pid();
    let text = format!(
        "{{\"kind\":\"run\",\"pid\":{dead}}}\n{{\"kind\":\"begin\",\"t\":0}}\n\
         {{\"kind\":\"phase_start\",\"t\":0.1,\"id\":0,\"phase\":\"drain\"}}\n"
    );
    std::fs::write(&path, &text).unwrap();
    let link = dir.path().join(format!("flight.jsonl.{dead}.takeover"));
    std::fs::hard_link(&path, &link).unwrap();
    let record = FlightRecord::open(&path).unwrap();
    assert!(matches!(
        record.previous_shutdown(),
        PreviousShutdown::Killed { .. }
    ));
    assert!(
        record.previous_takeovers().is_empty(),
        "{:?}",
        record.previous_takeovers()
    );
    assert!(!link.exists());
}

/// `install` before the subscriber exists, then the subscriber: the takeover verdict waits
/// for it (it used to be logged at `install`, to no subscriber).
#[test]
#[ignore = "a role of a_takeover_verdict_waits_for_the_subscriber"]
fn role_installs_before_its_subscriber() {
    let Some(path) = record_path() else { return };
    let record = FlightRecord::open(&path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let _forensics = Forensics::builder()
        .with_handle(handle)
        .with_stop_budget(None, Duration::ZERO)
        .install()
        .unwrap();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::io::stderr);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(layer))
        .unwrap();
    // The deferred lines run on a thread of their own once the subscriber is there.
    std::thread::sleep(Duration::from_millis(500));
    say("done");
}

#[test]
fn a_takeover_verdict_waits_for_the_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let dead = dead_pid();
    let takeover = dir.path().join(format!("flight.jsonl.{dead}.takeover"));
    std::fs::write(
        &takeover,
        format!(
            "{{\"kind\":\"run\",\"pid\":{dead}}}\n{{\"kind\":\"begin\",\"t\":0}}\n\
             {{\"kind\":\"phase_start\",\"t\":0.1,\"id\":0,\"phase\":\"drain\"}}\n"
        ),
    )
    .unwrap();
    let out = rerun_as("role_installs_before_its_subscriber")
        .env(PATH_ENV, &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pid {dead} was killed during phase drain")),
        "{stderr}"
    );
}
