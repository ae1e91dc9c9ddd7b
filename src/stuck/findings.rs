//! Joining spans, threads and sockets into findings, one sentence each, most telling first,
//! each with its parts ([`StuckFinding`]) beside it: the WARN line's fields, the flight record
//! and the next start's verdict use the parts, never a re-reading of the sentence.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::stuck::snapshot::StuckFinding;
use crate::stuck::views::{describe_sock, round1, silence, Sock, SpanView, ThreadView};

pub(crate) const MAX_FINDINGS: usize = 8;
/// A peer silent for at least this long is worth a finding.
const SILENT_PEER: Duration = Duration::from_secs(1);

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

/// One finding per notable span, thread and silent peer, most telling first.
pub(super) fn join(
    spans: &[SpanView],
    threads: &[ThreadView],
    socks: &HashMap<i32, Sock>,
) -> Vec<StuckFinding> {
    let mut out: Vec<StuckFinding> = Vec::new();
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
        let mut f = StuckFinding {
            span: Some(s.render.clone()),
            path: s.span.path.clone(),
            ..StuckFinding::default()
        };
        let mut line = String::new();
        if s.entered {
            let _ = write!(line, "{} running {:.1}s", s.render, s.span.age_s);
            if let Some(t) = by_tid.get(&s.thread) {
                let _ = write!(line, " on {}", t.who());
                thread_parts(&mut f, t);
                if let Some(doing) = &t.doing {
                    let _ = write!(line, ": {doing}");
                    told_threads.push(t.state.tid);
                    told_socks.extend(t.sock_fd);
                    if let Some(sock) = t.sock_fd.and_then(|fd| socks.get(&fd)) {
                        sock_parts(&mut f, sock);
                    }
                }
            }
        } else {
            let idle = s.span.idle_s.unwrap_or(0.0);
            f.idle_s = Some(idle);
            let _ = write!(line, "{} idle {idle:.1}s", s.render);
        }
        if let Some(sock) = s.sock_fd.and_then(|fd| socks.get(&fd)) {
            if !told_socks.contains(&sock.state.fd) {
                let _ = write!(line, "; {}{}", describe_sock(sock), silence(sock));
                told_socks.push(sock.state.fd);
                sock_parts(&mut f, sock);
            }
        }
        f.text = line;
        out.push(f);
    }
    // Threads blocked on a descriptor, in D state, or spinning.
    for t in threads.iter().filter(|t| t.notable() && !t.ours()) {
        if out.len() >= MAX_FINDINGS || told_threads.contains(&t.state.tid) {
            continue;
        }
        let mut f = StuckFinding::default();
        thread_parts(&mut f, t);
        if let Some(sock) = t.sock_fd.and_then(|fd| socks.get(&fd)) {
            sock_parts(&mut f, sock);
        }
        if let Some(doing) = &t.doing {
            f.text = format!("{} {doing}", t.who());
            told_socks.extend(t.sock_fd);
        } else if t.state.state == "D" {
            f.text = format!("{} in uninterruptible sleep", t.who());
        } else {
            continue;
        }
        out.push(f);
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
    }
    if out.is_empty() {
        out.push(StuckFinding {
            text: "no open span, blocked thread or silent peer found".to_owned(),
            ..StuckFinding::default()
        });
    }
    out.truncate(MAX_FINDINGS);
    out
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
