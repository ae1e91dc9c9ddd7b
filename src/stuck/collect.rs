//! Taking a snapshot: read the tracked spans, the threads (twice, for CPU), the descriptors
//! and sockets, then join them into findings. Runs on the watchdog thread (or the caller's,
//! on demand): no async runtime, no lock of the app, no lock of this crate held while `/proc`
//! is read. Every list is capped and the whole snapshot is bounded in time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing_core::Dispatch;

use crate::stuck::connections;
use crate::stuck::findings::{join, MAX_FINDINGS, NOTHING_FOUND};
use crate::stuck::snapshot::{SocketState, StuckReason, StuckSnapshot};
use crate::stuck::spans::{coarse_now, SpanTracker};
use crate::stuck::views::{canonical, show, Sock, SpanView, ThreadView, TEXT_MAX};
use crate::sys::fd::{self, FdTarget};
use crate::sys::logfmt::escape_hidden;
use crate::sys::net::{self, InetSocket, TcpState, UnixSocket};
use crate::sys::proc::clock_ticks_per_sec;
use crate::sys::task::{self, TaskSample};

/// Caps: the snapshot's size does not grow with the app's.
pub(crate) const MAX_SPANS_SCANNED: usize = 20_000;
pub(crate) const MAX_SPANS: usize = 50;
pub(crate) const MAX_THREADS: usize = 512;
pub(crate) const MAX_THREADS_KEPT: usize = 64;
pub(crate) const MAX_FDS: usize = 16_384;
pub(crate) const MAX_SOCKETS: usize = 64;
/// Bytes read at most from each of `/proc/self/net/{tcp,tcp6,unix}`.
const NET_READ_LIMIT: usize = 8 << 20;
/// The default gap between the two CPU samples of every thread.
pub(crate) const CPU_SAMPLE_GAP: Duration = Duration::from_millis(150);

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
    let me = crate::stuck::spans::current_tid();
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
    unknown.extend(tracker.caveats());
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
        let Some((before, at)) = first.get(&tid) else {
            continue; // unreadable at the first sample
        };
        let Some(now) = task::resample_task(before, &mut buf) else {
            continue; // gone between the samples
        };
        let elapsed = at.elapsed().as_secs_f64();
        let used = now.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
        let cpu = ticks
            .filter(|t| *t > 0.0 && elapsed > 0.0)
            .map(|t| (used / t / elapsed * 100.0).min(100.0 * 64.0));
        let same_call = before.syscall.is_some() && before.syscall == now.syscall;
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

    // HTTP connections (feature `axum`) first: each names what holds the drain. Their
    // sockets and spans are told there, not again as silent peers and idle spans.
    let conns = connections::read(&socks, &mut unknown);
    truncated |= conns.truncated;
    let (app_spans, http_spans) = connections::split_http(spans, &tracked);
    let app_socks: HashMap<i32, Sock> = socks
        .iter()
        .filter(|(fd, _)| !conns.fds.contains(fd))
        .map(|(fd, s)| (*fd, s.clone()))
        .collect();
    let mut findings = conns.findings;
    let rest = join(&app_spans, &threads, &app_socks);
    if findings.is_empty() || rest.iter().any(|f| f != NOTHING_FOUND) {
        findings.extend(rest);
    }
    findings.truncate(MAX_FINDINGS);
    let spans = connections::restore(app_spans, http_spans);

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
        connections: conns.list,
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
            let mut sock = Sock::without_address(fd, "unix");
            sock.state.local = u.path.as_deref().map(|p| escape_hidden(p, TEXT_MAX));
            sock.state.state = Some(u.state.to_owned());
            sock
        } else {
            // UDP, netlink, or a socket of another namespace: the kind is not told here.
            Sock::without_address(fd, "socket")
        };
        out.insert(fd, sock);
    }
    out
}
