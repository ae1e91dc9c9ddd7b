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
    /// Added to every upload chunk the database writes (`--db-write-delay S`): a slow disk.
    pub db_write_delay: Duration,
    /// When the supervisor sends SIGKILL after SIGTERM, when it is known from outside (a
    /// Kubernetes grace period, `docker stop -t`): `--kill-deadline S` or the environment's
    /// `SHUTDOWN_KILL_DEADLINE_SECS`.
    pub kill_deadline: Option<Duration>,
}

const USAGE: &str = "usage: gateway [--log-dir DIR] [--state-dir DIR] [--port N] [--adapters a,b,c]
               [--sessions N] [--drain-secs S] [--drain-timeout S]
               [--self-signal-after S | --wait] [--escalate-after N] [--kill-deadline S]
               [--journald] [--extend-timeout STEP [--extend-ceiling S]] [--slow-upload]
               [--sse-client [--sse-fix]] [--db-write-delay S]
environment: SHUTDOWN_KILL_DEADLINE_SECS=S (as --kill-deadline; --kill-after S is an alias)";

/// Longest duration any flag accepts: one day (keeps every sum of budgets far from overflow).
const MAX_SECS: f64 = 86_400.0;

fn secs(flag: &str, v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=MAX_SECS).contains(s))
        .ok_or_else(|| format!("{flag}: not a number of seconds between 0 and {MAX_SECS}: {v:?}"))
}

impl Args {
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Self, String> {
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
        };
        if let Ok(v) = std::env::var("SHUTDOWN_KILL_DEADLINE_SECS") {
            let s = secs("SHUTDOWN_KILL_DEADLINE_SECS", &v)?;
            a.kill_deadline = Some(Duration::from_secs_f64(s));
        }
        let mut drain_timeout_given = false;
        while let Some(flag) = it.next() {
            if flag == "--wait" {
                a.self_signal_after = None;
                continue;
            }
            if flag == "--journald" {
                a.journald = true;
                continue;
            }
            if flag == "--slow-upload" {
                a.slow_upload = true;
                continue;
            }
            if flag == "--sse-client" {
                a.sse_client = true;
                continue;
            }
            if flag == "--sse-fix" {
                a.sse_fix = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.to_owned());
            }
            let v = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            match flag.as_str() {
                "--log-dir" => a.log_dir = v.into(),
                "--state-dir" => a.state_dir = v.into(),
                "--port" => a.port = v.parse().map_err(|_| format!("--port: {v:?}"))?,
                "--adapters" => {
                    a.adapters = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "--sessions" => a.sessions = v.parse().map_err(|_| format!("--sessions: {v:?}"))?,
                "--drain-secs" => a.drain_secs = secs(&flag, &v)?,
                "--drain-timeout" => {
                    a.drain_timeout = Duration::from_secs_f64(secs(&flag, &v)?);
                    drain_timeout_given = true;
                }
                "--self-signal-after" => {
                    a.self_signal_after = Some(Duration::from_secs_f64(secs(&flag, &v)?))
                }
                "--escalate-after" => {
                    a.escalate_after = Some(
                        v.parse()
                            .ok()
                            .filter(|n| *n >= 2)
                            .ok_or("--escalate-after: N >= 2")?,
                    );
                }
                "--extend-timeout" => {
                    a.extend_step = Some(Duration::from_secs_f64(secs(&flag, &v)?));
                }
                "--extend-ceiling" => {
                    a.extend_ceiling = Some(Duration::from_secs_f64(secs(&flag, &v)?));
                }
                "--db-write-delay" => {
                    a.db_write_delay = Duration::from_secs_f64(secs(&flag, &v)?);
                }
                "--kill-deadline" | "--kill-after" => {
                    a.kill_deadline = Some(Duration::from_secs_f64(secs(&flag, &v)?))
                }
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        if a.extend_ceiling.is_some() && a.extend_step.is_none() {
            return Err(format!("--extend-ceiling needs --extend-timeout\n{USAGE}"));
        }
        if (a.slow_upload || a.sse_client) && !drain_timeout_given {
            // The demo of a stuck drain should not take the default 30 s.
            a.drain_timeout = Duration::from_secs(3);
        }
        Ok(a)
    }
}
