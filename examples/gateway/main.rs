//! A small but real chat gateway that gets stopped and explains its stop.
//!
//! It serves HTTP (axum) with long-running "session" requests, keeps one TCP connection per
//! chat adapter to a local peer, appends session events to a store, and logs to stderr and to
//! daily rolling files. After `--self-signal-after` seconds (default 2) it asks a separate
//! `kill` process to send it SIGTERM, so the logged sender is a real other process; with
//! `--wait` it waits for a real signal instead (as under systemd, see `gateway.service`).
//!
//! The shutdown runs as phases: `notify` (tell the adapters' peers), `drain` (let in-flight
//! sessions finish, bounded by `--drain-timeout`), `disconnect<adapter>` (in parallel, each
//! bounded), `db_close` (checkpoint SQLite's WAL and close). At exit it prints the waterfall and
//! writes the Chrome trace (`LOG_DIR/shutdown-trace.json`) and the report and context as JSON
//! (`STATE_DIR/last-shutdown.json`), both with the crate's private-file writer (0600, never
//! through a planted symlink). Nothing it prints can panic: a closed stderr or stdout (a
//! terminal that went away) is ignored, so the exit code stays the shutdown's.
//!
//! ```sh
//! cargo run --example gateway
//! cargo run --example gateway -- --wait --drain-secs 5   # then: kill -TERM <pid>
//! cargo run --example gateway -- --slow-upload            # a drain stuck on a stalled upload
//! cargo run --example gateway -- --sse-client             # a drain stuck on an SSE stream, named
//! cargo run --example gateway -- --sse-client --sse-fix   # the fix: streams end on the signal
//! ```
//!
//! Under systemd (`gateway.service`): `--journald` sends the logs to the journal as structured
//! fields (prefix `SHUTDOWN_`: `journalctl -u gateway SHUTDOWN_PHASE=drain`) instead of stderr;
//! `--extend-timeout STEP` sends `EXTEND_TIMEOUT_USEC` heartbeats while the phases progress.
//! Under Kubernetes (`kubernetes/gateway.yaml`): `--termination-message /dev/termination-log`
//! writes the stop's summary where `kubectl describe pod` shows it.
//!
//! `--metrics-addr ADDR` serves the crate's shutdown metrics (feature `metrics`) at
//! `http://ADDR/metrics` for Prometheus; after the stop it waits (at most 5 s) for one more
//! scrape, so that the stop recorded at `finish` is seen.

mod adapters;
mod args;
mod db;
mod http;
mod metrics;

use std::io::IsTerminal;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use shutdown_forensics::context::{ContextOptions, Escalation};
use shutdown_forensics::{
    phase, FlightRecord, Forensics, ShutdownHandle, ShutdownLayer, ShutdownSignal,
};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::args::{Args, Parsed};

/// Budgets per phase; their sum plus the drain timeout is the shutdown budget.
const NOTIFY_BUDGET: Duration = Duration::from_secs(2);
const DISCONNECT_BUDGET: Duration = Duration::from_secs(5);
const DB_CLOSE_BUDGET: Duration = Duration::from_secs(5);

/// With `--journald`, every event field `x` becomes the journal field `SHUTDOWN_X`
/// (`SHUTDOWN_PHASE`, `SHUTDOWN_SENDER_PID`, ...); the text stays in `MESSAGE`.
const JOURNAL_FIELD_PREFIX: &str = "SHUTDOWN";

/// Where `tracing-journald` sends (its `JOURNALD_PATH`, not public).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => *a,
        Ok(Parsed::Help) => {
            let _ = std::io::stdout().write_all(args::HELP.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            say(&format!(
                "gateway: {msg}\nrun `gateway --help` for the flags"
            ));
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("gateway: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The journal layer for `--journald`. Its error names the socket it could not reach
/// (`tracing-journald` says only `No such file or directory` when there is no journal).
fn journal_layer() -> Result<tracing_journald::Layer, String> {
    tracing_journald::layer()
        .map(|layer| {
            layer
                .with_field_prefix(Some(JOURNAL_FIELD_PREFIX.to_owned()))
                .with_syslog_identifier("gateway".to_owned())
        })
        .map_err(|e| {
            format!(
                "--journald: no systemd journal at {JOURNAL_SOCKET} ({e}); run under systemd, \
                 or leave out --journald to log to stderr"
            )
        })
}

/// A line on stderr; `eprintln!` would panic (exit code 101) once stderr is a broken pipe.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is created: without a journal there is nothing to run for.
    let journald = if args.journald {
        Some(journal_layer()?)
    } else {
        None
    };
    // Before the signal helper's install: it records the previous stop's metrics when that
    // stop never reached `finish` (SIGKILLed).
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(metrics::serve(addr)?),
        None => None,
    };
    std::fs::create_dir_all(&args.log_dir)?;
    std::fs::create_dir_all(&args.state_dir)?;
    let budget = NOTIFY_BUDGET + args.drain_timeout + DISCONNECT_BUDGET + DB_CLOSE_BUDGET; // drain_timeout <= 1 day (args)

    // The layer: phases become `+X.XXs` lines, and a flight record that survives SIGKILL.
    let layer = ShutdownLayer::builder()
        .with_flight_record(FlightRecord::open(args.state_dir.join("flight.jsonl"))?)
        .with_phase_budget("notify", NOTIFY_BUDGET)
        .with_phase_budget("drain", args.drain_timeout)
        .with_phase_budget("disconnect", DISCONNECT_BUDGET)
        .with_phase_budget("db_close", DB_CLOSE_BUDGET)
        // Under Kubernetes or Docker the deadline is not readable from inside the container:
        // the Deployment passes it (docs/kubernetes.md). The report's margin is then to it.
        .with_total_budget(args.kill_deadline.unwrap_or(budget))
        .build();
    let handle = layer.handle();

    // Logs: stderr and daily rolling files (non-blocking; the guard is adopted below). The
    // fallible builder: `rolling::daily` panics when the directory is not writable.
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("gateway.log")
        .build(&args.log_dir)
        .map_err(|e| format!("log directory {}: {e}", args.log_dir.display()))?;
    let (file, guard) = tracing_appender::non_blocking(appender);
    // Under systemd, stderr goes to the journal too: colours only on a terminal. With
    // `--journald` the journal gets structured fields instead of stderr's text.
    let stderr = (!args.journald).then(|| {
        fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            // No internal-error report: it is an `eprintln!`, which panics once stderr is gone.
            .log_internal_errors(false)
    });
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(stderr)
        .with(journald)
        .with(fmt::layer().with_ansi(false).with_writer(file))
        .with(layer)
        .init();

    if let Some(deadline) = args.kill_deadline.filter(|d| *d < budget) {
        tracing::warn!(
            kill_deadline_s = deadline.as_secs_f64(),
            budget_s = budget.as_secs_f64(),
            "kill deadline {:.2}s is shorter than the shutdown budget {:.2}s: raise \
             terminationGracePeriodSeconds (or docker stop -t) or lower --drain-timeout",
            deadline.as_secs_f64(),
            budget.as_secs_f64()
        );
    }

    // The signal helper: context, diagnostic, flight record, sd_notify, startup checks.
    let escalation = match args.escalate_after {
        Some(after) => Escalation::Exit { after, code: 130 },
        None => Escalation::LogOnly,
    };
    let builder = Forensics::builder()
        .with_handle(handle.clone())
        .with_context_options(ContextOptions::default().with_marker_dir(&args.state_dir))
        .with_diagnostic(args.log_dir.join("shutdown-diag.log"))
        .with_escalation(escalation)
        .with_stop_budget(Some(budget), Duration::from_secs(30))
        .with_report_path(args.state_dir.join("last-shutdown.json"))
        .adopt_guard(guard);
    let builder = match args.extend_step {
        // Never past the deadline the startup check asks systemd for (budget + headroom).
        Some(step) => builder.with_extend_timeout(
            step,
            args.extend_ceiling
                .unwrap_or(budget + Duration::from_secs(30)),
        ),
        None => builder,
    };
    // Under Kubernetes or Docker the kill deadline is not readable from inside the container:
    // the Deployment passes it (docs/kubernetes.md). A stuck snapshot is taken 1 s before it.
    let builder = match args.kill_deadline {
        Some(kill) => builder.with_kill_deadline(kill),
        None => builder,
    };
    // Kubernetes shows it under the container's Last State (docs/kubernetes.md).
    let builder = match &args.termination_message {
        Some(path) => builder.with_termination_message(path),
        None => builder,
    };
    let forensics = builder.install()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = rt.block_on(serve(args, &forensics, &handle));
    forensics.finish();
    write_outputs(args, &handle)?;
    // The stop recorded at `finish` reaches a pull exporter only through a scrape.
    if let Some(m) = &metrics {
        if !m.wait_for_scrape(metrics::LINGER) {
            say("no metrics scrape within 5 s after the stop: Prometheus has not seen it");
        }
    }
    outcome
}

/// Runs the service until the shutdown signal, then the shutdown phases.
async fn serve(
    args: &Args,
    forensics: &Forensics,
    handle: &ShutdownHandle,
) -> Result<(), Box<dyn std::error::Error>> {
    let signal = forensics.signal();
    let (db, db_thread) = db::open(&args.state_dir.join("gateway.db"), args.db_write_delay)?;
    let mut adapters = Vec::new();
    for name in &args.adapters {
        let (addr, _peer) = adapters::start_peer(name.clone()).await?;
        adapters.push(adapters::Adapter::connect(name.clone(), addr).await?);
    }
    let server = http::Server::start(args, db.clone(), signal.clone()).await?;
    let _ = writeln!(
        std::io::stdout(),
        "gateway listening on http://{} (pid {})",
        server.addr,
        std::process::id()
    );
    // The demo's own traffic is in flight before the gateway says it started: a signal sent
    // on that line finds the sessions (and the slow upload) to drain.
    http::start_sessions(server.addr, args.sessions, &server.active).await;
    if args.slow_upload {
        http::start_slow_upload(server.addr).await;
    }
    if args.sse_client {
        http::start_sse_client(server.addr).await;
    }
    tracing::info!(addr = %server.addr, adapters = args.adapters.len(), pid = std::process::id(), "gateway started");
    forensics.ready(); // READY=1 for the Type=notify unit
    if let Some(after) = args.self_signal_after {
        let signal = signal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tokio::task::spawn_blocking(move || send_sigterm_to_self(signal)).await;
        });
    }

    let ctx = signal.recv().await;
    // How the stop came (`stop=planned|supervisor|unexpected`) is on the crate's context
    // line: under systemd it asks the manager first, after this wake-up.
    tracing::info!(planned = ctx.is_planned(), "stopping gateway");

    // notify: tell every adapter's peer we are going down.
    let notify = phase!("notify", adapters = adapters.len());
    async {
        for a in &mut adapters {
            // Bounded: a wedged peer must not hold the whole shutdown.
            match tokio::time::timeout(NOTIFY_BUDGET, a.notify()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(adapter = %a.name, error = %e, "notify failed"),
                Err(_) => tracing::warn!(adapter = %a.name, "notify timed out"),
            }
        }
    }
    .instrument(notify)
    .await;

    // drain: in-flight requests finish (the server stopped accepting at the signal). The
    // crate records `active_at_start` and `active_now` (requests in flight, responses still
    // streaming included) from the connections `shutdown_forensics::http` tracks.
    let drain = phase!("drain", timed_out = Empty);
    let timed_out = async {
        tokio::time::timeout(args.drain_timeout, server.task)
            .await
            .is_err()
    }
    .instrument(drain.clone())
    .await;
    drain.record("timed_out", timed_out);
    drop(drain);

    // disconnect<adapter>: in parallel, each bounded.
    let tasks: Vec<_> = adapters
        .into_iter()
        .map(|a| {
            let span = phase!("disconnect", adapter = %a.name, ok = Empty);
            let s = span.clone();
            tokio::spawn(
                async move {
                    let ok = matches!(
                        tokio::time::timeout(DISCONNECT_BUDGET, a.disconnect()).await,
                        Ok(Ok(()))
                    );
                    s.record("ok", ok);
                }
                .instrument(span),
            )
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }

    // db_close: checkpoint the WAL and close, off the runtime.
    drop(db);
    let rows = tokio::task::spawn_blocking(move || {
        let span = phase!("db_close", rows = Empty);
        let _e = span.enter();
        let rows = db_thread.close();
        span.record("rows", rows.as_ref().map_or(0, |r| *r));
        rows
    })
    .await??;
    tracing::debug!(rows, elapsed = ?handle.elapsed(), "database closed");
    Ok(())
}

/// Asks a separate process to send us SIGTERM, so the sender in the context is real. The
/// `kill` process is reaped only after the context was captured: until then its `/proc` entry
/// (a zombie's) still names it, as it would for a supervisor that outlives its signal.
fn send_sigterm_to_self(signal: ShutdownSignal) {
    let pid = std::process::id().to_string();
    let child = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .spawn()
        .or_else(|_| {
            std::process::Command::new("sh")
                .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
                .spawn()
        });
    match child {
        Ok(mut child) => {
            signal.wait_timeout(Duration::from_secs(5));
            let _ = child.wait();
        }
        Err(e) => tracing::error!(error = %e, "could not run kill"),
    }
}

/// The waterfall on stderr and the Chrome trace next to the logs (the report and context
/// JSON were written by `finish`).
fn write_outputs(args: &Args, handle: &ShutdownHandle) -> std::io::Result<()> {
    let report = handle.report();
    say(&format!("\n{report}"));
    let trace = args.log_dir.join("shutdown-trace.json");
    shutdown_forensics::report::write_private_file(&trace, report.to_chrome_trace().as_bytes())?;
    say(&format!(
        "Chrome trace: {} (open in https://ui.perfetto.dev or chrome://tracing)",
        trace.display()
    ));
    Ok(())
}
