//! Joining spans, threads and sockets into findings, one sentence each, most telling first;
//! and the short summary the flight record keeps for the next start's verdict.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::stuck::snapshot::StuckSnapshot;
use crate::stuck::views::{describe_sock, silence, Sock, SpanView, ThreadView};

pub(crate) const MAX_FINDINGS: usize = 8;
/// The one finding when nothing was found.
pub(crate) const NOTHING_FOUND: &str = "no open span, blocked thread or silent peer found";
/// A peer silent for at least this long is worth a finding.
const SILENT_PEER: Duration = Duration::from_secs(1);

/// One sentence per finding, most telling first.
pub(super) fn join(
    spans: &[SpanView],
    threads: &[ThreadView],
    socks: &HashMap<i32, Sock>,
) -> Vec<String> {
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
        out.push(NOTHING_FOUND.to_owned());
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
    use crate::stuck::snapshot::StuckReason;
    use crate::stuck::views::addresses;
    use std::net::SocketAddr;

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
            connections: Vec::new(),
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
