//! Span fields captured by the crate itself, so that a snapshot names a span the same way
//! whatever formats the app's logs: a coloured `fmt` layer, a JSON one, journald or
//! OpenTelemetry only, or no formatter at all. (Borrowing `fmt`'s formatted text gave ANSI
//! escapes, JSON objects, or nothing.)
//!
//! Cost, on the span-tracking path: nothing for a span without fields (one check of its
//! static field set) or one the tracker leaves out; otherwise one registry lookup, one
//! extension insert (the registry boxes it: one allocation) and each value written once, raw,
//! into the extension's own buffer, which holds short fields inline (no second allocation).
//! Escaping and quoting happen only when a snapshot renders them (`Captured::render`).
//! Bounded: at most [`MAX_FIELDS`] fields, [`VALUE_MAX`] bytes of a value, [`TOTAL_MAX`] in all.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use tracing_core::field::{Field, Visit};

use crate::sys::logfmt::{escape_hidden, SpanValue};

/// Fields kept per span; later ones are counted, not kept.
pub(crate) const MAX_FIELDS: usize = 16;
/// Bytes kept of one value (cut on a character boundary; the cut shows as `...`).
pub(crate) const VALUE_MAX: usize = 128;
/// Bytes kept of one span's names and values together.
pub(crate) const TOTAL_MAX: usize = 1024;
/// Bytes held inline: `method=POST path=/upload peer=10.0.0.7:55512` takes 49.
const INLINE: usize = 104;
/// Longest rendering of a span's fields, in characters; whole fields are left out past it.
const RENDER_MAX: usize = 400;
/// Set in an entry's length word when the value was cut.
const CUT: u16 = 0x8000;

/// What the layer keeps in a tracked span's extensions: its fields' names and values as they
/// were recorded (raw: escaped only when rendered), bounded. Each entry is
/// `[name length: u8][name][value length: u16 LE, top bit = cut][value]`.
#[derive(Debug, Default)]
pub(crate) struct SpanFields {
    bytes: Bytes,
    count: u8,
    /// Fields left out (past [`MAX_FIELDS`] or [`TOTAL_MAX`]).
    dropped: u8,
}

/// A byte buffer holding up to [`INLINE`] bytes without an allocation of its own.
#[derive(Debug)]
enum Bytes {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Default for Bytes {
    fn default() -> Self {
        Self::Inline {
            len: 0,
            buf: [0; INLINE],
        }
    }
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, buf } => &buf[..usize::from(*len)],
            Self::Heap(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn extend(&mut self, more: &[u8]) {
        match self {
            Self::Inline { len, buf } => {
                let at = usize::from(*len);
                match buf.get_mut(at..at + more.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(more);
                        // At most INLINE (< 256): fits.
                        *len = u8::try_from(at + more.len()).unwrap_or(u8::MAX);
                    }
                    None => {
                        let mut v = Vec::with_capacity((at + more.len()).max(2 * INLINE));
                        v.extend_from_slice(&buf[..at]);
                        v.extend_from_slice(more);
                        *self = Self::Heap(v);
                    }
                }
            }
            Self::Heap(v) => v.extend_from_slice(more),
        }
    }

    fn set(&mut self, at: usize, b: u8) {
        let slot = match self {
            Self::Inline { buf, .. } => buf.get_mut(at),
            Self::Heap(v) => v.get_mut(at),
        };
        if let Some(slot) = slot {
            *slot = b;
        }
    }

    /// Removes `range` (an entry being replaced).
    fn remove(&mut self, range: std::ops::Range<usize>) {
        let mut v = self.as_slice().to_vec();
        v.drain(range);
        *self = Self::default();
        self.extend(&v);
    }
}

/// Writes a value into the buffer, at most `room` bytes, cut on a character boundary.
struct Capped<'a> {
    bytes: &'a mut Bytes,
    room: usize,
    written: usize,
    cut: bool,
}

impl fmt::Write for Capped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let left = self.room - self.written;
        if s.len() <= left && !self.cut {
            self.bytes.extend(s.as_bytes());
            self.written += s.len();
            return Ok(());
        }
        let mut end = left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes.extend(&s.as_bytes()[..end]);
        self.written += end;
        self.room = self.written;
        self.cut = true;
        // Not an error: a `Debug` impl that unwraps its writes must not panic here.
        Ok(())
    }
}

impl SpanFields {
    /// True when no field was kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0 && self.dropped == 0
    }

    /// Records `values` as a span's first values (`on_new_span`).
    pub(crate) fn record_new(&mut self, values: &tracing_core::span::Attributes<'_>) {
        values.record(&mut Recorder {
            fields: self,
            replace: false,
        });
    }

    /// Records later values (`on_record`): a field recorded again replaces its old value.
    pub(crate) fn record_more(&mut self, values: &tracing_core::span::Record<'_>) {
        values.record(&mut Recorder {
            fields: self,
            replace: true,
        });
    }

    /// Entries as `(name, value, cut, byte range)`; a malformed entry (none is written) ends it.
    fn entries(&self) -> impl Iterator<Item = (&str, &str, bool, std::ops::Range<usize>)> {
        let b = self.bytes.as_slice();
        let mut at = 0;
        std::iter::from_fn(move || {
            let start = at;
            let name_len = usize::from(*b.get(at)?);
            let name = std::str::from_utf8(b.get(at + 1..at + 1 + name_len)?).ok()?;
            at += 1 + name_len;
            let word = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]);
            at += 2;
            let value_len = usize::from(word & !CUT);
            let value = std::str::from_utf8(b.get(at..at + value_len)?).ok()?;
            at += value_len;
            Some((name, value, word & CUT != 0, start..at))
        })
    }

    fn push(&mut self, name: &str, write: impl FnOnce(&mut Capped<'_>), replace: bool) {
        if replace {
            let old = self.entries().find(|e| e.0 == name).map(|e| e.3);
            if let Some(range) = old {
                self.bytes.remove(range);
                self.count = self.count.saturating_sub(1);
            }
        }
        let mut name_end = name.len().min(usize::from(u8::MAX));
        while !name.is_char_boundary(name_end) {
            name_end -= 1;
        }
        let name = &name[..name_end];
        let used = self.bytes.len();
        let room = TOTAL_MAX.saturating_sub(used + 1 + name.len() + 2);
        if usize::from(self.count) >= MAX_FIELDS || room == 0 {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.bytes.extend(&[name.len() as u8]); // <= u8::MAX (cut above)
        self.bytes.extend(name.as_bytes());
        let len_at = self.bytes.len();
        self.bytes.extend(&[0, 0]);
        let mut w = Capped {
            bytes: &mut self.bytes,
            room: room.min(VALUE_MAX),
            written: 0,
            cut: false,
        };
        write(&mut w);
        // At most VALUE_MAX (< CUT): fits in the low 15 bits.
        let word = (w.written as u16) | if w.cut { CUT } else { 0 };
        let [lo, hi] = word.to_le_bytes();
        self.bytes.set(len_at, lo);
        self.bytes.set(len_at + 1, hi);
        self.count += 1;
    }

    /// An owned copy, for a snapshot (taken under the span's extensions lock, used after).
    pub(crate) fn captured(&self) -> Captured {
        Captured {
            pairs: self
                .entries()
                .map(|(k, v, cut, _)| (k.to_owned(), v.to_owned(), cut))
                .collect(),
            dropped: usize::from(self.dropped),
        }
    }
}

struct Recorder<'a> {
    fields: &'a mut SpanFields,
    replace: bool,
}

impl Visit for Recorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.push(
            field.name(),
            |w| {
                let _ = w.write_str(value);
            },
            self.replace,
        );
    }

    // Numbers, booleans, `%display` and `?debug` values: as `fmt` shows them (Debug of the
    // value; `%x` arrives as a Debug that prints its Display).
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields.push(
            field.name(),
            |w| {
                let _ = write!(w, "{value:?}");
            },
            self.replace,
        );
    }
}

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
    /// [`RENDER_MAX`] characters of whole fields (` ...` when some were left out).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut omitted = self.dropped > 0;
        for (k, v, cut) in &self.pairs {
            let value = if *cut {
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

#[cfg(test)]
mod tests;
