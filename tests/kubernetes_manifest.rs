//! `examples/kubernetes/gateway.yaml` (docs/kubernetes.md): its grace period covers the preStop
//! sleep plus the kill deadline it passes in, that deadline covers the gateway's shutdown
//! budget (as the gateway itself computes it), and the gateway run with the manifest's args and
//! environment takes the deadline as its total budget without a warning; the termination
//! message it is told to write is where the pod's `terminationMessagePath` says Kubernetes
//! reads it, and holds the stop's summary afterwards.

use std::process::Command;
use std::time::Duration;

mod gateway_support;
use gateway_support::{gateway_bin, kill_from_other_process, Gateway};

const DEADLINE_VAR: &str = "SHUTDOWN_KILL_DEADLINE_SECS";
const SHORTER: &str = "is shorter than the shutdown budget";

/// The few values the checks need, read from the manifest's lines (it is ours: one key a
/// line, flow sequences written as JSON).
struct Manifest {
    grace_s: f64,
    pre_stop_s: f64,
    deadline_s: f64,
    args: Vec<String>,
    command: Vec<String>,
    termination_message_path: String,
    termination_message_policy: String,
}

fn value_after<'a>(lines: &[&'a str], key: &str) -> &'a str {
    let hits: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix(key))
        .collect();
    assert_eq!(hits.len(), 1, "{key} once in the manifest");
    hits[0].trim()
}

fn read_manifest() -> Manifest {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/gateway.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let num = |s: &str| -> f64 {
        s.trim()
            .trim_matches('"')
            .parse()
            .unwrap_or_else(|_| panic!("{s}"))
    };
    assert_eq!(value_after(&lines, "kind:"), "Deployment");
    let grace_s = num(value_after(&lines, "terminationGracePeriodSeconds:"));
    // preStop: sleep: seconds: N
    let at = lines
        .iter()
        .position(|l| l.trim() == "preStop:")
        .expect("a preStop hook");
    assert_eq!(lines[at + 1].trim(), "sleep:");
    let pre_stop_s = num(lines[at + 2]
        .trim()
        .strip_prefix("seconds:")
        .expect("seconds"));
    // env: - name: SHUTDOWN_KILL_DEADLINE_SECS / value: "N"
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("- name: {DEADLINE_VAR}"))
        .expect("the deadline variable");
    let deadline_s = num(lines[at + 1].trim().strip_prefix("value:").expect("value"));
    let list = |key: &str| -> Vec<String> {
        serde_json::from_str(value_after(&lines, key)).unwrap_or_else(|e| panic!("{key} {e}"))
    };
    Manifest {
        grace_s,
        pre_stop_s,
        deadline_s,
        args: list("args:"),
        command: list("command:"),
        termination_message_path: value_after(&lines, "terminationMessagePath:").to_owned(),
        termination_message_policy: value_after(&lines, "terminationMessagePolicy:").to_owned(),
    }
}

/// The gateway's own shutdown budget, from its start-up warning with a tiny deadline.
fn gateway_budget_s(dir: &std::path::Path, args: &[&str]) -> f64 {
    let mut cmd = Command::new(gateway_bin());
    cmd.env(DEADLINE_VAR, "0.5");
    let mut gw = Gateway::start_with(dir, args, cmd);
    let line = gw.wait_for(SHORTER, Duration::from_secs(5));
    let _ = kill_from_other_process("-TERM", gw.pid()).wait();
    assert!(gw.wait_exit(Duration::from_secs(60)).success());
    let budget = line
        .split("shutdown budget ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    budget
}

#[test]
fn the_manifest_gives_the_shutdown_budget_its_time_and_the_gateway_the_deadline() {
    let m = read_manifest();
    assert_eq!(m.command.len(), 1, "exec form, no shell: {:?}", m.command);
    assert!(m.command[0].ends_with("/gateway"), "{:?}", m.command);
    assert!(
        m.args.iter().any(|a| a == "--wait"),
        "waits for the real SIGTERM"
    );
    assert_eq!(
        m.grace_s,
        m.pre_stop_s + m.deadline_s,
        "the deadline passed in is the grace period minus the preStop sleep"
    );

    // The gateway writes its summary where Kubernetes reads it.
    let flag = m.args.iter().position(|a| a == "--termination-message");
    let told = flag.and_then(|i| m.args.get(i + 1));
    assert_eq!(
        told,
        Some(&m.termination_message_path),
        "--termination-message and terminationMessagePath agree: {:?}",
        m.args
    );
    assert_eq!(m.termination_message_path, "/dev/termination-log");
    // File or FallbackToLogsOnError; the latter shows the log's tail when nothing was written.
    assert_eq!(m.termination_message_policy, "FallbackToLogsOnError");

    // The manifest's args, with the directories and the termination message moved to a
    // scratch dir.
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("termination-log");
    let mut args: Vec<&str> = Vec::new();
    let mut it = m.args.iter();
    while let Some(a) = it.next() {
        if a == "--log-dir" || a == "--state-dir" {
            it.next();
        } else if a == "--termination-message" {
            it.next();
            args.extend(["--termination-message", term.to_str().unwrap()]);
        } else {
            args.push(a);
        }
    }
    let budget_s = gateway_budget_s(&dir.path().join("probe"), &args);
    assert!(budget_s > 0.0);
    assert!(
        m.deadline_s >= budget_s,
        "kill deadline {}s < shutdown budget {budget_s}s",
        m.deadline_s
    );

    // As the pod runs it: no warning, the deadline is the budget the report measures against.
    let mut cmd = Command::new(gateway_bin());
    cmd.env(DEADLINE_VAR, m.deadline_s.to_string());
    let mut gw = Gateway::start_with(&dir.path().join("pod"), &args, cmd);
    let mut kill = kill_from_other_process("-TERM", gw.pid());
    gw.wait_for("Shutdown context", Duration::from_secs(20));
    kill.wait().unwrap();
    let status = gw.wait_exit(Duration::from_secs(120));
    let seen = gw.seen.join("\n");
    assert!(status.success(), "{status:?}\n{seen}");
    assert!(!seen.contains(SHORTER), "{seen}");
    let header = format!("complete, SIGTERM from pid {}", kill.id());
    let waterfall = gw
        .seen
        .iter()
        .find(|l| l.contains(&header))
        .unwrap_or_else(|| panic!("no waterfall header: {seen}"));
    assert!(
        waterfall.contains(&format!("budget {:.2}s, margin ", m.deadline_s)),
        "{waterfall}"
    );
    // What `kubectl describe pod` would show under Last State.
    let message = std::fs::read_to_string(&term).expect("the termination message");
    assert!(message.len() <= 4096, "{} bytes", message.len());
    assert!(
        message.starts_with("shutdown complete in ")
            && message.contains("; slowest phase drain ")
            && message.contains(&format!("; budget {:.2}s, margin ", m.deadline_s)),
        "{message}"
    );
    assert!(
        message.contains(&format!("\nstop: SIGTERM from pid {} (kill)\n", kill.id())),
        "{message}"
    );
}
