//! The kill loop: runs again and again on one state directory, each ending at random in one of
//! two ways. Half are the gateway example SIGKILLed at a uniformly random instant from its start
//! to its exit: the record it left is read here line by line (an oracle of its own, independent
//! of the crate's parser), and two verdicts are checked against what the record shows was
//! running at the kill: `FlightRecord::previous` on the file, and the line the next start (the
//! next run of the loop) logs. The other half end in another way, chosen at random from
//! [`ENDINGS`] and run by a small app (`tests/support/endings.rs`, this binary re-run as
//! `role_app`): an error returned from the shutdown, an exit inside a phase, a panic on main or
//! in `drain`, with the panic hook replaced or not, a worker's panic caught (then a SIGKILL
//! without SIGTERM) or passed on to main, a panic after `finish`, an escalation, a clean stop.
//! Their verdict and the next start's line are known before the run.
//!
//! Never a wrong verdict, so never a wrong "clean"; never a panic in the gateway. After a kill
//! in a phase, the bounds the verdict gives for the kill are checked against the instant it
//! was sent (`killed between 0.60s and 1.60s into drain`).
//!
//! `SHUTDOWN_FORENSICS_KILL_RUNS` sets the count (default 20, about 10 s);
//! `SHUTDOWN_FORENSICS_KILL_SEED` replays a run's instants (default: from the clock; printed).
//! The full run is in SECURITY.md.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use shutdown_forensics::verdict::PreviousShutdown;
use shutdown_forensics::FlightRecord;

mod gateway_support;
mod support;
use gateway_support::gateway_bin;
use support::endings::{self, ENDING_ENV, RECORD_ENV, STARTED, WAITING};
use support::rerun_as;

/// The endings other than a SIGKILL at a random instant (`tests/support/endings.rs`).
const ENDINGS: &[&str] = &[
    "clean",
    "early_return",
    "exit_in_drain",
    "panic_main",
    "panic_in_drain",
    "hook_replaced_main",
    "hook_replaced_drain",
    "panic_after_finish",
    "escalate",
    "no_shutdown",
    "caught_panic",
    "worker_panic_uncaught",
];

#[test]
#[ignore = "run by the kill loop"]
fn role_app() {
    endings::role();
}

/// What a run's verdict and the next start's line must be.
#[derive(Debug, Clone)]
enum Expect {
    /// SIGKILLed at a random instant: what its record shows.
    Record(Shown, Option<u64>),
    /// Ended by the app as asked.
    Ending(&'static str, u32),
}

/// Whether a start got as far as logging the previous run's verdict.
fn started(stderr: &str) -> bool {
    stderr.contains("gateway started") || stderr.contains(STARTED)
}

const RUNS_ENV: &str = "SHUTDOWN_FORENSICS_KILL_RUNS";
const SEED_ENV: &str = "SHUTDOWN_FORENSICS_KILL_SEED";
const DEFAULT_RUNS: u64 = 20;

/// A whole run is about 0.7 s: start, a self-sent SIGTERM after 0.3 s, four short phases.
const FLAGS: &[&str] = &[
    "--self-signal-after",
    "0.3",
    "--drain-secs",
    "0.2",
    "--adapters",
    "slack",
];

/// What the record itself shows, read without the crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shown {
    /// No line at all (killed before the `run` line, or before the file existed).
    Nothing,
    /// A `complete` line: the shutdown finished.
    Complete,
    /// A `run` line and no `begin`: killed before the shutdown began.
    NotBegun,
    /// No `begin`, an `exit` note: left through its own exit path.
    Exited,
    /// A `begin` and no `complete`: killed during this phase (the last started and not ended),
    /// or between phases (`None`).
    Killed(Option<String>),
    /// The last line is not a whole JSON object.
    Torn,
    /// A `panic` line.
    Panic,
}

impl Shown {
    fn kind(&self) -> String {
        match self {
            Self::Killed(Some(p)) => format!("killed during {p}"),
            Self::Killed(None) => "killed between phases".into(),
            other => format!("{other:?}"),
        }
    }
}

/// Reads the record's lines: the last run only (a record may hold an older run before it).
fn shown(text: &str) -> (Shown, Option<u64>) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some(last) = lines.last() else {
        return (Shown::Nothing, None);
    };
    if !serde_json::from_str::<Value>(last).is_ok_and(|v| v.is_object()) {
        return (Shown::Torn, None);
    }
    let records: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let kind = |r: &Value| r["kind"].as_str().unwrap_or("").to_owned();
    let from = records.iter().rposition(|r| kind(r) == "run").unwrap_or(0);
    let run = &records[from..];
    let pid = run.first().and_then(|r| r["pid"].as_u64());
    if run.iter().any(|r| kind(r) == "panic") {
        return (Shown::Panic, pid);
    }
    if run.iter().any(|r| kind(r) == "complete") {
        return (Shown::Complete, pid);
    }
    let begun = run
        .iter()
        .any(|r| kind(r) == "begin" || (kind(r) == "checkpoint" && r["begun"] == true));
    if !begun {
        let exited = run.iter().any(|r| kind(r) == "note" && r["note"] == "exit");
        return (
            if exited {
                Shown::Exited
            } else {
                Shown::NotBegun
            },
            pid,
        );
    }
    let mut open: Vec<(u64, String)> = Vec::new();
    for r in run {
        match (kind(r).as_str(), r["id"].as_u64()) {
            ("phase_start", Some(id)) => {
                open.push((id, r["phase"].as_str().unwrap_or("?").to_owned()));
            }
            ("phase_end", Some(id)) => open.retain(|(i, _)| *i != id),
            _ => {}
        }
    }
    (Shown::Killed(open.pop().map(|(_, p)| p)), pid)
}

/// Whether the crate's verdict says what the record shows.
fn agrees(verdict: &PreviousShutdown, shown: &Shown, pid: Option<u64>) -> bool {
    let same_pid = |p: &Option<u32>| p.map(u64::from) == pid;
    match (shown, verdict) {
        (Shown::Nothing, PreviousShutdown::None) => true,
        (Shown::Complete, PreviousShutdown::Clean { pid: p, .. })
        | (Shown::NotBegun, PreviousShutdown::NoShutdown { pid: p, .. })
        | (Shown::Exited, PreviousShutdown::Exited { pid: p, .. }) => same_pid(p),
        (
            Shown::Killed(phase),
            PreviousShutdown::Killed {
                pid: p, phase: q, ..
            },
        ) => same_pid(p) && phase == q,
        (Shown::Torn, PreviousShutdown::Unknown { .. }) => true,
        (Shown::Panic, PreviousShutdown::Panicked { .. }) => true,
        _ => false,
    }
}

/// Whether the next start's stderr says what the record showed (`None` when that start was
/// killed before it could say anything).
fn next_start_agrees(stderr: &str, expect: &Expect) -> Option<bool> {
    if !started(stderr) {
        return None; // killed before `install` logged the verdict (it logs before this line)
    }
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Previous shutdown") || l.contains("Previous run"))
        .filter(|l| !l.contains(EARLIER))
        .collect();
    let (shown, pid) = match expect {
        Expect::Record(shown, pid) => (shown, *pid),
        Expect::Ending(ending, pid) => {
            let (_, words) = endings::expected(ending).expect("an ending with an expectation");
            return Some(match words {
                None => lines.is_empty(),
                Some(w) => {
                    let w = w.replace("{pid}", &pid.to_string());
                    lines.len() == 1 && lines[0].contains(&w)
                }
            });
        }
    };
    let pid = pid.map_or("?".to_owned(), |p| p.to_string());
    let one = |needle: &str| lines.len() == 1 && lines[0].contains(needle);
    Some(match shown {
        Shown::Nothing | Shown::Complete | Shown::Exited => lines.is_empty(),
        Shown::NotBegun => one(&format!(
            "Previous run (pid {pid}) ended without starting a shutdown"
        )),
        Shown::Killed(Some(phase)) => {
            one(&format!("pid {pid} was killed during phase")) && lines[0].contains(phase.as_str())
        }
        Shown::Killed(None) => {
            one(&format!("pid {pid} was killed")) && !lines[0].contains("during phase")
        }
        Shown::Torn => one("Previous shutdown may not have completed"),
        Shown::Panic => one("panicked"),
    })
}

/// The start of the line for a verdict an earlier start read and never logged.
const EARLIER: &str = "Earlier verdict, never confirmed as logged by the start that read it: ";

/// The verdicts the last run in `text` read at its start and did not confirm as logged (its
/// `run` line's `carried` and `previous`, without a `verdict_logged` note after it).
fn unconfirmed(text: &str) -> Vec<String> {
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let Some(start) = lines.iter().rposition(|v| v["kind"] == "run") else {
        return Vec::new();
    };
    if lines[start + 1..]
        .iter()
        .any(|v| v["note"] == "verdict_logged")
    {
        return Vec::new();
    }
    let run = &lines[start];
    let carried = run["carried"].as_array().cloned().unwrap_or_default();
    carried
        .iter()
        .chain(std::iter::once(&run["previous"]))
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    let v = v.trim();
    Some(match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).expect(key),
        None => v.parse().expect(key),
    })
}

/// splitmix64: uniform instants from a seed that can be replayed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn spawn(dir: &Path, stderr: &Path) -> Child {
    Command::new(gateway_bin())
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(FLAGS)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("spawn the gateway")
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway did not exit in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The app (`role_app`) with `ending`, on the gateway's record.
fn spawn_app(dir: &Path, stderr: &Path, ending: &str) -> Child {
    rerun_as("role_app")
        .env(RECORD_ENV, dir.join("state/flight.jsonl"))
        .env(ENDING_ENV, ending)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("spawn the app")
}

/// When the last run in `text` began its shutdown (wall clock), from its `begin` line.
fn begin_wall(text: &str) -> Option<f64> {
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let from = records.iter().rposition(|r| r["kind"] == "run")?;
    records[from..]
        .iter()
        .find(|r| r["kind"] == "begin")
        .and_then(|r| r["wall_unix_s"].as_f64())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn sigkill_at_any_instant_is_never_judged_wrongly() {
    let runs = env_u64(RUNS_ENV).unwrap_or(DEFAULT_RUNS);
    let seed = env_u64(SEED_ENV).unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("kill loop: {runs} runs, seed {seed:#x} (replay: {SEED_ENV}={seed:#x})");
    let mut state = seed;
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("state/flight.jsonl");
    let stderr_of = |run: u64| dir.path().join(format!("stderr-{run}"));

    // Built before anything is timed.
    gateway_bin();
    // Run 0 is not killed: how long a whole run takes here is the window the instants span.
    let started_at = Instant::now();
    let mut child = spawn(dir.path(), &stderr_of(0));
    let status = wait(&mut child, Duration::from_secs(60));
    let window = started_at.elapsed();
    assert!(status.success(), "uncut run failed: {status:?}");
    println!("kill loop: a whole run takes {window:.2?}; kill instants are uniform in it");

    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut next_checked = 0u64;
    let mut killed = 0u64;
    let mut last: Option<Expect> = None;
    // A start killed after it replaced the record and before it logged its verdict on it: the
    // next start that gets that far must log that verdict too, as an earlier one.
    let mut carried_checked = 0u64;
    let mut unlogged = 0u64;
    let mut owed: Vec<String> = Vec::new();
    // The bounds a `Killed` verdict gives for the kill, against the instant it was sent.
    let mut bounds_checked = 0u64;
    let mut worst_late: Option<f64> = None;
    // The last run is not killed either: its start judges the record of the last kill.
    for run in 1..=runs + 1 {
        let at = Duration::from_micros(next(&mut state) % window.as_micros().max(1) as u64);
        let pick = next(&mut state);
        // Half the runs (never the last) end otherwise than by a SIGKILL at a random instant.
        let ending = (run <= runs && pick % 2 == 1)
            .then(|| ENDINGS[(pick / 2 % ENDINGS.len() as u64) as usize]);
        let started_at = Instant::now();
        let mut kill_wall = None;
        let (mut child, pid) = match ending {
            Some(e) => {
                let c = spawn_app(dir.path(), &stderr_of(run), e);
                let pid = c.id();
                (c, pid)
            }
            None => {
                let c = spawn(dir.path(), &stderr_of(run));
                let pid = c.id();
                (c, pid)
            }
        };
        let status = match ending {
            Some(e) if endings::waits_for_kill(e) => {
                let waiting = support::wait_until(Duration::from_secs(30), || {
                    std::fs::read_to_string(stderr_of(run)).is_ok_and(|t| t.contains(WAITING))
                });
                assert!(waiting, "run {run}: the app ({e}) never waited");
                let _ = child.kill();
                wait(&mut child, Duration::from_secs(60))
            }
            Some(_) => wait(&mut child, Duration::from_secs(60)),
            None if run <= runs => {
                std::thread::sleep(at.saturating_sub(started_at.elapsed()));
                kill_wall = Some(unix_now());
                let _ = child.kill(); // SIGKILL
                wait(&mut child, Duration::from_secs(60))
            }
            None => wait(&mut child, Duration::from_secs(60)),
        };
        let stderr = std::fs::read_to_string(stderr_of(run)).unwrap_or_default();
        // A panic of the gateway itself (a verdict line may say "panicked" about a run before).
        let panicked = stderr
            .lines()
            .any(|l| l.contains("panicked") && !l.contains("Previous"));
        if ending.is_none() && panicked {
            wrong.push(format!("run {run}: the child panicked:\n{stderr}"));
        }
        let text = match std::fs::read(&record) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => panic!("read {}: {e}", record.display()),
        };
        // The previous run's record, as this start found it, against what this start logged.
        if let Some(prev) = &last {
            match next_start_agrees(&stderr, prev) {
                Some(true) => next_checked += 1,
                Some(false) => wrong.push(format!(
                    "run {run}: the start after {prev:?} logged:\n{stderr}"
                )),
                None => {}
            }
        }
        // Verdicts owed by starts killed before they logged them: logged by this one, if it
        // logged anything (at most the latest three are carried).
        if started(&stderr) {
            for m in owed.iter().rev().take(3) {
                // As `escape_hidden` shows it (the gateway's messages hold no control characters).
                let escaped_line = format!("{EARLIER}{}", m.replace('\\', "\\\\"));
                if stderr.lines().any(|l| l.contains(&escaped_line)) {
                    carried_checked += 1;
                } else {
                    wrong.push(format!(
                        "run {run}: owed the verdict {m:?}, logged:\n{stderr}"
                    ));
                }
            }
            unlogged += owed.len().saturating_sub(3) as u64;
            owed.clear();
        }

        if run > runs {
            assert!(
                status.success(),
                "the last run failed: {status:?}\n{stderr}"
            );
            break;
        }
        killed += u64::from(status.signal() == Some(libc::SIGKILL));

        // What this start read and did not confirm is owed by the next one.
        if !started(&stderr) {
            owed = unconfirmed(&text);
        }
        let verdict = FlightRecord::previous(&record).expect("read the record");
        // A gateway killed before it replaced the record leaves the previous run's in place:
        // when that was an app's, its ending still says what the verdict must be.
        let (shows, shown_pid) = shown(&text);
        let ending_judged = ending.map(|e| (e, pid)).or(match &last {
            Some(Expect::Ending(e, p)) if shown_pid == Some(u64::from(*p)) => Some((*e, *p)),
            _ => None,
        });
        if let Some((e, pid)) = ending_judged {
            *seen.entry(format!("ending {e}")).or_default() += u64::from(ending.is_some());
            let (agrees, _) = endings::expected(e).expect("an ending with an expectation");
            let same_pid = match &verdict {
                PreviousShutdown::Clean { pid: p, .. }
                | PreviousShutdown::ExitedEarly { pid: p, .. }
                | PreviousShutdown::Panicked { pid: p, .. }
                | PreviousShutdown::Escalated { pid: p, .. }
                | PreviousShutdown::NoShutdown { pid: p, .. } => *p == Some(pid),
                _ => true,
            };
            if !agrees(&verdict) || !same_pid {
                let clean = if verdict.is_clean() && e != "clean" {
                    "WRONG CLEAN "
                } else {
                    ""
                };
                wrong.push(format!(
                    "run {run} (ending {e}, {status:?}): {clean}the verdict is {verdict:?}\n{text}\n{stderr}"
                ));
            }
            last = Some(Expect::Ending(e, pid));
            continue;
        }
        *seen.entry(shows.kind()).or_default() += 1;
        if !agrees(&verdict, &shows, shown_pid) {
            let clean = if verdict.is_clean() && !matches!(shows, Shown::Nothing | Shown::Complete)
            {
                "WRONG CLEAN "
            } else {
                ""
            };
            wrong.push(format!(
                "run {run} (kill at {at:.2?}, {status:?}): {clean}the record shows {shows:?} \
                 (pid {shown_pid:?}), the verdict is {verdict:?}\n{text}"
            ));
        }
        // The kill came after the last record and (when a heartbeat bounds it) before the
        // heartbeat that was due next: checked against when it was sent (loosely: the
        // watchdog thread of a loaded machine can be late).
        if let (
            PreviousShutdown::Killed {
                last_record,
                killed_by,
                ..
            },
            Some(kill),
            Some(begin),
        ) = (&verdict, kill_wall, begin_wall(&text))
        {
            let kill_at = kill - begin;
            bounds_checked += 1;
            if last_record.as_secs_f64() > kill_at + 0.05 {
                wrong.push(format!(
                    "run {run}: last record +{:.3}s after the kill at +{kill_at:.3}s",
                    last_record.as_secs_f64()
                ));
            }
            if let Some(by) = killed_by {
                let late = kill_at - by.as_secs_f64();
                worst_late = Some(worst_late.map_or(late, |w| w.max(late)));
                if late > 0.5 {
                    wrong.push(format!(
                        "run {run}: killed at +{kill_at:.3}s, the verdict says by +{:.3}s",
                        by.as_secs_f64()
                    ));
                }
            }
        }
        last = Some(Expect::Record(shows, shown_pid));
    }
    println!(
        "kill loop: {runs} runs ({killed} killed before they exited), endings and what the \
         record showed: {seen:?}; {next_checked} next-start lines checked; {carried_checked} \
         verdicts of starts killed before logging them logged by a later start; {unlogged} \
         dropped (more than three starts in a row killed before logging); {bounds_checked} \
         kill bounds checked ({}); {} wrong",
        worst_late.map_or("no upper bound given".to_owned(), |w| format!(
            "the latest kill {w:+.3}s past the upper bound it was given; negative: within"
        )),
        wrong.len()
    );
    // After the last (clean) start, nothing a killed start left is still lying around.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("flight.jsonl.") && n.ends_with(".new"))
        .collect();
    assert!(leftovers.is_empty(), "left by killed starts: {leftovers:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
