//! Joining spans, threads and sockets into findings, one sentence each, most telling first,
//! each with its parts ([`StuckFinding`]) beside it: the WARN line's fields, the flight record
//! and the next start's verdict use the parts, never a re-reading of the sentence; and the
//! counts of what the findings name.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::stuck::snapshot::StuckFinding;
use crate::stuck::views::{describe_sock, round1, silence, Sock, SpanView, ThreadView};
use crate::sys::tcp_stall::Stall;

pub(crate) const MAX_FINDINGS: usize = 8;
/// Connections listed on their own (not through a span or a thread), at most.
const MAX_SILENT: usize = 3;
/// The one finding when nothing was found.
pub(crate) const NOTHING_FOUND: &str = "no open span, blocked thread or silent peer found";

/// The parts a socket adds: its peer (or local path) and how long the peer has been silent.
fn sock_parts(f: &mut StuckFinding, sock: &Sock) {
    f.peer = sock.state.peer.clone().or_else(|| {
        sock.state
            .local
            .clone()
            .filter(|_| sock.state.kind == "unix")
    });
    f.no_data_s = sock.last_recv.filter(|_| sock.established).map(round1);
}

/// The parts a thread adds: its name, id and system call.
fn thread_parts(f: &mut StuckFinding, t: &ThreadView) {
    f.thread = Some(t.state.name.clone());
    f.tid = Some(t.state.tid);
    f.syscall = t.state.syscall.clone();
}

/// The findings, and how many blocked threads and idle peers they name: the counts of the
/// stuck line are what its findings list, never more.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub(super) lines: Vec<StuckFinding>,
    /// Threads named as blocked in a system call (never this crate's own: they always wait).
    pub(super) blocked_threads: usize,
    /// Connections named with their peer's side stuck (silent, not reading, not
    /// acknowledging); both ends of a connection inside this process are one.
    pub(super) idle_peers: usize,
}

/// What has been told so far: a socket once (with the other end of a connection inside
/// this process), a thread once.
struct Told<'a> {
    socks: Vec<i32>,
    threads: Vec<u32>,
    /// Each end of a connection whose both ends are ours, to the other.
    pairs: HashMap<i32, i32>,
    all: &'a HashMap<i32, Sock>,
    out: Findings,
}

impl Told<'_> {
    fn sock(&mut self, fd: i32) {
        if self.socks.contains(&fd) {
            return;
        }
        self.socks.push(fd);
        self.socks.extend(self.pairs.get(&fd));
        if (self.all.get(&fd))
            .and_then(|s| s.stall.filter(|_| s.established))
            .is_some_and(Stall::on_peer_side)
        {
            self.out.idle_peers += 1;
        }
    }

    fn thread(&mut self, t: &ThreadView) {
        if self.threads.contains(&t.state.tid) {
            return;
        }
        self.threads.push(t.state.tid);
        self.out.blocked_threads += usize::from(t.blocked && t.doing.is_some() && !t.spinning);
        if let Some(fd) = t.sock_fd {
            self.sock(fd);
        }
    }
}

/// Each end of an established connection whose other end is ours too, to that other end.
fn local_pairs(socks: &HashMap<i32, Sock>) -> HashMap<i32, i32> {
    let ends: HashMap<(SocketAddr, SocketAddr), i32> = socks
        .values()
        .filter(|s| s.established)
        .filter_map(|s| Some(((s.local_addr?, s.peer_addr?), s.state.fd)))
        .collect();
    ends.iter()
        .filter_map(|(&(local, peer), &fd)| Some((fd, *ends.get(&(peer, local))?)))
        .filter(|(a, b)| a != b)
        .collect()
}

/// One sentence per finding, most telling first, with the counts of what they name.
pub(super) fn join(
    spans: &[SpanView],
    threads: &[ThreadView],
    socks: &HashMap<i32, Sock>,
) -> Findings {
    let mut out: Vec<StuckFinding> = Vec::new();
    let mut told = Told {
        socks: Vec::new(),
        threads: Vec::new(),
        pairs: local_pairs(socks),
        all: socks,
        out: Findings::default(),
    };
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
        let mut f = StuckFinding {
            span: Some(s.render.clone()),
            path: s.span.path.clone(),
            ..StuckFinding::default()
        };
        if s.entered {
            let _ = write!(line, "{} running {:.1}s", s.render, s.span.age_s);
            if let Some(t) = by_tid.get(&s.thread) {
                let _ = write!(line, " on {}", t.who());
                thread_parts(&mut f, t);
                if let Some(doing) = &t.doing {
                    let _ = write!(line, ": {doing}");
                    if let Some(sock) = t.sock_fd.and_then(|fd| socks.get(&fd)) {
                        sock_parts(&mut f, sock);
                    }
                    told.thread(t);
                }
            }
        } else {
            let idle = s.span.idle_s.unwrap_or(0.0);
            f.idle_s = Some(idle);
            let _ = write!(line, "{} idle {idle:.1}s", s.render);
        }
        if let Some(sock) = s.sock_fd.and_then(|fd| socks.get(&fd)) {
            if !told.socks.contains(&sock.state.fd) {
                let _ = write!(line, "; {}{}", describe_sock(sock), silence(sock));
                sock_parts(&mut f, sock);
                told.sock(sock.state.fd);
            }
        }
        f.text = line;
        out.push(f);
    }
    // Threads blocked on a descriptor, in D state, or spinning.
    for t in threads.iter().filter(|t| t.notable() && !t.ours()) {
        if out.len() >= MAX_FINDINGS || told.threads.contains(&t.state.tid) {
            continue;
        }
        let mut f = StuckFinding::default();
        thread_parts(&mut f, t);
        if let Some(sock) = t.sock_fd.and_then(|fd| socks.get(&fd)) {
            sock_parts(&mut f, sock);
        }
        if let Some(doing) = &t.doing {
            f.text = format!("{} {doing}", t.who());
        } else if t.state.state == "D" {
            f.text = format!("{} in uninterruptible sleep", t.who());
        } else {
            continue;
        }
        out.push(f);
        told.thread(t);
    }
    // Established connections whose peer is stuck (or whose bytes we leave unread), each once.
    let mut stalled: Vec<&Sock> = socks
        .values()
        .filter(|s| s.established && s.stall.is_some_and(|st| st.notable()))
        .filter(|s| !told.socks.contains(&s.state.fd))
        .collect();
    stalled.sort_by_key(|s| {
        let idle = s.stall.map_or(Duration::ZERO, Stall::idle);
        (std::cmp::Reverse(idle), s.state.fd)
    });
    let mut listed = 0;
    for s in stalled {
        if out.len() >= MAX_FINDINGS || listed >= MAX_SILENT {
            break;
        }
        // The other end of one listed already.
        if told.socks.contains(&s.state.fd) {
            continue;
        }
        let local = s.state.local.as_deref().unwrap_or("?");
        let mut f = StuckFinding {
            text: format!(
                "fd {} {local} -> {}{}",
                s.state.fd,
                describe_sock(s),
                silence(s)
            ),
            ..StuckFinding::default()
        };
        sock_parts(&mut f, s);
        out.push(f);
        told.sock(s.state.fd);
        listed += 1;
    }
    if out.is_empty() {
        out.push(StuckFinding {
            text: NOTHING_FOUND.to_owned(),
            ..StuckFinding::default()
        });
    }
    let mut found = told.out;
    found.lines = out;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_built_from_the_parts() {
        let joined = StuckFinding {
            text: "request{method=POST path=/upload} idle 29.8s; 10.0.0.7:5432 ESTABLISHED \
                   no data for 29.8s"
                .into(),
            span: Some("request{method=POST path=/upload}".into()),
            peer: Some("10.0.0.7:5432".into()),
            idle_s: Some(29.8),
            no_data_s: Some(29.8),
            ..StuckFinding::default()
        };
        assert_eq!(
            joined.summary(),
            "request{method=POST path=/upload}: 10.0.0.7:5432 no data for 29.8s"
        );
        // A sentence that looks like a join but whose parts hold no peer stays whole: the
        // "; " inside a quoted field value is not read as a separator.
        let hostile = StuckFinding {
            text: r#"request{method=GET ua="x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; "} idle 0.0s"#.into(),
            span: Some(r#"request{method=GET ua="x} idle 0.1s; 10.9.9.9:5432 ESTABLISHED no data for 999.0s; "}"#.into()),
            idle_s: Some(0.0),
            ..StuckFinding::default()
        };
        assert_eq!(hostile.summary(), hostile.text);
    }
}
