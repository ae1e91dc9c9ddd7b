//! The context as one logfmt line and as the ONE `Shutdown context` event.

use std::fmt;

use super::ShutdownContext;
use crate::context::manager_job::ManagerJob;
use crate::context::markers::{MarkerInfo, MarkerStatus};
use crate::context::signal::SignalSender;
use crate::sys::logfmt::{push_pair, push_str_pair, TextField};
use tracing_core::field::{display, Value};

impl ShutdownContext {
    fn log_fields(&self) -> LogFields<'_> {
        let sender = self.sender.as_ref();
        LogFields {
            signal: &self.signal,
            sender_pid: OrUnknown(sender.map(|s| s.pid)),
            sender_name: sender.map_or("unknown", SignalSender::display_name),
            sender_uid: OrUnknown(sender.map(|s| s.uid)),
            cause: sender.map_or("unknown", |s| s.cause.as_str()),
            under_systemd: self.under_systemd,
            unit: self.systemd_unit.as_deref().unwrap_or("none"),
            parent_pid: self.ppid,
            parent_name: self.parent.name.as_deref().unwrap_or("unknown"),
            loadavg_1m: OrUnknown(self.loadavg_1m.map(TwoDecimals)),
            takeover: self
                .takeover_marker
                .as_ref()
                .map(|m| marker_word(m, "self")),
            planned_stop: self
                .planned_stop_marker
                .as_ref()
                .map(|m| marker_word(m, "yes")),
            tracer_pid: self.tracer_pid,
            supervisor: self.supervisor.as_str(),
            // The run's id under systemd (`journalctl _SYSTEMD_INVOCATION_ID=...`).
            invocation_id: self
                .systemd_invocation_id
                .as_deref()
                .filter(|_| self.under_systemd),
            stop: self.stop_kind(),
            // Only a marker that names us gives the stop its reason.
            stop_reason: (self.planned_stop_marker.as_ref())
                .filter(|m| m.for_self)
                .and_then(|m| m.reason.as_deref()),
            stop_job: self.manager_job.as_ref().map(ManagerJob::as_word),
            correlation_id: self.correlation_id.as_deref(),
            parent_cmdline: self.parent.cmdline.as_deref(),
        }
    }

    /// The context as one logfmt line, in the order of the `Shutdown context` event:
    ///
    /// `signal sender_pid sender_name sender_uid cause under_systemd unit parent_pid parent_name
    /// loadavg_1m` (always; `unknown` when a fact could not be had, `unit=none` outside a
    /// systemd service), then only when present `takeover_marker_present=self|other|...`,
    /// `planned_stop_marker_present=yes|other|...`, `tracer_pid`, then `supervisor`,
    /// `invocation_id` (under systemd), `stop=planned|supervisor|unexpected`, `stop_reason` (the
    /// planned-stop marker's `reason`, when it names us and gives one), `stop_job` (only when
    /// the service manager was asked: `stop`, `restart`, `none` or `unknown`), `correlation_id`
    /// and (only when opted in) `parent_cmdline`.
    /// Values that could break a line are quoted and escaped.
    #[must_use]
    pub fn to_log_line(&self) -> String {
        let f = self.log_fields();
        let mut out = String::with_capacity(256);
        push_str_pair(&mut out, "signal", f.signal);
        push_pair(&mut out, "sender_pid", f.sender_pid);
        push_str_pair(&mut out, "sender_name", f.sender_name);
        push_pair(&mut out, "sender_uid", f.sender_uid);
        push_str_pair(&mut out, "cause", f.cause);
        push_pair(&mut out, "under_systemd", f.under_systemd);
        push_str_pair(&mut out, "unit", f.unit);
        push_pair(&mut out, "parent_pid", f.parent_pid);
        push_str_pair(&mut out, "parent_name", f.parent_name);
        push_pair(&mut out, "loadavg_1m", f.loadavg_1m);
        if let Some(word) = f.takeover {
            push_str_pair(&mut out, "takeover_marker_present", word);
        }
        if let Some(word) = f.planned_stop {
            push_str_pair(&mut out, "planned_stop_marker_present", word);
        }
        if let Some(tracer) = f.tracer_pid {
            push_pair(&mut out, "tracer_pid", tracer);
        }
        push_str_pair(&mut out, "supervisor", f.supervisor);
        if let Some(id) = f.invocation_id {
            push_str_pair(&mut out, "invocation_id", id);
        }
        push_str_pair(&mut out, "stop", f.stop);
        if let Some(reason) = f.stop_reason {
            push_str_pair(&mut out, "stop_reason", reason);
        }
        if let Some(job) = f.stop_job {
            push_str_pair(&mut out, "stop_job", job);
        }
        if let Some(id) = f.correlation_id {
            push_str_pair(&mut out, "correlation_id", id);
        }
        if let Some(cmd) = f.parent_cmdline {
            push_str_pair(&mut out, "parent_cmdline", cmd);
        }
        out
    }

    /// The context as JSON (keys as the struct's fields, `self` for [`Self::process`]). Never
    /// fails: a serialization error (which these plain types cannot produce) yields `{}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Emits the ONE `Shutdown context` event (target `shutdown`) with the context's facts as
    /// structured fields, in the order of [`Self::to_log_line`]: at INFO for a routine stop
    /// job of the service manager (`stop=supervisor`), else at WARN (`stop=unexpected`, and
    /// `stop=planned` for a marker). A text formatter shows
    /// what `to_log_line` renders, except `loadavg_1m`, a number: `0.4` where the line has
    /// `0.40`. A structured one (JSON, journald) gets numbers as numbers (`unknown`, a string,
    /// where a number could not be had), booleans as booleans, and strings as themselves.
    pub fn log(&self) {
        let f = self.log_fields();
        let unknown = display("unknown");
        let sender_pid: &dyn Value = f.sender_pid.0.as_ref().map_or(&unknown, |p| p);
        let sender_uid: &dyn Value = f.sender_uid.0.as_ref().map_or(&unknown, |u| u);
        // Two decimals, as the kernel gives it (`/proc/loadavg`).
        let load = f.loadavg_1m.0.map(|l| (l.0 * 100.0).round() / 100.0);
        let loadavg_1m: &dyn Value = load.as_ref().map_or(&unknown, |l| l);
        let text = TextField::new;
        let (signal, sender_name, unit) = (text(f.signal), text(f.sender_name), text(f.unit));
        let parent_name = text(f.parent_name);
        let invocation_id = f.invocation_id.map(text);
        let stop_reason = f.stop_reason.map(text);
        let correlation_id = f.correlation_id.map(text);
        let parent_cmdline = f.parent_cmdline.map(text);
        let stop_job = f.stop_job.map(text);
        // One field list for both levels: `tracing`'s macros need the level as a constant.
        macro_rules! context_event {
            ($level:expr) => {
                tracing::event!(
                    target: crate::sys::target::PHASE_TARGET,
                    $level,
                    signal = signal.value(),
                    sender_pid,
                    sender_name = sender_name.value(),
                    sender_uid,
                    // Fixed words: bare in text (a `&str` would be quoted), the same in JSON.
                    cause = display(f.cause),
                    under_systemd = f.under_systemd,
                    unit = unit.value(),
                    parent_pid = f.parent_pid,
                    parent_name = parent_name.value(),
                    loadavg_1m,
                    takeover_marker_present = f.takeover.map(display),
                    planned_stop_marker_present = f.planned_stop.map(display),
                    tracer_pid = f.tracer_pid,
                    supervisor = display(f.supervisor),
                    invocation_id = invocation_id.as_ref().map(TextField::value),
                    stop = display(f.stop),
                    stop_reason = stop_reason.as_ref().map(TextField::value),
                    stop_job = stop_job.as_ref().map(TextField::value),
                    correlation_id = correlation_id.as_ref().map(TextField::value),
                    parent_cmdline = parent_cmdline.as_ref().map(TextField::value),
                    "Shutdown context"
                )
            };
        }
        // A routine stop is INFO: a stop job (an operator's `systemctl stop`, a restart) or a
        // planned-stop marker that names us (a deploy said so first); the rest is WARN.
        if f.stop == "supervisor" || f.stop == "planned" {
            context_event!(tracing::Level::INFO);
        } else {
            context_event!(tracing::Level::WARN);
        }
    }
}

/// The values of the context line, computed once for both renderings.
struct LogFields<'a> {
    signal: &'a str,
    sender_pid: OrUnknown<u32>,
    sender_name: &'a str,
    sender_uid: OrUnknown<u32>,
    cause: &'static str,
    under_systemd: bool,
    unit: &'a str,
    parent_pid: u32,
    parent_name: &'a str,
    loadavg_1m: OrUnknown<TwoDecimals>,
    takeover: Option<&'static str>,
    planned_stop: Option<&'static str>,
    tracer_pid: Option<u32>,
    supervisor: &'static str,
    invocation_id: Option<&'a str>,
    stop: &'static str,
    stop_reason: Option<&'a str>,
    stop_job: Option<&'a str>,
    correlation_id: Option<&'a str>,
    parent_cmdline: Option<&'a str>,
}

/// A fact, or `unknown` when it could not be had: the line keeps its ten fixed fields.
#[derive(Clone, Copy)]
struct OrUnknown<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrUnknown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

#[derive(Clone, Copy)]
struct TwoDecimals(f64);

impl fmt::Display for TwoDecimals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

/// `self`/`yes` when the marker names us, `other` when it names someone else, else its status.
fn marker_word(m: &MarkerInfo, mine: &'static str) -> &'static str {
    match m.status {
        MarkerStatus::Valid if m.for_self => mine,
        MarkerStatus::Valid if m.stale => "stale",
        MarkerStatus::Valid => "other",
        MarkerStatus::Malformed => "malformed",
        MarkerStatus::TooLarge => "too_large",
        MarkerStatus::NotAFile => "not_a_file",
        MarkerStatus::Unreadable => "unreadable",
    }
}
