//! Taking a snapshot: read the tracked spans, the threads (twice, for CPU), the descriptors
//! and sockets, then join them into findings. Runs on the watchdog thread (or the caller's,
//! on demand): no async runtime, no lock of the app, no lock of this crate held while `/proc`
//! is read. Every list is capped and the whole snapshot is bounded in time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing_core::Dispatch;

use crate::stuck::connections;
use crate::stuck::findings::{join, Findings, MAX_FINDINGS, NOTHING_FOUND};
use crate::stuck::snapshot::{SocketState, StuckFinding, StuckReason, StuckSnapshot};
use crate::stuck::spans::{coarse_now, SpanTracker};
use crate::stuck::views::{canonical, cap_chars, show, Sock, SpanView, ThreadView, TEXT_MAX};
use crate::sys::fd::{self, FdTarget};
use crate::sys::logfmt::escape_hidden;
use crate::sys::net::{self, InetSocket, TcpState, UnixSocket};
use crate::sys::proc::clock_ticks_per_sec;
use crate::sys::task::{self, TaskSample};
use crate::sys::tcp_stall::Stall;

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
    /// How long the socket tables may take to read (a kill is near); past it the snapshot
    /// goes on without them and says so. `None`: no bound.
    pub(crate) socket_read_limit: Option<Duration>,
}

/// The first of a snapshot's two samples of every thread (state, CPU time, system call).
/// The watchdog takes it ahead of a budget's end, so that the snapshot is logged when the
/// budget runs out rather than a sample gap later ([`take`] with `early`).
#[derive(Debug)]
pub(crate) struct FirstSample {
    tids: Vec<u32>,
    samples: HashMap<u32, (TaskSample, Instant)>,
    done: Instant,
    unknown: Vec<String>,
    truncated: bool,
}

impl FirstSample {
    /// Samples every thread but the calling one (which is busy reading `/proc`).
    pub(crate) fn take() -> Self {
        let mut unknown = Vec::new();
        let mut truncated = false;
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
        let me = crate::stuck::spans::current_tid();
        let tids: Vec<u32> = tids.into_iter().filter(|t| *t != me).collect();
        let mut buf = Vec::new();
        let samples = tids
            .iter()
            .filter_map(|&tid| Some((tid, (task::read_task(tid, &mut buf)?, Instant::now()))))
            .collect();
        Self {
            tids,
            samples,
            done: Instant::now(),
            unknown,
            truncated,
        }
    }

    /// How long ago it was taken.
    pub(crate) fn age(&self) -> std::time::Duration {
        self.done.elapsed()
    }
}

/// Takes a snapshot now. `dispatch` gives the registry (fields, parents); without it spans
/// still have names, ages and threads. `early` is a first sample taken ahead (by this thread):
/// the snapshot then waits only for what is left of the gap, and threads started since are
/// sampled once (no CPU figure).
pub(crate) fn take(
    req: &Request,
    tracker: &SpanTracker,
    dispatch: Option<&Dispatch>,
    early: Option<FirstSample>,
) -> StuckSnapshot {
    let started = Instant::now();
    let sampled_twice = !req.cpu_gap.is_zero();
    let ahead = early.is_some() && sampled_twice;
    // Threads, first sample (the second comes after the other reads, a gap later).
    let first = match early.filter(|_| sampled_twice) {
        Some(e) => e,
        None => FirstSample::take(),
    };
    let mut unknown = first.unknown.clone();
    let mut truncated = first.truncated;
    // This thread is the one reading /proc (it would show as "running in pread64").
    let me = crate::stuck::spans::current_tid();
    let tids = if ahead {
        // Threads may have come and gone since the early sample.
        task::list_tasks(MAX_THREADS).map_or_else(
            |_| first.tids.clone(),
            |t| t.into_iter().filter(|t| *t != me).collect(),
        )
    } else {
        first.tids.clone()
    };
    let first_done = first.done;
    let first = first.samples;
    let mut buf = Vec::new();

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
    let socks = match req.socket_read_limit {
        None => sockets(&fds, &mut unknown),
        Some(limit) => sockets_within(&fds, limit.saturating_sub(started.elapsed()), &mut unknown),
    };

    // Threads, second sample: CPU over the gap, and the syscall as it is now.
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
            // Started after an early first sample: one sample, no CPU figure. (Without one,
            // it was unreadable at the first sample.)
            if let Some(s) = task::read_task(tid, &mut buf).filter(|_| ahead) {
                samples.push((s, None, true));
            }
            continue;
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

    // Names as the kernel gives them (escaped once, where a finding shows them), including
    // this thread's: it is alive, only left out of the thread list.
    let mut names: HashMap<u32, String> = samples
        .iter()
        .map(|(s, _, _)| (s.tid, cap_chars(&s.name, 64)))
        .collect();
    if let Some(mine) = task::read_task(me, &mut buf) {
        names.insert(me, cap_chars(&mine.name, 64));
    }
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
    // A connection's socket, and its other end when that is ours too (a client in this
    // process): told by the connection's finding, not again as a silent peer.
    let conn_ends: Vec<_> = (conns.fds.iter().filter_map(|fd| socks.get(fd)))
        .filter_map(|s| Some((s.local_addr?, s.peer_addr?)))
        .collect();
    let app_socks: HashMap<i32, Sock> = socks
        .iter()
        .filter(|(fd, _)| !conns.fds.contains(fd))
        .filter(|(_, s)| {
            !conn_ends
                .iter()
                .any(|(local, peer)| s.local_addr == Some(*peer) && s.peer_addr == Some(*local))
        })
        .map(|(fd, s)| (*fd, s.clone()))
        .collect();
    let rest = join(&app_spans, &threads, &app_socks);
    let mut lines: Vec<StuckFinding> = conns.findings;
    if lines.is_empty() || rest.lines.iter().any(|f| f.text != NOTHING_FOUND) {
        lines.extend(rest.lines);
    }
    lines.truncate(MAX_FINDINGS);
    let findings = Findings { lines, ..rest };
    let spans = connections::restore(app_spans, http_spans);
    if dispatch.is_none_or(|d| d.downcast_ref::<tracing_subscriber::Registry>().is_none())
        && !spans.is_empty()
    {
        unknown.push(
            "span parents and long fields: the layer cannot read its subscriber's spans (not \
             tracing-subscriber's Registry, gone, or the layer never learned it: an \
             Option<ShutdownLayer> does not pass it on), so spans show their name and only \
             the short fields the layer keeps itself"
                .to_owned(),
        );
    }

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
        first_finding: findings.lines.first().cloned(),
        findings: findings.lines.into_iter().map(|f| f.text).collect(),
        blocked_threads: findings.blocked_threads,
        idle_peers: findings.idle_peers,
        spans: spans.into_iter().map(|s| s.span).collect(),
        threads,
        sockets,
        connections: conns.list,
        unknown,
        truncated,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Our sockets: descriptor and inode.
fn our_sockets(fds: &[(i32, FdTarget)]) -> Vec<(i32, u64)> {
    fds.iter()
        .filter_map(|(fd, t)| match t {
            FdTarget::Socket { inode } => Some((*fd, *inode)),
            _ => None,
        })
        .collect()
}

/// [`sockets`], given at most `limit` (the kill is near): the tables are read on a thread of
/// their own, and when they are not read in time the sockets are listed by descriptor only,
/// with the reason in `unknown` (the thread finishes unobserved).
fn sockets_within(
    fds: &[(i32, FdTarget)],
    limit: Duration,
    unknown: &mut Vec<String>,
) -> HashMap<i32, Sock> {
    if our_sockets(fds).is_empty() {
        return HashMap::new();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = fds.to_vec();
    let spawned = std::thread::Builder::new()
        .name("shutdown-snapshot-net".to_owned())
        .spawn(move || {
            let mut unknown = Vec::new();
            let socks = sockets(&owned, &mut unknown);
            let _ = tx.send((socks, unknown));
        });
    if spawned.is_err() {
        return sockets(fds, unknown);
    }
    match rx.recv_timeout(limit) {
        Ok((socks, more)) => {
            unknown.extend(more);
            socks
        }
        Err(_) => {
            unknown.push(format!(
                "sockets: /proc/self/net tables not read within {} ms (the kill is near): \
                 addresses, states and queues unknown",
                limit.as_millis()
            ));
            (our_sockets(fds).into_iter())
                .map(|(fd, _)| (fd, Sock::without_address(fd, "socket")))
                .collect()
        }
    }
}

/// Every socket among our descriptors, by descriptor. Only the tables our sockets can be in
/// are read (by `SO_DOMAIN` and `SO_TYPE`): reading `tcp` costs tens of milliseconds on a busy
/// host even for a process with no TCP socket.
fn sockets(fds: &[(i32, FdTarget)], unknown: &mut Vec<String>) -> HashMap<i32, Sock> {
    let ours = our_sockets(fds);
    if ours.is_empty() {
        return HashMap::new();
    }
    let (mut v4, mut v6, mut unix_too) = (false, false, false);
    for (fd, _) in &ours {
        match net::socket_kind(*fd) {
            Some((libc::AF_INET, libc::SOCK_STREAM)) => v4 = true,
            Some((libc::AF_INET6, libc::SOCK_STREAM)) => v6 = true,
            Some((libc::AF_UNIX, _)) => unix_too = true,
            // UDP, netlink, ...: in no table read here.
            Some(_) => {}
            None => (v4, v6, unix_too) = (true, true, true),
        }
    }
    let inet: HashMap<u64, InetSocket> = if v4 || v6 {
        match net::read_inet_sockets_of(NET_READ_LIMIT, v4, v6) {
            Ok(v) => v.into_iter().map(|s| (s.inode, s)).collect(),
            Err(e) => {
                unknown.push(format!("TCP sockets: /proc/self/net/tcp: {e}"));
                HashMap::new()
            }
        }
    } else {
        HashMap::new()
    };
    let unix: HashMap<u64, UnixSocket> = if unix_too {
        match net::read_unix_sockets(NET_READ_LIMIT) {
            Ok(v) => v.into_iter().map(|s| (s.inode, s)).collect(),
            Err(e) => {
                unknown.push(format!("Unix sockets: /proc/self/net/unix: {e}"));
                HashMap::new()
            }
        }
    } else {
        HashMap::new()
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
                stall: Stall::of(s.send_q, s.recv_q, times.as_ref()),
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Each socket is found in the table of its family (only those tables are read now).
    #[test]
    fn sockets_of_each_family_are_found_in_their_table() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let v6_client = v6
            .as_ref()
            .map(|l| std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fds = fd::list_fds(MAX_FDS).unwrap();
        let mut unknown = Vec::new();
        let socks = sockets(&fds, &mut unknown);
        assert!(unknown.is_empty(), "{unknown:?}");
        let kind = |fd: i32| socks.get(&fd).map(|s| s.state.kind.clone());
        assert_eq!(kind(v4.as_raw_fd()).as_deref(), Some("tcp"));
        assert_eq!(
            socks[&v4.as_raw_fd()].state.state.as_deref(),
            Some("LISTEN")
        );
        if let Some(c) = &v6_client {
            assert_eq!(kind(c.as_raw_fd()).as_deref(), Some("tcp6"));
            assert!(socks[&c.as_raw_fd()].state.peer.is_some());
        }
        assert_eq!(kind(unix.as_raw_fd()).as_deref(), Some("unix"));
        // UDP is in none of the tables read: known by descriptor only.
        assert_eq!(kind(udp.as_raw_fd()).as_deref(), Some("socket"));
        // Within a bound it comes out the same (the bound is generous here).
        let mut unknown = Vec::new();
        let bounded = sockets_within(&fds, Duration::from_secs(30), &mut unknown);
        assert_eq!(bounded.len(), socks.len());
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
