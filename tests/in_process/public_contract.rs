//! The public names the crate promises (its design contract), used exactly as written there: if one is renamed or its
//! shape changes, this file stops compiling.

use std::path::Path;
use std::time::Duration;

use shutdown_forensics::context::markers::MarkerInfo;
use shutdown_forensics::context::{
    signal_name, ContextOptions, ProcSummary, ShutdownContext, SignalSender,
};
use shutdown_forensics::diagnostic::spawn_diagnostic;
use shutdown_forensics::report::{PhaseRecord, ShutdownReport};
use shutdown_forensics::systemd::{
    check_systemd_timing_alignment, parse_systemd_duration, TimingAlignment,
};
use shutdown_forensics::{phase, ShutdownHandle, ShutdownLayer, PHASE_TARGET};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn the_design_contract_compiles_and_holds() {
    assert_eq!(signal_name(15), "SIGTERM");
    assert_eq!(signal_name(9999), "signal#9999");
    for name in ["SIGHUP", "SIGQUIT", "SIGUSR1"] {
        assert!((1..32).any(|n| signal_name(n) == name), "{name}");
    }

    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    let opts = ContextOptions {
        marker_dir: None,
        include_cmdline: false,
        ..ContextOptions::default()
    };
    let none = ShutdownContext::capture_with(&opts, None);
    assert_eq!(none.signal, "UNKNOWN");
    let (_ts, _mono): (f64, f64) = (ctx.ts, ctx.ts_monotonic);
    let (_sig, _num): (&String, Option<i32>) = (&ctx.signal, ctx.signal_num);
    let (_pid, _ppid): (u32, u32) = (ctx.pid, ctx.ppid);
    let (_parent, _me): (&ProcSummary, &ProcSummary) = (&ctx.parent, &ctx.process);
    let _ids: (&Option<String>, &Option<String>) =
        (&ctx.systemd_invocation_id, &ctx.systemd_journal_stream);
    let (_sd, _load, _tracer): (bool, Option<f64>, Option<u32>) =
        (ctx.under_systemd, ctx.loadavg_1m, ctx.tracer_pid);
    let _sender: &Option<SignalSender> = &ctx.sender;
    let markers: [&Option<MarkerInfo>; 2] = [&ctx.takeover_marker, &ctx.planned_stop_marker];
    if let Some(m) = markers[0] {
        let (_for_self, _raw): (bool, &String) = (m.for_self, &m.raw);
    }
    let p = &ctx.parent;
    let _summary = (p.pid, &p.name, p.state, p.ppid, p.uid, &p.cmdline);
    assert!(ctx.to_log_line().starts_with("signal=SIGTERM "));
    let json: serde_json::Value = serde_json::from_str(&ctx.to_json()).unwrap();
    assert_eq!(json["self"]["pid"], ctx.pid);

    let dir = tempfile::tempdir().unwrap();
    let log: &Path = &dir.path().join("diag.log");
    let child: Result<u32, shutdown_forensics::Error> =
        spawn_diagnostic(log, "SIGTERM", Duration::from_secs(3));
    assert!(child.unwrap() > 0);

    assert_eq!(
        parse_systemd_duration("1min 30s"),
        Some(Duration::from_secs(90))
    );
    let alignment: Option<TimingAlignment> =
        check_systemd_timing_alignment(Duration::from_secs(180));
    if let Some(a) = alignment {
        let _ = (&a.unit, a.timeout_stop, a.expected_min, a.mismatch);
    }

    assert_eq!(PHASE_TARGET, "shutdown");
    let layer = ShutdownLayer::new();
    let handle: ShutdownHandle = layer.handle();
    let clone = handle.clone();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let span = phase!("drain", active_at_start = 3);
        assert_eq!(span.metadata().map(|m| m.target()), Some(PHASE_TARGET));
        span.in_scope(|| {});
        drop(span);
        clone.finish();
    });
    let report: ShutdownReport = handle.report();
    let phases: &Vec<PhaseRecord> = &report.phases;
    assert_eq!(phases.len(), 1);
    assert!(serde_json::from_str::<serde_json::Value>(&report.to_json()).is_ok());
    assert!(serde_json::from_str::<serde_json::Value>(&report.to_chrome_trace()).is_ok());
    assert!(report.to_string().contains("drain"));
}
