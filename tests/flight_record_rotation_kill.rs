//! A start SIGKILLed at each file-system step of replacing the record (the unlinks, the hard
//! link, the renames; also where hard links cannot be made): the next start still reports the
//! run before it. The kill is put exactly on a system call with `strace -e inject` (root;
//! `.ci/run` installs strace), so no instant of the ~100 µs rotation is left to chance.

use std::path::Path;
use std::process::Command;

use shutdown_forensics::FlightRecord;
use support::rerun_as;

mod support;

const PATH_ENV: &str = "SF_ROTATION_RECORD";
const KILLED_IN_DRAIN: &str = "{\"kind\":\"run\",\"pid\":11}\n{\"kind\":\"begin\",\"t\":0}\n\
     {\"kind\":\"phase_start\",\"t\":0.1,\"id\":0,\"phase\":\"drain\"}\n";

/// The start under test: opens the record and ends without logging anything.
#[test]
#[ignore = "a role of a_kill_at_any_step_of_replacing_the_record_loses_no_verdict"]
fn role_opens() {
    let Some(path) = std::env::var_os(PATH_ENV) else {
        return;
    };
    let record = FlightRecord::open(&path).unwrap();
    assert!(record.error().is_none(), "{:?}", record.error());
}

/// Runs the role under strace with `injections` (`-e inject=...` values); true when the
/// role was killed by SIGKILL.
fn run_role(path: &Path, injections: &[&str]) -> bool {
    let role = rerun_as("role_opens");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null"]);
    for i in injections {
        cmd.args(["-e", &format!("inject={i}")]);
    }
    cmd.arg(role.get_program());
    cmd.args(role.get_args());
    let status = cmd
        .env(PATH_ENV, path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("strace");
    use std::os::unix::process::ExitStatusExt;
    // strace reports the tracee's death by a signal with the same signal (or 128 + it).
    status.signal() == Some(libc::SIGKILL) || status.code() == Some(128 + libc::SIGKILL)
}

#[test]
fn a_kill_at_any_step_of_replacing_the_record_loses_no_verdict() {
    if Command::new("strace").arg("-V").output().is_err() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs strace and root (ptrace of the role)");
        return;
    }
    let expected = FlightRecord::parse(KILLED_IN_DRAIN).message().unwrap();
    let renames = "rename,renameat,renameat2";
    let unlinks = "unlink,unlinkat";
    let mut cases: Vec<Vec<String>> = Vec::new();
    for when in 1..=3 {
        cases.push(vec![format!("linkat,link:signal=KILL:when={when}")]);
        cases.push(vec![format!("{renames}:signal=KILL:when={when}")]);
        cases.push(vec![format!("{unlinks}:signal=KILL:when={when}")]);
        // Where hard links cannot be made: the record is moved aside, then replaced.
        cases.push(vec![
            "linkat,link:error=EPERM".to_owned(),
            format!("{renames}:signal=KILL:when={when}"),
        ]);
    }
    let mut killed = 0;
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.jsonl");
        std::fs::write(&path, KILLED_IN_DRAIN).unwrap();
        let injections: Vec<&str> = case.iter().map(String::as_str).collect();
        killed += usize::from(run_role(&path, &injections));
        // The next start: the killed-in-drain run is its previous run, or carried by the
        // start that was killed (or that ended without logging).
        let next = FlightRecord::open(&path).unwrap();
        let own = next.previous_shutdown().message();
        assert!(
            own.as_deref() == Some(expected.as_str())
                || next.unconfirmed_verdicts().contains(&expected),
            "{case:?}: lost; the next start read {own:?} and carried {:?}",
            next.unconfirmed_verdicts()
        );
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
            .count();
        assert_eq!(
            leftovers, 0,
            "{case:?}: a .new file left after the next start"
        );
    }
    eprintln!(
        "rotation kills: {killed} of {} cases killed the start",
        cases.len()
    );
    // The injections hit: most cases kill the role inside the rotation.
    assert!(
        killed >= cases.len() / 2,
        "only {killed} of {} killed",
        cases.len()
    );
}
