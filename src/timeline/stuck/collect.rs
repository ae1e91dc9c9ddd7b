//! Taking a snapshot: read the tracked spans, the threads (twice, for CPU), the descriptors
//! and sockets, then join them into findings. Runs on the watchdog thread (or the caller's,
//! on demand): no async runtime, no lock of the app, no lock of this crate held while `/proc`
//! is read. Every list is capped and the whole snapshot is bounded in time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing_core::span::Id;
use tracing_core::Dispatch;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::registry::{LookupSpan, Registry, SpanRef};

use crate::sys::fd::{self, FdTarget};
use crate::sys::logfmt::{escape_hidden, Logfmt};
use crate::sys::net::{self, InetSocket, TcpState, UnixSocket};
use crate::sys::proc::clock_ticks_per_sec;
use crate::sys::task::{self, SyscallState, TaskSample};
use crate::timeline::stuck::snapshot::{
    OpenSpan, SocketState, StuckReason, StuckSnapshot, ThreadState,
};
use crate::timeline::stuck::spans::{coarse_now, coarse_since, SpanTracker, TrackedSpan};

/// Caps: the snapshot's size does not grow with the app's.
pub(crate) const MAX_SPANS_SCANNED: usize = 20_000;
pub(crate) const MAX_SPANS: usize = 50;
pub(crate) const MAX_THREADS: usize = 512;
pub(crate) const MAX_THREADS_KEPT: usize = 64;
pub(crate) const MAX_FDS: usize = 16_384;
pub(crate) const MAX_SOCKETS: usize = 64;
pub(crate) const MAX_FINDINGS: usize = 8;
/// Bytes read at most from each of `/proc/self/net/{tcp,tcp6,unix}`.
const NET_READ_LIMIT: usize = 8 << 20;
/// The default gap between the two CPU samples of every thread.
pub(crate) const CPU_SAMPLE_GAP: Duration = Duration::from_millis(150);
/// Longest a field string or name is kept, in characters.
const TEXT_MAX: usize = 200;
/// A thread using at least this share of a core between the samples is "spinning" (half a
/// core: on a busy machine a busy loop does not get a whole one).
const SPINNING_PCT: f64 = 50.0;
/// A peer silent for at least this long is worth a finding.
const SILENT_PEER: Duration = Duration::from_secs(1);

/// What a snapshot is about.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) phase: Option<String>,
    pub(crate) at: Duration,
    pub(crate) reason: StuckReason,
    pub(crate) budget: Option<Duration>,
    /// Gap between the two CPU samples; zero takes one sample (no CPU figures).
    pub(crate) cpu_gap: Duration,
}

/// One socket of ours, as found through `/proc/self/fd` and `/proc/self/net`.
#[derive(Debug, Clone)]
struct Sock {
    state: SocketState,
    peer_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    established: bool,
    last_recv: Option<Duration>,
}

/// Takes a snapshot now. `dispatch` gives the registry (fields, parents); without it spans
/// still have names, ages and threads.
pub(crate) fn take(
    req: &Request,
    tracker: &SpanTracker,
    dispatch: Option<&Dispatch>,
) -> StuckSnapshot {
    let started = Instant::now();
    let mut unknown = Vec::new();
    let mut truncated = false;

    // Threads, first sample (the second comes after the other reads, ~150 ms later).
    let tids = match task::list_tasks(MAX_THREADS) {
        Ok(t) => {
            truncated |= t.len() >= MAX_THREADS;
            t
        }
        Err(e) => {
            unknown.push(format!("threads: /proc/self/task: {e}"));
            Vec::new()
        }
    };
    // This thread is the one reading /proc (it would show as "running in pread64").
    let me = crate::timeline::stuck::spans::current_tid();
    let tids: Vec<u32> = tids.into_iter().filter(|t| *t != me).collect();
    let mut buf = Vec::new();
    let first: HashMap<u32, (TaskSample, Instant)> = tids
        .iter()
        .filter_map(|&tid| Some((tid, (task::read_task(tid, &mut buf)?, Instant::now()))))
        .collect();
    let first_done = Instant::now();

    // Spans (a brief lock per shard), then the registry for the chosen ones.
    let now_c = coarse_now();
    let mut tracked = tracker.collect(MAX_SPANS_SCANNED);
    truncated |= tracked.len() >= MAX_SPANS_SCANNED || tracker.untracked() > 0;
    if tracker.untracked() > 0 {
        unknown.push(format!(
            "spans: {} opened while the tracking cap was full were not tracked",
            tracker.untracked()
        ));
    }
    // Oldest first, then longest idle.
    tracked.sort_by(|a, b| {
        (a.slot.opened, a.slot.active)
            .cmp(&(b.slot.opened, b.slot.active))
            .then(a.id.cmp(&b.id))
    });
    truncated |= tracked.len() > MAX_SPANS;
    tracked.truncate(MAX_SPANS);

    // Descriptors and sockets.
    let fds = match fd::list_fds(MAX_FDS) {
        Ok(f) => {
            truncated |= f.len() >= MAX_FDS;
            f
        }
        Err(e) => {
            unknown.push(format!("descriptors: /proc/self/fd: {e}"));
            Vec::new()
        }
    };
    let fd_targets: HashMap<i32, FdTarget> = fds.iter().cloned().collect();
    let socks = sockets(&fds, &mut unknown);

    // Threads, second sample: CPU over the gap, and the syscall as it is now.
    let sampled_twice = !req.cpu_gap.is_zero();
    let gap = req.cpu_gap.saturating_sub(first_done.elapsed());
    if sampled_twice && !first.is_empty() && !gap.is_zero() {
        std::thread::sleep(gap);
    }
    let ticks = clock_ticks_per_sec();
    let mut samples: Vec<(TaskSample, Option<f64>, bool)> = Vec::new();
    for &tid in &tids {
        if !sampled_twice {
            if let Some((s, _)) = first.get(&tid) {
                samples.push((s.clone(), None, true));
            }
            continue;
        }
        let Some(now) = task::read_task(tid, &mut buf) else {
            continue; // gone between the samples
        };
        let (cpu, same_call) = match first.get(&tid) {
            Some((before, at)) => {
                let elapsed = at.elapsed().as_secs_f64();
                let used = now.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
                let cpu = ticks
                    .filter(|t| *t > 0.0 && elapsed > 0.0)
                    .map(|t| (used / t / elapsed * 100.0).min(100.0 * 64.0));
                (
                    cpu,
                    before.syscall.is_some() && before.syscall == now.syscall,
                )
            }
            None => (None, false),
        };
        samples.push((now, cpu, same_call));
    }
    if samples.iter().any(|(s, _, _)| s.syscall.is_none()) {
        unknown.push(
            "thread syscalls: /proc/self/task/<tid>/syscall not readable for some threads \
             (needs ptrace access to ourselves)"
                .to_owned(),
        );
    }

    let names: HashMap<u32, String> = samples
        .iter()
        .map(|(s, _, _)| (s.tid, escape_hidden(&s.name, 64)))
        .collect();
    let threads: Vec<ThreadView> = samples
        .into_iter()
        .map(|(s, cpu, same_call)| ThreadView::new(s, cpu, same_call, &fd_targets, &socks))
        .collect();

    let spans: Vec<SpanView> = tracked
        .iter()
        .map(|t| SpanView::new(t, now_c, dispatch, &names, &socks))
        .collect();

    let findings = join(&spans, &threads, &socks);

    let mut sockets: Vec<&Sock> = socks.values().collect();
    sockets.sort_by(|a, b| {
        (b.established, b.last_recv, a.state.fd).cmp(&(a.established, a.last_recv, b.state.fd))
    });
    truncated |= sockets.len() > MAX_SOCKETS;
    let sockets = sockets
        .into_iter()
        .take(MAX_SOCKETS)
        .map(|s| s.state.clone())
        .collect();

    let mut thread_states: Vec<&ThreadView> = threads.iter().collect();
    thread_states.sort_by_key(|t| (!t.notable(), t.state.tid));
    truncated |= thread_states.len() > MAX_THREADS_KEPT;
    let threads = thread_states
        .into_iter()
        .take(MAX_THREADS_KEPT)
        .map(|t| t.state.clone())
        .collect();

    StuckSnapshot {
        phase: req.phase.clone(),
        at_s: req.at.as_secs_f64(),
        reason: req.reason,
        budget_s: req.budget.map(|b| b.as_secs_f64()),
        findings,
        spans: spans.into_iter().map(|s| s.span).collect(),
        threads,
        sockets,
        unknown,
        truncated,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Every socket among our descriptors, by descriptor.
fn sockets(fds: &[(i32, FdTarget)], unknown: &mut Vec<String>) -> HashMap<i32, Sock> {
    let ours: Vec<(i32, u64)> = fds
        .iter()
        .filter_map(|(fd, t)| match t {
            FdTarget::Socket { inode } => Some((*fd, *inode)),
            _ => None,
        })
        .collect();
    if ours.is_empty() {
        return HashMap::new();
    }
    let inet: HashMap<u64, InetSocket> = match net::read_inet_sockets(NET_READ_LIMIT) {
        Ok(v) => v.into_iter().map(|s| (s.inode, s)).collect(),
        Err(e) => {
            unknown.push(format!("TCP sockets: /proc/self/net/tcp: {e}"));
            HashMap::new()
        }
    };
    let unix: HashMap<u64, UnixSocket> = match net::read_unix_sockets(NET_READ_LIMIT) {
        Ok(v) => v.into_iter().map(|s| (s.inode, s)).collect(),
        Err(e) => {
            unknown.push(format!("Unix sockets: /proc/self/net/unix: {e}"));
            HashMap::new()
        }
    };
    let mut out = HashMap::new();
    for (fd, inode) in ours {
        let sock = if let Some(s) = inet.get(&inode) {
            let times = net::tcp_info(fd).ok();
            let peer_known = s.state != TcpState::Listen;
            Sock {
                state: SocketState {
                    fd,
                    kind: if s.local.is_ipv4() { "tcp" } else { "tcp6" }.to_owned(),
                    local: Some(show(s.local)),
                    peer: peer_known.then(|| show(s.peer)),
                    state: Some(s.state.name().to_owned()),
                    recv_q: Some(s.recv_q),
                    send_q: Some(s.send_q),
                    last_recv_s: times.map(|t| t.last_data_recv.as_secs_f64()),
                    last_send_s: times.map(|t| t.last_data_sent.as_secs_f64()),
                },
                peer_addr: peer_known.then(|| canonical(s.peer)),
                local_addr: Some(canonical(s.local)),
                established: s.state == TcpState::Established,
                last_recv: times.map(|t| t.last_data_recv),
            }
        } else if let Some(u) = unix.get(&inode) {
            Sock {
                state: SocketState {
                    fd,
                    kind: "unix".to_owned(),
                    local: u.path.as_deref().map(|p| escape_hidden(p, TEXT_MAX)),
                    peer: None,
                    state: Some(u.state.to_owned()),
                    recv_q: None,
                    send_q: None,
                    last_recv_s: None,
                    last_send_s: None,
                },
                peer_addr: None,
                local_addr: None,
                established: false,
                last_recv: None,
            }
        } else {
            // UDP, netlink, or a socket of another namespace: the kind is not told here.
            Sock {
                state: SocketState {
                    fd,
                    kind: "socket".to_owned(),
                    local: None,
                    peer: None,
                    state: None,
                    recv_q: None,
                    send_q: None,
                    last_recv_s: None,
                    last_send_s: None,
                },
                peer_addr: None,
                local_addr: None,
                established: false,
                last_recv: None,
            }
        };
        out.insert(fd, sock);
    }
    out
}

/// An IPv4 peer of a dual-stack socket (`[::ffff:10.0.0.7]:5432`) as `10.0.0.7:5432`.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn show(addr: SocketAddr) -> String {
    canonical(addr).to_string()
}

/// `10.0.0.7:5432 ESTABLISHED` (or `unix /run/x.sock CONNECTED`).
fn describe_sock(s: &Sock) -> String {
    let st = &s.state;
    let state = st.state.as_deref().unwrap_or("state unknown");
    match (&st.peer, &st.local) {
        (Some(peer), _) => format!("{peer} {state}"),
        (None, Some(local)) if st.kind == "unix" => format!("unix {} {state}", Logfmt(local)),
        (None, Some(local)) => format!("{local} {state}"),
        (None, None) => format!("{} {state}", st.kind),
    }
}

/// ` no data for 29.8s`, when known.
fn silence(s: &Sock) -> String {
    match s.last_recv {
        Some(d) if s.established => format!(" no data for {:.1}s", d.as_secs_f64()),
        _ => String::new(),
    }
}

/// One thread with what it waits on.
#[derive(Debug)]
struct ThreadView {
    state: ThreadState,
    /// The socket its syscall waits on.
    sock_fd: Option<i32>,
    blocked: bool,
    /// Its call waits on a socket, pipe or file.
    on_io: bool,
    spinning: bool,
    /// `blocked in read(fd 17 -> 10.0.0.7:5432 ESTABLISHED)` or `spinning 100% CPU`.
    doing: Option<String>,
}

impl ThreadView {
    fn new(
        s: TaskSample,
        cpu: Option<f64>,
        same_call: bool,
        fds: &HashMap<i32, FdTarget>,
        socks: &HashMap<i32, Sock>,
    ) -> Self {
        let (syscall, call) = match s.syscall {
            None => (None, None),
            Some(SyscallState::Running) => (Some("running".to_owned()), None),
            Some(SyscallState::NotInSyscall) => (Some("none".to_owned()), None),
            Some(SyscallState::InSyscall { nr, args }) => {
                let name =
                    task::syscall_name(nr).map_or_else(|| format!("syscall {nr}"), str::to_owned);
                (Some(name), Some((nr, args)))
            }
        };
        let mut sock_fd = None;
        // Waiting on a socket, pipe or file (not on an epoll or eventfd: that is how an idle
        // event loop or pool waits).
        let mut on_io = false;
        let target = call.and_then(|(nr, args)| {
            let arg = task::syscall_fd_arg(nr)?;
            let fd = i32::try_from(*args.get(arg)?).ok()?;
            // A descriptor opened after the listing is read now.
            let listed = fds.get(&fd).cloned().or_else(|| fd::read_fd(fd));
            on_io = matches!(
                listed,
                Some(FdTarget::Socket { .. } | FdTarget::Pipe { .. } | FdTarget::Path(_))
            );
            let what = match listed.as_ref() {
                Some(FdTarget::Socket { .. }) => match socks.get(&fd) {
                    Some(sock) => {
                        sock_fd = Some(fd);
                        describe_sock(sock)
                    }
                    None => "socket".to_owned(),
                },
                Some(FdTarget::Pipe { .. }) => "pipe".to_owned(),
                Some(FdTarget::AnonInode(kind)) if kind == "eventpoll" => "epoll".to_owned(),
                Some(FdTarget::AnonInode(kind)) => escape_hidden(kind, TEXT_MAX),
                Some(FdTarget::Path(p)) => escape_hidden(p, TEXT_MAX),
                Some(FdTarget::Other(o)) => escape_hidden(o, TEXT_MAX),
                None => "closed or unknown descriptor".to_owned(),
            };
            Some(format!("fd {fd} -> {what}"))
        });
        // Without a CPU figure (one sample), a thread sleeping in a call counts as blocked.
        let idle_cpu = cpu.is_none_or(|c| c < 1.0);
        let state_char = s.state;
        let blocked = call.is_some() && idle_cpu && same_call && matches!(state_char, 'S' | 'D');
        let spinning = cpu.is_some_and(|c| c >= SPINNING_PCT);
        let doing = if spinning {
            Some(format!("spinning {:.0}% CPU", cpu.unwrap_or(0.0)))
        } else if blocked {
            let name = syscall.as_deref().unwrap_or("?");
            let mut d = match &target {
                Some(t) => format!("blocked in {name}({t})"),
                None => format!("blocked in {name}"),
            };
            if state_char == 'D' {
                d.push_str(" (uninterruptible)");
            }
            if let Some(sock) = sock_fd.and_then(|fd| socks.get(&fd)) {
                d.push_str(&silence(sock));
            }
            Some(d)
        } else {
            None
        };
        Self {
            state: ThreadState {
                tid: s.tid,
                name: escape_hidden(&s.name, 64),
                state: state_char.to_string(),
                syscall,
                target,
                cpu_pct: cpu.map(|c| (c * 10.0).round() / 10.0),
            },
            sock_fd,
            blocked,
            on_io,
            spinning,
            doing,
        }
    }

    /// Blocked on a socket, pipe or file, in `D` state, or spinning: worth listing first.
    fn notable(&self) -> bool {
        self.spinning || (self.blocked && self.on_io) || self.state.state == "D"
    }

    /// This crate's own threads (`shutdown-signals`, `shutdown-watchdog`, ...): listed, but
    /// never a finding (the signal listener always waits on its pipe).
    fn ours(&self) -> bool {
        self.state.name.starts_with("shutdown-")
    }

    fn who(&self) -> String {
        format!(
            "thread {} (tid {})",
            Logfmt(&self.state.name),
            self.state.tid
        )
    }
}

/// One tracked span with what the registry knows of it.
#[derive(Debug)]
struct SpanView {
    span: OpenSpan,
    entered: bool,
    thread: u32,
    /// The socket its fields name (an address equal to a socket's peer or local address).
    sock_fd: Option<i32>,
    /// `request{method=POST path=/upload}`.
    render: String,
}

impl SpanView {
    fn new(
        t: &TrackedSpan,
        now_c: u64,
        dispatch: Option<&Dispatch>,
        names: &HashMap<u32, String>,
        socks: &HashMap<i32, Sock>,
    ) -> Self {
        let (fields, path) = registry_details(dispatch, t.id);
        let name = escape_hidden(t.slot.meta.name(), TEXT_MAX);
        let render = match &fields {
            Some(f) if !f.is_empty() => format!("{name}{{{f}}}"),
            _ => name.clone(),
        };
        // A socket whose peer the fields name (the server's end of a request), else one whose
        // local address they name; the lowest descriptor when several match.
        let sock_fd = fields.as_deref().and_then(|f| {
            let addrs = addresses(f);
            let find = |pick: fn(&Sock) -> Option<SocketAddr>| {
                socks
                    .iter()
                    .filter(|(_, s)| pick(s).is_some_and(|a| addrs.contains(&a)))
                    .map(|(fd, _)| *fd)
                    .min()
            };
            find(|s| s.peer_addr).or_else(|| find(|s| s.local_addr))
        });
        let entered = t.slot.entered > 0;
        let thread = t.slot.thread;
        let last_thread = (thread != 0).then(|| match names.get(&thread) {
            Some(n) => format!("{} (tid {thread})", Logfmt(n)),
            None => format!("exited thread (tid {thread})"),
        });
        Self {
            span: OpenSpan {
                name,
                fields,
                path,
                age_s: round1(coarse_since(t.slot.opened, now_c)),
                idle_s: (!entered).then(|| round1(coarse_since(t.slot.active, now_c))),
                last_thread,
            },
            entered,
            thread,
            sock_fd,
            render,
        }
    }
}

fn round1(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The span's fields as the app's formatter recorded them, and its parents' names.
fn registry_details(dispatch: Option<&Dispatch>, id: u64) -> (Option<String>, Vec<String>) {
    let Some(registry) = dispatch.and_then(|d| d.downcast_ref::<Registry>()) else {
        return (None, Vec::new());
    };
    if id == 0 {
        return (None, Vec::new());
    }
    let Some(span) = registry.span(&Id::from_u64(id)) else {
        return (None, Vec::new());
    };
    let fields = fields_of(&span);
    let mut path: Vec<String> = span
        .scope()
        .skip(1)
        .take(8)
        .map(|s| escape_hidden(s.name(), TEXT_MAX))
        .collect();
    path.reverse();
    (fields, path)
}

/// The span's fields as the app's `fmt` layer recorded them (default or JSON field formatter),
/// escaped and capped; `None` when no formatter recorded them.
pub(crate) fn fields_of<'a, R: LookupSpan<'a>>(span: &SpanRef<'a, R>) -> Option<String> {
    let ext = span.extensions();
    let raw = ext
        .get::<FormattedFields<DefaultFields>>()
        .map(|f| f.fields.as_str())
        .or_else(|| {
            ext.get::<FormattedFields<JsonFields>>()
                .map(|f| f.fields.as_str())
        })?;
    Some(escape_hidden(raw.trim(), TEXT_MAX))
}

/// Socket addresses written in a field string (`peer=10.0.0.7:5432`, `addr="[::1]:80"`).
fn addresses(fields: &str) -> Vec<SocketAddr> {
    fields
        .split(|c: char| c.is_whitespace() || matches!(c, '=' | '"' | ',' | '{' | '}' | '(' | ')'))
        .filter(|w| w.contains(':'))
        .filter_map(|w| w.parse().ok().map(canonical))
        .take(8)
        .collect()
}

/// One sentence per finding, most telling first.
fn join(spans: &[SpanView], threads: &[ThreadView], socks: &HashMap<i32, Sock>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut told_socks: Vec<i32> = Vec::new();
    let mut told_threads: Vec<u32> = Vec::new();
    let by_tid: HashMap<u32, &ThreadView> = threads.iter().map(|t| (t.state.tid, t)).collect();

    // Spans joined to a socket or to a blocked or spinning thread first, then the oldest.
    let mut ranked: Vec<&SpanView> = spans.iter().collect();
    let score = |s: &SpanView| {
        let on_thread = s.entered && by_tid.get(&s.thread).is_some_and(|t| t.doing.is_some());
        u8::from(s.sock_fd.is_some()) * 2 + u8::from(on_thread)
    };
    ranked.sort_by_key(|s| std::cmp::Reverse(score(s)));
    for s in ranked.into_iter().take(3) {
        let mut line = String::new();
        if s.entered {
            let _ = write!(line, "{} running {:.1}s", s.render, s.span.age_s);
            if let Some(t) = by_tid.get(&s.thread) {
                let _ = write!(line, " on {}", t.who());
                if let Some(doing) = &t.doing {
                    let _ = write!(line, ": {doing}");
                    told_threads.push(t.state.tid);
                    told_socks.extend(t.sock_fd);
                }
            }
        } else {
            let idle = s.span.idle_s.unwrap_or(0.0);
            let _ = write!(line, "{} idle {idle:.1}s", s.render);
        }
        if let Some(sock) = s.sock_fd.and_then(|fd| socks.get(&fd)) {
            if !told_socks.contains(&sock.state.fd) {
                let _ = write!(line, "; {}{}", describe_sock(sock), silence(sock));
                told_socks.push(sock.state.fd);
            }
        }
        out.push(line);
    }
    // Threads blocked on a descriptor, in D state, or spinning.
    for t in threads.iter().filter(|t| t.notable() && !t.ours()) {
        if out.len() >= MAX_FINDINGS || told_threads.contains(&t.state.tid) {
            continue;
        }
        if let Some(doing) = &t.doing {
            out.push(format!("{} {doing}", t.who()));
            told_socks.extend(t.sock_fd);
        } else if t.state.state == "D" {
            out.push(format!("{} in uninterruptible sleep", t.who()));
        }
    }
    // Established peers that have been silent.
    let mut silent: Vec<&Sock> = socks
        .values()
        .filter(|s| s.established && s.last_recv.is_some_and(|d| d >= SILENT_PEER))
        .filter(|s| !told_socks.contains(&s.state.fd))
        .collect();
    silent.sort_by_key(|s| std::cmp::Reverse(s.last_recv));
    for s in silent.into_iter().take(3) {
        if out.len() >= MAX_FINDINGS {
            break;
        }
        let local = s.state.local.as_deref().unwrap_or("?");
        out.push(format!(
            "fd {} {local} -> {}{}",
            s.state.fd,
            describe_sock(s),
            silence(s)
        ));
    }
    if out.is_empty() {
        out.push("no open span, blocked thread or silent peer found".to_owned());
    }
    out.truncate(MAX_FINDINGS);
    out
}

/// The short form for the flight record and the next start's verdict:
/// `request{method=POST path=/upload}: 10.0.0.7:5432 no data for 29.8s`.
pub(crate) fn summary(snapshot: &StuckSnapshot) -> Option<String> {
    let first = snapshot.findings.first()?;
    // "<span> idle 29.8s; <peer> ESTABLISHED no data for 29.8s" → "<span>: <peer> no data for 29.8s"
    if let Some((span, rest)) = first.split_once("; ") {
        let span = span.rsplit_once(" idle ").map_or(span, |(s, _)| s);
        let rest = rest.replace(" ESTABLISHED", "");
        return Some(format!("{span}: {rest}"));
    }
    Some(first.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_in_field_text() {
        let a = addresses(r#"method=POST peer=127.0.0.1:5555 up="[::1]:80" path=/x:y"#);
        assert_eq!(
            a,
            vec![
                "127.0.0.1:5555".parse::<SocketAddr>().unwrap(),
                "[::1]:80".parse().unwrap()
            ]
        );
        assert!(addresses("").is_empty());
    }

    #[test]
    fn the_summary_names_the_span_and_the_silent_peer() {
        let snap = StuckSnapshot {
            phase: Some("drain".into()),
            at_s: 30.0,
            reason: StuckReason::Budget,
            budget_s: Some(30.0),
            findings: vec![
                "request{method=POST path=/upload} idle 29.8s; 10.0.0.7:5432 ESTABLISHED no data for 29.8s"
                    .into(),
            ],
            spans: Vec::new(),
            threads: Vec::new(),
            sockets: Vec::new(),
            unknown: Vec::new(),
            truncated: false,
            took_ms: 0.0,
        };
        assert_eq!(
            summary(&snap).unwrap(),
            "request{method=POST path=/upload}: 10.0.0.7:5432 no data for 29.8s"
        );
    }
}
