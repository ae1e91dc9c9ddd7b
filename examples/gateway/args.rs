//! Command-line flags (kept stable: tests and users rely on them).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Args {
    pub log_dir: PathBuf,
    pub state_dir: PathBuf,
    pub port: u16,
    pub adapters: Vec<String>,
    pub sessions: usize,
    pub drain_secs: f64,
    pub drain_timeout: Duration,
    pub self_signal_after: Option<Duration>,
    pub escalate_after: Option<u32>,
    /// Logs go to the systemd journal with structured fields instead of stderr.
    pub journald: bool,
    /// `EXTEND_TIMEOUT_USEC` heartbeats of this step while phases progress (off by default).
    pub extend_step: Option<Duration>,
    /// No extension past this long after the stop began (default: budget + 30 s headroom).
    pub extend_ceiling: Option<Duration>,
    /// Start a client that uploads slowly and then stalls (`--slow-upload`).
    pub slow_upload: bool,
    /// Start a client of `GET /events` that stays connected (`--sse-client`).
    pub sse_client: bool,
    /// `GET /events` ends when the shutdown begins (`--sse-fix`), as a real service's should.
    pub sse_fix: bool,
    /// Each database write waits this long (`--db-write-delay`): a slow disk, so that the
    /// bounded upload queue pushes back on the client.
    pub db_write_delay: Duration,
    /// When the supervisor sends SIGKILL after SIGTERM, when it is known from outside (a
    /// Kubernetes grace period, `docker stop -t`): `--kill-deadline S` or the environment's
    /// `SHUTDOWN_KILL_DEADLINE_SECS`.
    pub kill_deadline: Option<Duration>,
    /// Where the summary of the stop goes for Kubernetes' `Last State`
    /// (`--termination-message PATH`, the pod's `terminationMessagePath`).
    pub termination_message: Option<PathBuf>,
    /// Serve the shutdown metrics in Prometheus' text format on this address
    /// (`--metrics-addr`).
    pub metrics_addr: Option<String>,
}

/// What `--help` prints (on stdout, exit code 0). A new flag gets a line here, an entry in
/// [`SWITCHES`] (and an arm in [`Args::parse`]) or in [`WITH_VALUE`] (and an arm in
/// `Args::set`); `tests/in_process/docs.rs` checks the docs' flags against this text.
pub const HELP: &str = "\
gateway: a small chat gateway (axum, SQLite, TCP adapters) that gets stopped and explains its
stop. By default it asks a separate `kill` process to send it SIGTERM after 2 s, then runs its
shutdown phases (notify, drain, disconnect<adapter>, db_close) and prints their waterfall.

usage: gateway [FLAGS]
  --log-dir DIR            log files, shutdown diagnostic, Chrome trace (default: logs)
  --state-dir DIR          flight record, database, last-shutdown.json (default: state)
  --port N                 HTTP port on 127.0.0.1 (default: 0, any free port)
  --adapters a,b,c         chat adapters, one TCP peer each (default: slack,telegram,discord)
  --sessions N             long requests in flight when the stop comes (default: 3)
  --drain-secs S           how long each of them still works after the stop (default: 1)
  --drain-timeout S        the drain phase's budget (default: 30; 3 with --slow-upload
                           or --sse-client)
  --self-signal-after S    have SIGTERM sent to us after S seconds (default: 2)
  --wait                   wait for a real signal instead (kill -TERM <pid>, systemctl stop)
  --escalate-after N       exit with code 130 on the Nth signal, N >= 2 (default: log only)
  --kill-deadline S        when the supervisor sends SIGKILL after SIGTERM (a Kubernetes
                           grace period, docker stop -t); alias --kill-after S; or the
                           environment's SHUTDOWN_KILL_DEADLINE_SECS=S
  --termination-message PATH
                           write a summary of the stop there, before the kill deadline's
                           SIGKILL and at the end (Kubernetes: /dev/termination-log)
  --journald               log to the systemd journal with structured fields, not to stderr
  --extend-timeout STEP    under systemd: EXTEND_TIMEOUT_USEC=STEP while phases progress
  --extend-ceiling S       no extension past S after the stop began (default: budget + 30 s)
  --slow-upload            start a client whose upload stalls, so the drain gets stuck
  --sse-client             start a client of GET /events (server-sent events) that stays
                           connected, so the drain waits on the stream
  --sse-fix                end GET /events when the shutdown begins (the fix for the above)
  --db-write-delay S       each database write takes S more seconds (a slow disk: uploads
                           feel the bounded queue's backpressure; default: 0)
  --metrics-addr ADDR      serve the shutdown metrics at http://ADDR/metrics (Prometheus text
                           format); after the stop, wait up to 5 s for one more scrape
  -h, --help               this text
";

/// Flags that stand alone.
const SWITCHES: &[&str] = &[
    "--wait",
    "--journald",
    "--slow-upload",
    "--sse-client",
    "--sse-fix",
    "-h",
    "--help",
];

/// Flags followed by a value.
const WITH_VALUE: &[&str] = &[
    "--log-dir",
    "--state-dir",
    "--port",
    "--adapters",
    "--sessions",
    "--drain-secs",
    "--drain-timeout",
    "--self-signal-after",
    "--escalate-after",
    "--kill-deadline",
    "--kill-after",
    "--extend-timeout",
    "--extend-ceiling",
    "--db-write-delay",
    "--termination-message",
    "--metrics-addr",
];

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run the gateway (boxed: the flags are many, `Help` is nothing).
    Run(Box<Args>),
    /// Print [`HELP`] and exit 0.
    Help,
}

/// Why a command line is refused: `unknown flag --slow-uplaod (did you mean --slow-upload?)`.
fn unknown(word: &str) -> String {
    let what = if word.starts_with('-') {
        "unknown flag"
    } else {
        "unexpected argument"
    };
    match closest(word) {
        Some(flag) => format!("{what} {word} (did you mean {flag}?)"),
        None => format!("{what} {word}"),
    }
}

/// The known flag nearest to `word` in edit distance, when one is near enough to be a typo.
fn closest(word: &str) -> Option<&'static str> {
    let bare = word.trim_start_matches('-');
    SWITCHES
        .iter()
        .chain(WITH_VALUE)
        .filter(|f| f.starts_with("--"))
        .map(|f| (edit_distance(bare, &f[2..]), *f))
        .filter(|(d, f)| *d <= 2 + f.len() / 8)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// Levenshtein distance over characters (flags are short: no need for anything faster).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Longest duration any flag accepts: one day (keeps every sum of budgets far from overflow).
const MAX_SECS: f64 = 86_400.0;

fn secs(flag: &str, v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=MAX_SECS).contains(s))
        .ok_or_else(|| format!("{flag}: not a number of seconds between 0 and {MAX_SECS}: {v:?}"))
}

impl Args {
    /// Reads the flags (then `SHUTDOWN_KILL_DEADLINE_SECS`). A refused command line is an
    /// error that names the flag; `--help` is not an error.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Parsed, String> {
        let mut a = Args {
            log_dir: "logs".into(),
            state_dir: "state".into(),
            port: 0,
            adapters: vec!["slack".into(), "telegram".into(), "discord".into()],
            sessions: 3,
            drain_secs: 1.0,
            drain_timeout: Duration::from_secs(30),
            self_signal_after: Some(Duration::from_secs(2)),
            escalate_after: None,
            journald: false,
            extend_step: None,
            extend_ceiling: None,
            slow_upload: false,
            sse_client: false,
            sse_fix: false,
            db_write_delay: Duration::ZERO,
            kill_deadline: None,
            termination_message: None,
            metrics_addr: None,
        };
        let mut kill_deadline_given = false;
        let mut drain_timeout_given = false;
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--wait" => a.self_signal_after = None,
                "--journald" => a.journald = true,
                "--slow-upload" => a.slow_upload = true,
                "--sse-client" => a.sse_client = true,
                "--sse-fix" => a.sse_fix = true,
                // Known before its value is taken: a mistyped flag must not swallow the next.
                f if WITH_VALUE.contains(&f) => {
                    let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                    kill_deadline_given |= f == "--kill-deadline" || f == "--kill-after";
                    drain_timeout_given |= f == "--drain-timeout";
                    a.set(f, &v)?;
                }
                _ => return Err(unknown(&flag)),
            }
        }
        if !kill_deadline_given {
            if let Ok(v) = std::env::var("SHUTDOWN_KILL_DEADLINE_SECS") {
                let s = secs("SHUTDOWN_KILL_DEADLINE_SECS", &v)?;
                a.kill_deadline = Some(Duration::from_secs_f64(s));
            }
        }
        if a.extend_ceiling.is_some() && a.extend_step.is_none() {
            return Err("--extend-ceiling needs --extend-timeout".to_owned());
        }
        if (a.slow_upload || a.sse_client) && !drain_timeout_given {
            // The demo of a stuck drain should not take the default 30 s.
            a.drain_timeout = Duration::from_secs(3);
        }
        Ok(Parsed::Run(Box::new(a)))
    }

    /// Sets the value of one of [`WITH_VALUE`].
    fn set(&mut self, flag: &str, v: &str) -> Result<(), String> {
        match flag {
            "--log-dir" => self.log_dir = v.into(),
            "--state-dir" => self.state_dir = v.into(),
            "--port" => self.port = v.parse().map_err(|_| format!("--port: {v:?}"))?,
            "--adapters" => {
                self.adapters = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--sessions" => self.sessions = v.parse().map_err(|_| format!("--sessions: {v:?}"))?,
            "--drain-secs" => self.drain_secs = secs(flag, v)?,
            "--drain-timeout" => self.drain_timeout = Duration::from_secs_f64(secs(flag, v)?),
            "--self-signal-after" => {
                self.self_signal_after = Some(Duration::from_secs_f64(secs(flag, v)?));
            }
            "--escalate-after" => {
                self.escalate_after = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n >= 2)
                        .ok_or("--escalate-after: N >= 2")?,
                );
            }
            "--extend-timeout" => self.extend_step = Some(Duration::from_secs_f64(secs(flag, v)?)),
            "--extend-ceiling" => {
                self.extend_ceiling = Some(Duration::from_secs_f64(secs(flag, v)?));
            }
            "--db-write-delay" => self.db_write_delay = Duration::from_secs_f64(secs(flag, v)?),
            "--termination-message" => self.termination_message = Some(v.into()),
            "--metrics-addr" => self.metrics_addr = Some(v.to_owned()),
            "--kill-deadline" | "--kill-after" => {
                self.kill_deadline = Some(Duration::from_secs_f64(secs(flag, v)?));
            }
            _ => return Err(unknown(flag)),
        }
        Ok(())
    }
}
