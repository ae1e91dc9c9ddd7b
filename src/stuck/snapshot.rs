//! What a stuck snapshot holds: the public, serializable record of where and why a shutdown
//! phase is stuck (reference: the `report` module docs).

use serde::{Deserialize, Serialize};

use crate::stuck::connection_state::ConnectionState;

/// Why a [`StuckSnapshot`] was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StuckReason {
    /// A phase ran past its budget and was still open.
    Budget,
    /// The supervisor's kill was near (systemd's `TimeoutStopUSec`, or
    /// [`ForensicsBuilder::with_kill_deadline`](crate::ForensicsBuilder::with_kill_deadline)).
    KillDeadline,
    /// The app asked ([`ShutdownHandle::stuck_snapshot`](crate::ShutdownHandle::stuck_snapshot)).
    OnDemand,
    /// The service manager sent `SIGABRT` during the shutdown (systemd's
    /// `TimeoutStopFailureMode=abort` at `TimeoutStopSec`): taken, bounded, just before the
    /// process dies of that signal.
    SupervisorAbort,
}

impl StuckReason {
    /// `budget`, `kill_deadline`, `on_demand` or `supervisor_abort`, as in the JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::KillDeadline => "kill_deadline",
            Self::OnDemand => "on_demand",
            Self::SupervisorAbort => "supervisor_abort",
        }
    }
}

/// Where and why the shutdown is stuck: the app's open spans, its threads and what each one
/// waits in, its sockets and how long their peers have been silent, and one sentence per
/// finding joining the three.
///
/// Everything comes from what a process may read about itself without privileges: the spans
/// the [`ShutdownLayer`](crate::ShutdownLayer) tracks, `/proc/self/task/*`, `/proc/self/fd`,
/// `/proc/self/net/*` and `TCP_INFO` on its own sockets. A read that failed is listed in
/// [`unknown`](Self::unknown), never silently left out. Every list is capped;
/// [`truncated`](Self::truncated) says when a cap was hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StuckSnapshot {
    /// The phase that is stuck (the innermost open phase), if any.
    pub phase: Option<String>,
    /// When the snapshot was taken, seconds from the shutdown origin.
    pub at_s: f64,
    /// Why it was taken.
    pub reason: StuckReason,
    /// The stuck phase's budget, in seconds, when it has one.
    pub budget_s: Option<f64>,
    /// One sentence per finding, most telling first, e.g.
    /// `request{method=POST path=/upload} idle 29.8s; 127.0.0.1:5432 ESTABLISHED no data for 29.8s`.
    pub findings: Vec<String>,
    /// Threads the findings name as blocked in a system call (this crate's own threads, which
    /// always wait, are never among them).
    #[serde(default)]
    pub blocked_threads: usize,
    /// Connections the findings name with their peer's side stuck: silent (`no data for`),
    /// not reading, or not acknowledging. Both ends of a connection inside this process count
    /// once.
    #[serde(default)]
    pub idle_peers: usize,

    /// The first finding in parts (the span, its peer, the thread and its system call, how
    /// long each has waited), as the WARN line's fields and the flight record carry them.
    /// `None` when nothing was found.
    pub first_finding: Option<StuckFinding>,
    /// Open spans, oldest first (then longest idle).
    pub spans: Vec<OpenSpan>,
    /// The process's threads, blocked and spinning ones first.
    pub threads: Vec<ThreadState>,
    /// The process's sockets, the longest-silent established peers first.
    pub sockets: Vec<SocketState>,
    /// The HTTP connections served through `shutdown_forensics::http` (feature `axum`), the
    /// ones holding a request first; empty without it.
    #[serde(default)]
    pub connections: Vec<ConnectionState>,
    /// Reads that failed, each with its reason (for example `thread 812 syscall: Permission
    /// denied`): what the snapshot cannot tell.
    pub unknown: Vec<String>,
    /// True when a list was cut at its cap.
    pub truncated: bool,
    /// How long taking the snapshot took, in milliseconds (it samples CPU twice, ~150 ms apart).
    pub took_ms: f64,
}

/// One finding in parts: what the sentence in [`StuckSnapshot::findings`] says, field by
/// field, so that a log pipeline can query it and the next start's verdict can say it again
/// without re-reading rendered text. Every text is escaped; a part the finding does not name
/// is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StuckFinding {
    /// The whole sentence, as in [`StuckSnapshot::findings`].
    pub text: String,
    /// The span, with its fields: `request{method=POST path=/upload}` (a value holding a
    /// space, `=`, `;`, `{`, `}` or a quote is quoted).
    pub span: Option<String>,
    /// The span's parents' names, outermost first.
    pub path: Vec<String>,
    /// The peer of the socket it waits on: `10.0.0.7:5432`.
    pub peer: Option<String>,
    /// The thread it runs on, or the blocked thread the finding is about (its name).
    pub thread: Option<String>,
    /// That thread's id.
    pub tid: Option<u32>,
    /// The system call that thread sits in (`read`, `futex`, ...).
    pub syscall: Option<String>,
    /// Seconds the span has waited to be polled again (`None` while it runs).
    pub idle_s: Option<f64>,
    /// Seconds since the peer last sent data (`TCP_INFO`).
    pub no_data_s: Option<f64>,
}

impl StuckFinding {
    /// The short form the next start's verdict appends: `request{method=POST path=/upload}:
    /// 10.0.0.7:5432 no data for 29.8s` when the finding joins a span to its peer, else the
    /// sentence. Built from the parts, never by re-reading the sentence.
    #[must_use]
    pub fn summary(&self) -> String {
        match (&self.span, &self.peer) {
            (Some(span), Some(peer)) => match self.no_data_s {
                Some(s) => format!("{span}: {peer} no data for {s:.1}s"),
                None => format!("{span}: {peer}"),
            },
            _ => self.text.clone(),
        }
    }
}

/// A span still open when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OpenSpan {
    /// The span's name.
    pub name: String,
    /// Its fields as the layer captured them (`method=POST path=/upload`), whatever formats
    /// the app's logs: escaped, each value quoted when it holds a space, `=`, `;`, `{`, `}` or
    /// a quote, cut at 128 bytes (`...`). `None` when it has no fields, or when they cannot be
    /// read (a subscriber other than `tracing_subscriber`'s registry; the snapshot's `unknown`
    /// says so).
    pub fields: Option<String>,
    /// Its parents' names, outermost first.
    pub path: Vec<String>,
    /// Seconds since it was opened.
    pub age_s: f64,
    /// Seconds since it was last exited (or opened, if never entered): how long it has waited
    /// to be polled again. `None` while it is entered (running on a thread).
    pub idle_s: Option<f64>,
    /// The thread it last ran on: `name (tid N)`.
    pub last_thread: Option<String>,
}

/// One thread of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ThreadState {
    /// The kernel's thread id.
    pub tid: u32,
    /// The thread's name (`comm`), escaped.
    pub name: String,
    /// The scheduler state: `R` running, `S` sleeping, `D` uninterruptible, ...
    pub state: String,
    /// The system call it sits in (`read`, `futex`, `epoll_wait`, ...), `running` when it was
    /// on a CPU, `None` when `/proc/self/task/<tid>/syscall` could not be read.
    pub syscall: Option<String>,
    /// What the call waits on, when its argument is a descriptor:
    /// `fd 17 -> 10.0.0.7:5432 ESTABLISHED`, `fd 5 -> pipe`, `fd 3 -> epoll`, a file path.
    pub target: Option<String>,
    /// CPU used between two samples ~150 ms apart, in percent of one core.
    pub cpu_pct: Option<f64>,
    /// The kernel function a sleeping thread waits in (`/proc/self/task/<tid>/wchan`, e.g.
    /// `futex_wait_queue`), when the kernel shows it: a hint where `syscall` is unreadable.
    pub wchan: Option<String>,
}

/// One socket of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SocketState {
    /// Our descriptor.
    pub fd: i32,
    /// `tcp`, `tcp6`, `unix`, or `socket` when the kind is unknown.
    pub kind: String,
    /// The local address (a path for a Unix socket).
    pub local: Option<String>,
    /// The peer's address.
    pub peer: Option<String>,
    /// The connection state as the kernel and netstat name it (`ESTABLISHED`, `SYN_SENT`,
    /// `LISTEN`; `CONNECTED` for a Unix socket).
    pub state: Option<String>,
    /// Bytes received and not yet read by us.
    pub recv_q: Option<u64>,
    /// Bytes sent and not yet acknowledged (or not yet sent).
    pub send_q: Option<u64>,
    /// Seconds since data last arrived from the peer (`TCP_INFO`).
    pub last_recv_s: Option<f64>,
    /// Seconds since we last sent data (`TCP_INFO`).
    pub last_send_s: Option<f64>,
}
