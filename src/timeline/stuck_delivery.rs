//! Taking a snapshot for the shutdown and delivering it: the WARN line, the compact flight-record
//! line (synchronous, so the next start's verdict can say where it was stuck after a SIGKILL),
//! and the report's `stuck` list.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::stuck::collect::{self, FirstSample, Request};
use crate::stuck::snapshot::{StuckFinding, StuckReason, StuckSnapshot};
use crate::sys::clock::secs;
use crate::timeline::events;
use crate::timeline::state::Timeline;

/// At most this many snapshots are kept in the report (the first ones tell the most).
pub(crate) const MAX_KEPT: usize = 8;
/// Findings written to the flight record (each capped), so the record's tail stays small.
const RECORD_FINDINGS: usize = 3;
const RECORD_TEXT_MAX: usize = 400;

/// A snapshot's CPU gap takes at most this share of the time left before a known kill (a
/// quarter): the rest is for reading `/proc`, writing the record line, and a loaded machine.
const GAP_SHARE_OF_TIME_LEFT: u32 = 4;

/// The CPU gap for a snapshot taken with `left` until the kill (`None`: no kill deadline):
/// `gap`, shortened so that the snapshot is recorded before the kill comes. A snapshot that
/// waited its whole gap with 250 ms left was never recorded.
pub(crate) fn fit_cpu_gap(gap: Duration, left: Option<Duration>) -> Duration {
    left.map_or(gap, |left| gap.min(left / GAP_SHARE_OF_TIME_LEFT))
}

/// Where a snapshot's WARN line is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// On the calling thread (a snapshot the app asked for).
    Inline,
    /// On the log thread (the watchdog's: a blocked sink must not stop it).
    LogThread,
}

impl Timeline {
    /// The innermost open phase (the most recently opened one still open), with its budget.
    fn current_phase(&self) -> Option<(String, Option<Duration>)> {
        let st = self.lock();
        let current = (st.live_phases().rev())
            .map(|(_, p)| p)
            .find(|p| p.close.is_none())
            .map(|p| (p.label.clone(), p.budget));
        current
    }

    /// Takes a snapshot now (blocks ~150 ms: CPU is sampled twice) and delivers it on this
    /// thread. `phase` is the stuck phase with its budget; `None` means the innermost open one.
    pub(crate) fn stuck_snapshot(
        self: &Arc<Self>,
        reason: StuckReason,
        phase: Option<(String, Option<Duration>)>,
    ) -> StuckSnapshot {
        self.reserve_snapshots(1);
        self.take_reserved_snapshot(reason, phase, None, Delivery::Inline)
    }

    /// Announces `n` snapshots about to be taken, so that a completion arriving meanwhile
    /// waits for them (the watchdog reserves under the record lock, before it lets go).
    pub(crate) fn reserve_snapshots(&self, n: usize) {
        *self.in_flight() += n;
    }

    /// [`Self::stuck_snapshot`] for a snapshot reserved with [`Self::reserve_snapshots`];
    /// `early` is a first CPU sample this thread took ahead of time.
    pub(crate) fn take_reserved_snapshot(
        self: &Arc<Self>,
        reason: StuckReason,
        phase: Option<(String, Option<Duration>)>,
        early: Option<FirstSample>,
        delivery: Delivery,
    ) -> StuckSnapshot {
        self.take_fitted(reason, phase, early, delivery, None)
    }

    /// A snapshot the process dies right after (the service manager's `SIGABRT`), delivered
    /// on this thread: its CPU gap and socket reads fitted to `limit` as a kill deadline's
    /// are to the time left, so that it is recorded within about `limit`.
    pub(crate) fn snapshot_before_death(
        self: &Arc<Self>,
        reason: StuckReason,
        limit: Duration,
    ) -> StuckSnapshot {
        self.reserve_snapshots(1);
        self.take_fitted(reason, None, None, Delivery::Inline, Some(limit))
    }

    /// Takes and delivers a reserved snapshot, fitted to `limit` when given, else to the time
    /// left before a known kill.
    fn take_fitted(
        self: &Arc<Self>,
        reason: StuckReason,
        phase: Option<(String, Option<Duration>)>,
        early: Option<FirstSample>,
        delivery: Delivery,
        limit: Option<Duration>,
    ) -> StuckSnapshot {
        let phase = phase.or_else(|| self.current_phase());
        // Lines ordered from now on come after the moment the snapshot is of.
        let turns_before = self.log_order.handed_out();
        let (at, left) = {
            let st = self.lock();
            let at = st.offset(self.clock.now());
            let left = (st.kill_deadline)
                .filter(|_| st.origin.is_some() && st.finished.is_none())
                .map(|d| d.saturating_sub(at));
            (at, left)
        };
        // A snapshot before death has its own limit: the kill deadline that brought the
        // manager's SIGABRT has just passed, and the manager now waits `TimeoutAbortSec`.
        let left = limit.or(left);
        let dispatch = self.dispatch.get().and_then(|d| d.upgrade());
        let req = Request {
            budget: phase.as_ref().and_then(|(_, b)| *b),
            phase: phase.map(|(p, _)| p),
            at,
            reason,
            cpu_gap: fit_cpu_gap(self.config.cpu_sample_gap, left),
            // Half the time left: the socket tables must not make the snapshot late.
            socket_read_limit: left.map(|l| l / 2),
        };
        let snapshot = collect::take(&req, &self.spans, dispatch.as_ref(), early);
        self.deliver(&snapshot, turns_before, delivery);
        // After the record line: what the container's last state shows if the kill comes.
        if matches!(
            reason,
            StuckReason::KillDeadline | StuckReason::SupervisorAbort
        ) {
            self.termination_message_before_kill(&snapshot);
        }
        {
            let mut n = self.in_flight();
            *n = n.saturating_sub(1);
        }
        self.snapshot_done.notify_all();
        snapshot
    }

    /// Ends `n` reservations without a snapshot of their own (one snapshot covered them).
    pub(crate) fn release_snapshots(&self, n: usize) {
        if n == 0 {
            return;
        }
        {
            let mut in_flight = self.in_flight();
            *in_flight = in_flight.saturating_sub(n);
        }
        self.snapshot_done.notify_all();
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, usize> {
        self.snapshots_in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits (at most `limit`) until no snapshot is being taken: a snapshot the watchdog began
    /// as a phase ran out of budget is logged and recorded before the shutdown completes and
    /// the process exits.
    pub(crate) fn wait_for_snapshots(&self, limit: Duration) {
        let guard = self.in_flight();
        let _ = self
            .snapshot_done
            .wait_timeout_while(guard, limit, |n| *n > 0);
    }

    /// True while a snapshot is reserved or being taken.
    pub(crate) fn snapshot_in_flight(&self) -> bool {
        *self.in_flight() > 0
    }

    /// Writes the record line and logs the WARN line; `turns_before` is how many log turns had
    /// been handed out when the snapshot was taken: when lines were ordered meanwhile (the
    /// app's next phases go on while it is taken), they come out first, and the line says
    /// when it was logged, so that its order is plain. Lines ordered before the snapshot
    /// (its phase's `over budget`) are not that.
    fn deliver(self: &Arc<Self>, snapshot: &StuckSnapshot, turns_before: u64, delivery: Delivery) {
        let order = self.record_lock.lock();
        let findings: Vec<String> = snapshot
            .findings
            .iter()
            .take(RECORD_FINDINGS)
            .map(|f| cap(f, RECORD_TEXT_MAX))
            .collect();
        self.write(
            &json!({
                "kind": "stuck",
                "t": snapshot.at_s,
                "phase": snapshot.phase.as_deref().map(|p| cap(p, RECORD_TEXT_MAX)),
                "reason": snapshot.reason,
                "summary": snapshot.first_finding.as_ref().map(|f| cap(&f.summary(), RECORD_TEXT_MAX)),
                "findings": findings,
                "first": snapshot.first_finding.as_ref().map(record_parts),
            }),
            true,
        );
        let turn = self.log_order.take();
        let logged_late =
            (turn.number() > turns_before).then(|| self.lock().offset(self.clock.now()));
        drop(order);
        match delivery {
            Delivery::Inline => turn.emit(|| events::stuck(self, snapshot, logged_late)),
            Delivery::LogThread => {
                let snapshot = snapshot.clone();
                self.emit_later(turn, move |t| events::stuck(t, &snapshot, logged_late));
            }
        }
        {
            let mut st = self.lock();
            if st.stuck.len() < MAX_KEPT {
                st.stuck.push(snapshot.clone());
            }
        }
        if let Some(path) = self.diagnostic_path.get() {
            // Best effort, like the diagnostic itself: a failure costs only this copy.
            let _ = append_to_diagnostic(path, snapshot);
        }
    }

    /// Appends a heartbeat line (at most once a second, from the watchdog): after a SIGKILL
    /// the next start knows how long the stop really ran.
    pub(crate) fn heartbeat(&self, at: Duration) {
        self.write(&json!({"kind": "heartbeat", "t": secs(at)}), false);
    }
}

/// The first finding's parts for the record (each text capped), so that the next start's
/// verdict names the span and peer from them, not from the sentence.
fn record_parts(f: &StuckFinding) -> serde_json::Value {
    let text = |s: &Option<String>| s.as_deref().map(|s| cap(s, RECORD_TEXT_MAX));
    json!({
        "text": cap(&f.text, RECORD_TEXT_MAX),
        "span": text(&f.span),
        "path": f.path.iter().take(8).map(|p| cap(p, 100)).collect::<Vec<_>>(),
        "peer": text(&f.peer),
        "thread": text(&f.thread),
        "tid": f.tid,
        "syscall": text(&f.syscall),
        "idle_s": f.idle_s,
        "no_data_s": f.no_data_s,
    })
}

/// Longest text appended to the diagnostic file per snapshot.
const DIAGNOSTIC_TEXT_MAX: usize = 32 * 1024;

/// Appends the snapshot, as text an operator reads, to the diagnostic file (0600, no symlink
/// followed, one `write(2)`).
fn append_to_diagnostic(path: &std::path::Path, s: &StuckSnapshot) -> std::io::Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "=== stuck snapshot: {} at +{:.2}s ({:?}), took {:.0} ms ===",
        s.phase.as_deref().unwrap_or("shutdown"),
        s.at_s,
        s.reason,
        s.took_ms
    );
    for f in &s.findings {
        let _ = writeln!(text, "finding: {f}");
    }
    for sp in &s.spans {
        let idle = sp
            .idle_s
            .map_or_else(|| "running".to_owned(), |i| format!("idle {i:.1}s"));
        let _ = writeln!(
            text,
            "span: {}{{{}}} path={} age {:.1}s {idle} thread={}",
            sp.name,
            sp.fields.as_deref().unwrap_or("?"),
            sp.path.join("/"),
            sp.age_s,
            sp.last_thread.as_deref().unwrap_or("?")
        );
    }
    for t in &s.threads {
        let _ = writeln!(
            text,
            "thread: {} tid={} state={} syscall={} target={} cpu={}",
            t.name,
            t.tid,
            t.state,
            t.syscall.as_deref().unwrap_or("unknown"),
            t.target.as_deref().unwrap_or("-"),
            t.cpu_pct
                .map_or_else(|| "unknown".to_owned(), |c| format!("{c:.1}%"))
        );
    }
    for k in &s.sockets {
        let _ = writeln!(
            text,
            "socket: fd={} {} {} -> {} {} recv_q={} send_q={} last_recv={} last_send={}",
            k.fd,
            k.kind,
            k.local.as_deref().unwrap_or("?"),
            k.peer.as_deref().unwrap_or("-"),
            k.state.as_deref().unwrap_or("?"),
            k.recv_q.map_or_else(|| "?".to_owned(), |q| q.to_string()),
            k.send_q.map_or_else(|| "?".to_owned(), |q| q.to_string()),
            k.last_recv_s
                .map_or_else(|| "?".to_owned(), |d| format!("{d:.1}s")),
            k.last_send_s
                .map_or_else(|| "?".to_owned(), |d| format!("{d:.1}s"))
        );
    }
    for u in &s.unknown {
        let _ = writeln!(text, "unknown: {u}");
    }
    if s.truncated {
        text.push_str("(lists cut at their caps)\n");
    }
    let text = cap(&text, DIAGNOSTIC_TEXT_MAX);
    crate::sys::private_file::open_append(path)?.write_all(text.as_bytes())
}

/// The first `max` characters of `s`.
fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}
