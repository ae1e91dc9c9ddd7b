//! A span's captured fields as a snapshot reads them: rendered for a finding (escaped, quoted
//! where they hold separators) and searched for the socket addresses that join the span to
//! its socket (known keys or whole values only).

use std::net::{IpAddr, SocketAddr};

use crate::sys::logfmt::{escape_hidden, SpanValue};

/// Longest rendering of a span's fields, in characters; whole fields are left out past it
/// (so that a span with a short name fits a flight-record string, 256 characters, uncut).
pub(crate) const RENDER_MAX: usize = 240;

/// A span's fields as a snapshot reads them: names, raw values, and whether each was cut.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Captured {
    pub(crate) pairs: Vec<(String, String, bool)>,
    /// Fields the span had beyond the caps.
    pub(crate) dropped: usize,
}

/// Field names whose value is the peer's address (`10.0.0.7:5432`): the server side of a
/// request names its client, the client side of a call its server. OpenTelemetry's semantic
/// conventions (`client.address`, `server.address`, `network.peer.address`, and the older
/// `net.peer.*` / `net.sock.peer.*`) and the names apps commonly use.
const PEER_KEYS: [&str; 16] = [
    "peer",
    "peer_addr",
    "peer.addr",
    "remote",
    "remote_addr",
    "remote.addr",
    "client_addr",
    "client.addr",
    "client.address",
    "server.address",
    "network.peer.address",
    "net.peer.addr",
    "net.peer.ip",
    "net.peer.name",
    "net.sock.peer.addr",
    "upstream",
];

/// Where a known key holds only the host, the key holding the port.
const PORT_KEYS: [(&str, &str); 6] = [
    ("client.address", "client.port"),
    ("server.address", "server.port"),
    ("network.peer.address", "network.peer.port"),
    ("net.peer.ip", "net.peer.port"),
    ("net.peer.name", "net.peer.port"),
    ("net.sock.peer.addr", "net.sock.peer.port"),
];

impl Captured {
    /// `method=POST path=/upload ua="curl/8.5 (x=10.0.0.7:5432)"`: each value quoted when it
    /// holds a space, `=`, `;`, `{`, `}` or a quote, escaped, `...` where it was cut; at most
    /// [`RENDER_MAX`] characters of whole fields (` ...` when some were left out). A field
    /// whose name says it holds a secret (`password`, `token`, `authorization`, `cookie`, ...)
    /// shows `<redacted>`: the snapshot goes to the log and to files an operator shares.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut omitted = self.dropped > 0;
        for (k, v, cut) in &self.pairs {
            let value = if secret(k) {
                "<redacted>".to_owned()
            } else if *cut {
                format!("{v}...")
            } else {
                v.clone()
            };
            let pair = format!("{}={}", name(k), SpanValue(&value));
            let sep = usize::from(!out.is_empty());
            if out.chars().count() + sep + pair.chars().count() > RENDER_MAX {
                omitted = true;
                continue;
            }
            if sep == 1 {
                out.push(' ');
            }
            out.push_str(&pair);
        }
        if omitted {
            out.push_str(if out.is_empty() { "..." } else { " ..." });
        }
        out
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _, cut)| k == key && !cut)
            .map(|(_, v, _)| v.as_str())
    }

    /// The socket addresses these fields name, for joining a span to its socket: the values
    /// of the known peer keys ([`PEER_KEYS`], with their port keys), else any value that is a
    /// socket address as a whole. Never a word inside free text: a client's
    /// `User-Agent: curl/8.5 (x=10.0.0.7:5432)` names no socket.
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        let known: Vec<SocketAddr> = PEER_KEYS
            .iter()
            .filter_map(|key| {
                let value = self.get(key)?;
                whole_address(value).or_else(|| {
                    let (_, port_key) = PORT_KEYS.iter().find(|(k, _)| k == key)?;
                    let ip: IpAddr = unquote(value).parse().ok()?;
                    let port: u16 = unquote(self.get(port_key)?).parse().ok()?;
                    Some(SocketAddr::new(ip.to_canonical(), port))
                })
            })
            .collect();
        if !known.is_empty() {
            return known;
        }
        self.pairs
            .iter()
            .filter(|(_, _, cut)| !cut)
            .filter_map(|(_, v, _)| whole_address(v))
            .take(8)
            .collect()
    }
}

/// Words that, in a field's name, mark its value as a secret (matched case-insensitively
/// anywhere in the name: `access_token`, `http.request.header.authorization`).
const SECRET_WORDS: [&str; 9] = [
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "credential",
];

fn secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// A field name as rendered: escaped, and the characters that would end it (space, `=`,
/// braces, quotes, `;`) replaced (names are the app's own, but `"any text" = 1` is allowed).
fn name(k: &str) -> String {
    escape_hidden(k, 64)
        .chars()
        .map(|c| match c {
            ' ' | '=' | '{' | '}' | '"' | ';' => '_',
            c => c,
        })
        .collect()
}

/// A `Debug`-recorded string arrives quoted: `"10.0.0.7:5432"`.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The value as a socket address, when the whole of it is one (`10.0.0.7:5432`, `[::1]:80`).
fn whole_address(v: &str) -> Option<SocketAddr> {
    let a: SocketAddr = unquote(v).parse().ok()?;
    Some(SocketAddr::new(a.ip().to_canonical(), a.port()))
}
