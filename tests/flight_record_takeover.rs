//! Two instances on one state dir (issue 12, risk "takeover"): the new one must not make the
//! live predecessor's later death vanish. Its record is moved to `<path>.<pid>.takeover`, the
//! predecessor keeps writing there, and a later start reports how it ended
//! (`FlightRecord::previous_takeovers`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::{phase, FlightRecord, ShutdownLayer};
use support::{lines_with, rerun_as, Capture};
use tracing_subscriber::layer::SubscriberExt;

const PATH_ENV: &str = "SF_TAKEOVER_RECORD";

/// The old instance: begins its shutdown, then enters `drain` when told (a line on stdin),
/// and stays there until killed.
#[test]
#[ignore = "run by a_taken_over_predecessor_that_dies_later_is_reported"]
fn role_predecessor() {
    let Some(path) = std::env::var_os(PATH_ENV) else {
        return;
    };
    let record = FlightRecord::open(&path).unwrap();
    let layer = ShutdownLayer::builder().with_flight_record(record).build();
    let handle = layer.handle();
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    handle.begin();
    println!("begun");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let _g = phase!("drain").entered();
    println!("in drain");
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn a_taken_over_predecessor_that_dies_later_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flight.jsonl");
    let mut old = rerun_as("role_predecessor")
        .env(PATH_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(old.stdout.take().unwrap()).lines();
    assert!(out.any(|l| l.is_ok_and(|l| l == "begun")));

    // The new instance starts while the old one still runs.
    let new = FlightRecord::open(&path).unwrap();
    assert!(
        matches!(new.previous_shutdown(), PreviousShutdown::StillRunning { pid, .. } if *pid == old.id()),
        "{:?}",
        new.previous_shutdown()
    );
    let aside = dir
        .path()
        .join(format!("flight.jsonl.{}.takeover", old.id()));
    assert!(aside.exists());
    // Said at start, naming the live predecessor: two instances on one state directory.
    let cap = Capture::default();
    tracing::subscriber::with_default(support::subscriber(&cap), || new.log_previous());
    let said = lines_with(&cap.text(), "still runs").join("\n");
    assert!(
        said.contains(&format!(
            "taken over from pid {}, which still runs",
            old.id()
        )) && said.contains(&format!("flight.jsonl.{}.takeover", old.id()))
            && said.contains("its own state directory"),
        "{}",
        cap.text()
    );
    assert_eq!(lines_with(&cap.text(), "still runs").len(), 1);
    assert!(!dir.path().join("flight.jsonl.prev").exists());
    drop(new);

    // The old one goes on (into its moved record), then dies.
    writeln!(old.stdin.as_mut().unwrap()).unwrap();
    assert!(out.any(|l| l.is_ok_and(|l| l == "in drain")));
    old.kill().unwrap();
    old.wait().unwrap();

    // The next start reports it, once.
    let next = FlightRecord::open(&path).unwrap();
    let takeovers = next.previous_takeovers();
    assert_eq!(takeovers.len(), 1, "{takeovers:?}");
    assert!(
        matches!(&takeovers[0], PreviousShutdown::Killed { pid: Some(p), phase: Some(ph), .. }
            if *p == old.id() && ph == "drain"),
        "{takeovers:?}"
    );
    assert!(!aside.exists());
    drop(next);
    assert!(FlightRecord::open(&path)
        .unwrap()
        .previous_takeovers()
        .is_empty());
}
