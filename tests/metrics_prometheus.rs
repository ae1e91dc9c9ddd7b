//! Issue 22: the shutdown metrics (feature `metrics`) seen by a real Prometheus. The gateway
//! example serves them (`--metrics-addr`, metrics-exporter-prometheus) and a real `prometheus`
//! process (Debian's package; its own config in a temp dir, loopback only, a short scrape
//! interval, its own storage) scrapes it through a clean stop, then a stop SIGKILLed during
//! `drain`, then a new start, which records the killed stop its process never could. The test
//! asks Prometheus' HTTP API (`/api/v1/query`) what it stored, and runs the README's PromQL.
//!
//! Without a `prometheus` binary the test prints `SKIPPED:` and passes;
//! `SHUTDOWN_FORENSICS_REQUIRE_PROMETHEUS=1` (set by `.ci/run`) makes that a failure.

mod gateway_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_support::{kill_from_other_process, Gateway};

const REQUIRE_ENV: &str = "SHUTDOWN_FORENSICS_REQUIRE_PROMETHEUS";

/// The `prometheus` binary on `PATH`, if any.
fn prometheus_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// A free loopback port (bound and released: a tiny race, acceptable in a test).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET on loopback; returns the status code and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus scraping the gateway's metrics port every 200 ms.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, target: u16) -> Self {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
                 scrape_configs:\n  - job_name: gateway\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{target}']\n        labels:\n          version: v1\n"
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get(port, "/-/ready").is_ok_and(|(s, _)| s == 200) {
            assert!(Instant::now() < deadline, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// The values of an instant query, each with its labels as JSON text.
    fn query(&self, q: &str) -> Vec<(String, f64)> {
        let (status, body) = get(self.port, &format!("/api/v1/query?query={}", encode(q)))
            .unwrap_or((0, String::new()));
        assert_eq!(status, 200, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (r["metric"].to_string(), value)
            })
            .collect()
    }

    /// Polls `q` until it has one result equal to `want`, at most 30 s; returns the last answer.
    fn wait_for(&self, q: &str, want: f64) -> Vec<(String, f64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(q);
            if (got.len() == 1 && (got[0].1 - want).abs() < 1e-9) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_counts_the_clean_stop_and_the_sigkilled_one() {
    let Some(bin) = prometheus_bin() else {
        let msg = "prometheus not found on PATH (apt-get install prometheus)";
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none_or(|v| v != "1"),
            "{REQUIRE_ENV}=1 but {msg}"
        );
        println!("SKIPPED: {msg}; {REQUIRE_ENV}=1 makes this a failure");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let prometheus = Prometheus::start(&bin, dir.path(), metrics_port);
    let addr = format!("127.0.0.1:{metrics_port}");
    let app = dir.path().join("app");

    // 1. A clean stop (a real SIGTERM from a `kill` process after 1 s); the gateway waits
    //    for the scrape that carries what `finish` recorded.
    let mut first = Gateway::start(
        &app,
        &[
            "--metrics-addr",
            &addr,
            "--self-signal-after",
            "1",
            "--drain-secs",
            "0.2",
        ],
    );
    assert!(first.wait_exit(Duration::from_secs(60)).success());
    let said = first.seen.join("\n");
    assert!(!said.contains("no metrics scrape"), "{said}");

    // 2. A stop SIGKILLed during drain (sessions that would work 60 s more).
    let mut second = Gateway::start(
        &app,
        &["--metrics-addr", &addr, "--wait", "--drain-secs", "60"],
    );
    let mut kill = kill_from_other_process("-TERM", second.pid());
    second.wait_for("drain started", Duration::from_secs(30));
    // Past the watchdog's next heartbeat line (one a second): the record then vouches for
    // some of the time the drain ran before the kill.
    std::thread::sleep(Duration::from_millis(2500));
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    let _ = kill.wait();

    // 3. A new start: it judges the record and records the killed stop's metrics.
    let mut third = Gateway::start(&app, &["--metrics-addr", &addr, "--wait"]);
    third.wait_for("was killed during phase drain", Duration::from_secs(10));
    let killed = prometheus.wait_for(
        r#"shutdown_verdicts_total{verdict="killed",phase="drain"}"#,
        1.0,
    );
    assert_eq!(killed.len(), 1, "{killed:?}");
    assert!((killed[0].1 - 1.0).abs() < 1e-9, "{killed:?}");
    assert!(killed[0].0.contains(r#""job":"gateway""#), "{killed:?}");
    // The phase histogram: one killed drain (with the time it had run), one clean drain, from
    // the first run's last scrape (its series went stale with its process).
    let count = |q: &str| {
        let got = prometheus.query(q);
        assert_eq!(got.len(), 1, "{q}: {got:?}");
        got[0].1
    };
    let killed_drain = r#"shutdown_phase_duration_seconds_count{phase="drain",verdict="killed"}"#;
    assert_eq!(count(killed_drain), 1.0);
    let killed_sum = r#"shutdown_phase_duration_seconds_sum{phase="drain",verdict="killed"}"#;
    // What the record vouches for: the drain ran at least until its last line.
    assert!(count(killed_sum) > 0.0, "{}", third.seen.join("\n"));
    let clean_drain = r#"last_over_time(shutdown_phase_duration_seconds_count{phase="drain",verdict="clean"}[10m])"#;
    assert_eq!(count(clean_drain), 1.0);
    let clean = r#"last_over_time(shutdown_verdicts_total{verdict="clean",phase="none"}[10m])"#;
    assert_eq!(count(clean), 1.0);
    let totals = r#"last_over_time(shutdown_duration_seconds_count[10m])"#;
    assert_eq!(prometheus.query(totals).len(), 2, "one series per verdict");

    // The README's PromQL, as written there (and in docs/fleet.md).
    let killed_per_deploy =
        r#"sum by (version) (last_over_time(shutdown_verdicts_total{verdict="killed"}[30m]))"#;
    let got = prometheus.query(killed_per_deploy);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].0.contains(r#""version":"v1""#) && (got[0].1 - 1.0).abs() < 1e-9,
        "{got:?}"
    );
    let p99 = r#"histogram_quantile(0.99, sum by (le) (last_over_time(shutdown_phase_duration_seconds_bucket{phase="drain"}[30m])))"#;
    let got = prometheus.query(p99);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1.is_finite() && got[0].1 > 0.0, "{got:?}");
    println!("p99 drain over the fleet: {:.3}s", got[0].1);

    let mut stop = kill_from_other_process("-TERM", third.pid());
    assert!(third.wait_exit(Duration::from_secs(60)).success());
    let _ = stop.wait();
}
