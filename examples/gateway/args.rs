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
    /// When the supervisor sends SIGKILL after SIGTERM, when it is known from outside (a
    /// Kubernetes grace period, `docker stop -t`): `--kill-deadline S` or the environment's
    /// `SHUTDOWN_KILL_DEADLINE_SECS`.
    pub kill_deadline: Option<Duration>,
}

const USAGE: &str = "usage: gateway [--log-dir DIR] [--state-dir DIR] [--port N] [--adapters a,b,c]
               [--sessions N] [--drain-secs S] [--drain-timeout S]
               [--self-signal-after S | --wait] [--escalate-after N] [--kill-deadline S]
environment: SHUTDOWN_KILL_DEADLINE_SECS=S (as --kill-deadline)";

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
            kill_deadline: None,
        };
        if let Ok(v) = std::env::var("SHUTDOWN_KILL_DEADLINE_SECS") {
            let s = secs("SHUTDOWN_KILL_DEADLINE_SECS", &v)?;
            a.kill_deadline = Some(Duration::from_secs_f64(s));
        }
        while let Some(flag) = it.next() {
            if flag == "--wait" {
                a.self_signal_after = None;
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
                "--drain-timeout" => a.drain_timeout = Duration::from_secs_f64(secs(&flag, &v)?),
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
                "--kill-deadline" => {
                    a.kill_deadline = Some(Duration::from_secs_f64(secs(&flag, &v)?))
                }
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        Ok(a)
    }
}
