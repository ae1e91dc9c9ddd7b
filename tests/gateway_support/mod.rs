//! Running the gateway example as a child: its stderr as it comes, its log files, its exit.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The example binary, built (or brought up to date) once per test binary: `cargo test
/// --test X` alone does not build examples, and a stale one would test old code.
pub fn gateway_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // <target-dir>/<profile>/deps/<test>: build into the same target dir and profile.
            let profile = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>");
            let target_dir = profile.parent().expect("target dir");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--quiet", "--example", "gateway", "--target-dir"])
                .arg(target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile.file_name().is_some_and(|p| p == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build --example gateway");
            assert!(status.success(), "cargo build --example gateway failed");
            profile.join("examples").join("gateway")
        })
        .clone()
}

/// A running gateway: its stderr lines arrive on a channel as they are written.
pub struct Gateway {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    dir: PathBuf,
}

impl Gateway {
    /// Starts the gateway with logs and state under `dir` and waits until it serves.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with(dir, extra, Command::new(gateway_bin()))
    }

    /// [`Self::start`] with a prepared command (a wrapper, an environment).
    pub fn start_with(dir: &Path, extra: &[&str], mut cmd: Command) -> Self {
        let mut child = cmd
            .args([
                "--log-dir",
                dir.join("logs").to_str().unwrap(),
                "--state-dir",
                dir.join("state").to_str().unwrap(),
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gw = Self {
            child,
            lines: rx,
            seen: Vec::new(),
            dir: dir.to_owned(),
        };
        gw.wait_for("gateway started", Duration::from_secs(60));
        gw
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a stderr line contains `needle`; panics with what was seen on timeout.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {needle:?} in {limit:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "gateway did not exit in {limit:?}; saw:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything in the rolling log files.
    pub fn log_file_text(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.join("logs")).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gateway.log")
            {
                out.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
        out
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` from a separate `kill` process and returns it unreaped: until it is reaped its
/// `/proc` entry (a zombie's) still names it, however slow the machine.
pub fn kill_from_other_process(sig: &str, pid: u32) -> Child {
    let k = Command::new("kill")
        .args([sig, &pid.to_string()])
        .spawn()
        .unwrap();
    // kill(1) exits right after kill(2); wait for that without reaping it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/stat", k.id()))
        .is_ok_and(|s| s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "kill did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    k
}

/// Zombie children of `pid` (state `Z` with `PPid` = pid).
pub fn zombie_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_owned()) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str()) {
            out.push(child);
        }
    }
    out
}

/// Starts the gateway again on the same state (a quick self-stopped run) and returns its
/// `Previous shutdown did not complete` line; the run must end cleanly.
pub fn next_start_verdict(dir: &Path) -> String {
    let mut next = Gateway::start(
        dir,
        &[
            "--self-signal-after",
            "0.2",
            "--drain-secs",
            "0.1",
            "--adapters",
            "slack",
        ],
    );
    let line = next.wait_for(
        "Previous shutdown did not complete",
        Duration::from_secs(10),
    );
    assert!(next.wait_exit(Duration::from_secs(60)).success());
    line
}
