//! The HTTP connections a stuck snapshot names (`crate::connections`, filled by `http/` with
//! the feature `axum`): one [`ConnectionState`] each, joined to its socket's queues, and one
//! sentence per connection that holds the drain, most telling first:
//! `GET /events streaming 29.8s to 10.0.0.7:51234, client not reading (3.7 MB queued)`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::connections::{now_ns, table, ConnSample, HttpState, HTTP_TARGET};
use crate::stuck::connection_state::ConnectionState;
use crate::stuck::snapshot::StuckFinding;
use crate::stuck::spans::TrackedSpan;
use crate::stuck::views::{canonical, round1, show, Sock, SpanView};
use crate::sys::logfmt::escape_hidden;

/// Connections copied from the table at most.
const MAX_SCANNED: usize = 20_000;
/// Connections kept in the snapshot.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Findings about connections at most (the rest are counted in the last one).
const MAX_FINDINGS: usize = 5;
/// Peers named in an aggregated finding.
const MAX_PEERS: usize = 3;
/// A write blocked this long means the client does not read.
const NOT_READING: Duration = Duration::from_secs(1);

/// The connections and the findings about them.
#[derive(Debug, Default)]
pub(super) struct Connections {
    pub(super) list: Vec<ConnectionState>,
    pub(super) findings: Vec<StuckFinding>,
    /// Descriptors of the connections' sockets (their silence is told here, not again).
    pub(super) fds: Vec<i32>,
    pub(super) truncated: bool,
}

/// Reads the table (its lock only while copying) and joins each connection to its socket by
/// descriptor, checking that the socket there still has the connection's addresses (a closed
/// connection's descriptor may have been reused).
pub(super) fn read(socks: &HashMap<i32, Sock>, unknown: &mut Vec<String>) -> Connections {
    let (entries, cut) = table().entries(MAX_SCANNED);
    if entries.is_empty() {
        return Connections::default();
    }
    let now = now_ns();
    let samples: Vec<ConnSample> = entries.iter().map(|e| e.sample(now)).collect();
    drop(entries);
    let mut out = Connections {
        truncated: cut,
        ..Connections::default()
    };
    let mut reused = 0;
    let mut states: Vec<ConnectionState> = samples
        .iter()
        .map(|s| {
            let sock = s.fd.and_then(|fd| socks.get(&fd)).filter(|k| {
                k.peer_addr == Some(canonical(s.peer)) && k.local_addr == Some(canonical(s.local))
            });
            match sock {
                Some(_) => out.fds.extend(s.fd),
                None if s.fd.is_some() => reused += 1,
                None => {}
            }
            state_of(s, sock)
        })
        .collect();
    if reused > 0 {
        unknown.push(format!(
            "HTTP connections: {reused} closed (or their descriptor reused) while the snapshot \
             was taken: their socket queues are unknown"
        ));
    }
    // Most telling first: holding a request (longest first), then upgraded, then idle.
    states.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(b.state_s.total_cmp(&a.state_s))
    });
    out.findings = findings(&states);
    out.truncated |= states.len() > MAX_CONNECTIONS;
    states.truncate(MAX_CONNECTIONS);
    out.list = states;
    out
}

fn rank(s: HttpState) -> u8 {
    match s {
        HttpState::Streaming => 0,
        HttpState::Receiving => 1,
        HttpState::InFlight => 2,
        HttpState::ReadingHead => 3,
        HttpState::Upgraded => 4,
        _ => 5,
    }
}

fn secs(d: Duration) -> f64 {
    round1(d)
}

fn state_of(s: &ConnSample, sock: Option<&Sock>) -> ConnectionState {
    let req = s.request.as_ref();
    let mut c = ConnectionState {
        peer: show(s.peer),
        local: show(s.local),
        fd: s.fd,
        state: s.state,
        method: req.map(|r| escape_hidden(&r.method, 16)),
        path: req.map(|r| escape_hidden(&r.path, 200)),
        upgrade: req.and_then(|r| r.upgrade.as_deref().map(|u| escape_hidden(u, 32))),
        age_s: secs(s.age),
        state_s: secs(s.in_state),
        requests: s.requests,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        response_bytes: s.response_bytes,
        last_read_s: s.since_read.map(secs),
        last_write_s: s.since_write.map(secs),
        write_blocked_s: s.write_blocked.map(secs),
        send_q: sock.and_then(|k| k.state.send_q),
        recv_q: sock.and_then(|k| k.state.recv_q),
        summary: String::new(),
    };
    c.summary = sentence(&c, s, sock);
    c
}

/// `GET /events`, or `request` when the method and path are unknown.
fn what(c: &ConnectionState) -> String {
    match (&c.method, &c.path) {
        (Some(m), Some(p)) => format!("{m} {p}"),
        _ => "request".to_owned(),
    }
}

fn sentence(c: &ConnectionState, s: &ConnSample, sock: Option<&Sock>) -> String {
    let mut line = String::new();
    // Bytes the kernel received that the server has not read: the server is the one not
    // reading (a handler waiting on something else), not the client being silent. Otherwise
    // the client's silence: when data last arrived (TCP_INFO), else when we last read.
    let silent =
        |line: &mut String| match (c.recv_q.filter(|q| *q > 0), sock.and_then(|k| k.last_recv)) {
            (Some(q), _) => {
                let _ = write!(line, ", server not reading ({} queued)", bytes(q));
            }
            (None, Some(d)) => {
                let _ = write!(line, ", client silent for {:.1}s", d.as_secs_f64());
            }
            (None, None) => match s.since_read {
                Some(d) => {
                    let _ = write!(line, ", client silent for {:.1}s", d.as_secs_f64());
                }
                None => line.push_str(", client sent nothing"),
            },
        };
    match c.state {
        HttpState::Streaming => {
            let _ = write!(
                line,
                "{} streaming {:.1}s to {}",
                what(c),
                c.state_s,
                c.peer
            );
            match (s.write_blocked.filter(|d| *d >= NOT_READING), c.send_q) {
                (Some(_), Some(q)) => {
                    let _ = write!(line, ", client not reading ({} queued)", bytes(q));
                }
                (Some(d), None) => {
                    let _ = write!(
                        line,
                        ", client not reading (writes blocked {:.1}s, queue unknown)",
                        d.as_secs_f64()
                    );
                }
                (None, _) => {
                    let _ = write!(line, ", {} sent", bytes(c.response_bytes.unwrap_or(0)));
                    if let Some(w) = c.last_write_s {
                        let _ = write!(line, ", last write {w:.1}s ago");
                    }
                }
            }
        }
        HttpState::Receiving => {
            let _ = write!(line, "{} receiving from {}", what(c), c.peer);
            silent(&mut line);
        }
        HttpState::InFlight => {
            let _ = write!(
                line,
                "{} in flight {:.1}s ({}), handler has not responded",
                what(c),
                c.state_s,
                c.peer
            );
        }
        HttpState::ReadingHead => {
            let _ = write!(
                line,
                "request head incomplete from {} ({} received)",
                c.peer,
                bytes(s.head_bytes)
            );
            silent(&mut line);
        }
        HttpState::Upgraded => {
            let path = c.path.as_deref().unwrap_or("?");
            let what = match c.upgrade.as_deref() {
                Some(p) if p.eq_ignore_ascii_case("websocket") => format!("WebSocket {path}"),
                Some(p) => format!("{path} ({p})"),
                None => format!("{path} (unknown protocol)"),
            };
            let _ = write!(
                line,
                "{what} upgraded {:.1}s ago ({}), not tied to the shutdown",
                c.state_s, c.peer
            );
        }
        HttpState::Idle => {
            let _ = write!(line, "idle connection from {} ({:.1}s)", c.peer, c.state_s);
        }
    }
    if s.in_flight > 1 {
        // HTTP/2: several requests share the connection; the latest is named.
        let _ = write!(line, " ({} requests in flight)", s.in_flight);
    }
    line
}

/// One sentence per connection holding a request or upgraded, then idle ones grouped:
/// `2 idle keep-alive connections (127.0.0.1:40000, 127.0.0.1:40002), idle up to 29.8s`.
fn findings(states: &[ConnectionState]) -> Vec<StuckFinding> {
    let mut out: Vec<StuckFinding> = Vec::new();
    let busy: Vec<&ConnectionState> = states
        .iter()
        .filter(|c| c.state != HttpState::Idle)
        .collect();
    for c in busy.iter().take(MAX_FINDINGS) {
        // The peer as a part of its own; the sentence is the summary (no span to join).
        out.push(StuckFinding {
            text: c.summary.clone(),
            peer: Some(c.peer.clone()),
            no_data_s: c.last_read_s,
            ..StuckFinding::default()
        });
    }
    if busy.len() > MAX_FINDINGS {
        if let Some(last) = out.last_mut() {
            let _ = write!(
                last.text,
                " (and {} more busy connections)",
                busy.len() - MAX_FINDINGS
            );
        }
    }
    let idle: Vec<&ConnectionState> = states
        .iter()
        .filter(|c| c.state == HttpState::Idle)
        .collect();
    for kept_alive in [true, false] {
        let group: Vec<&&ConnectionState> = idle
            .iter()
            .filter(|c| (c.requests > 0) == kept_alive)
            .collect();
        if group.is_empty() {
            continue;
        }
        let peers: Vec<&str> = group
            .iter()
            .take(MAX_PEERS)
            .map(|c| c.peer.as_str())
            .collect();
        let more = if group.len() > MAX_PEERS { ", ..." } else { "" };
        let longest = group.iter().map(|c| c.state_s).fold(0.0, f64::max);
        let (n, s) = (group.len(), if group.len() == 1 { "" } else { "s" });
        let what = if kept_alive {
            format!("{n} idle keep-alive connection{s}")
        } else {
            format!("{n} connection{s} open without a request")
        };
        out.push(StuckFinding {
            text: format!(
                "{what} ({}{more}), idle up to {longest:.1}s",
                peers.join(", ")
            ),
            ..StuckFinding::default()
        });
    }
    out
}

/// `3.7 MB`, `12.0 KB`, `512 B` (decimal units, as `ss` and browsers show them).
pub(crate) fn bytes(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.1} GB", f / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1} MB", f / 1e6)
    } else if n >= 1_000 {
        format!("{:.1} KB", f / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Splits the span views into the app's own and the ones `http/` made (`connection`,
/// `request`): those are told by the connections' findings, not again as spans. Returns the
/// app's views and the http ones with their positions, for [`restore`].
pub(super) fn split_http(
    views: Vec<SpanView>,
    tracked: &[TrackedSpan],
) -> (Vec<SpanView>, Vec<(usize, SpanView)>) {
    let mut app = Vec::with_capacity(views.len());
    let mut http = Vec::new();
    for (i, v) in views.into_iter().enumerate() {
        if tracked
            .get(i)
            .is_some_and(|t| t.slot.meta.target() == HTTP_TARGET)
        {
            http.push((i, v));
        } else {
            app.push(v);
        }
    }
    (app, http)
}

/// The views in their original order again.
pub(super) fn restore(app: Vec<SpanView>, http: Vec<(usize, SpanView)>) -> Vec<SpanView> {
    let mut out = Vec::with_capacity(app.len() + http.len());
    let mut app = app.into_iter();
    let mut http = http.into_iter().peekable();
    loop {
        if http.peek().is_some_and(|(i, _)| *i == out.len()) {
            if let Some((_, v)) = http.next() {
                out.push(v);
            }
            continue;
        }
        match app.next() {
            Some(v) => out.push(v),
            None => break,
        }
    }
    out.extend(http.map(|(_, v)| v));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: &str, state: HttpState, requests: u64, state_s: f64) -> ConnectionState {
        ConnectionState {
            peer: peer.to_owned(),
            local: "127.0.0.1:80".to_owned(),
            fd: None,
            state,
            method: None,
            path: None,
            upgrade: None,
            age_s: state_s,
            state_s,
            requests,
            bytes_in: 0,
            bytes_out: 0,
            response_bytes: None,
            last_read_s: None,
            last_write_s: None,
            write_blocked_s: None,
            send_q: None,
            recv_q: None,
            summary: format!("busy {peer}"),
        }
    }

    #[test]
    fn busy_connections_come_first_and_idle_ones_are_grouped_with_a_few_peers() {
        let mut states: Vec<ConnectionState> = (1..=7)
            .map(|i| conn(&format!("10.0.0.{i}:1"), HttpState::Streaming, 1, 9.0))
            .collect();
        for (i, s) in [1.0, 3.0, 2.0, 0.5].into_iter().enumerate() {
            states.push(conn(&format!("10.0.1.{i}:1"), HttpState::Idle, 2, s));
        }
        states.push(conn("10.0.2.1:1", HttpState::Idle, 0, 4.0));
        let found = findings(&states);
        assert_eq!(
            found[0].peer.as_deref(),
            Some("10.0.0.1:1"),
            "the peer is a part"
        );
        let f: Vec<&str> = found.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(f.len(), MAX_FINDINGS + 2, "{f:#?}");
        assert_eq!(f[0], "busy 10.0.0.1:1");
        assert_eq!(
            f[MAX_FINDINGS - 1],
            "busy 10.0.0.5:1 (and 2 more busy connections)"
        );
        assert_eq!(
            f[MAX_FINDINGS],
            "4 idle keep-alive connections (10.0.1.0:1, 10.0.1.1:1, 10.0.1.2:1, ...), idle up to 3.0s"
        );
        assert_eq!(
            f[MAX_FINDINGS + 1],
            "1 connection open without a request (10.0.2.1:1), idle up to 4.0s"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12_000), "12.0 KB");
        assert_eq!(bytes(3_700_000), "3.7 MB");
    }
}
