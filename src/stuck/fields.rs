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

    /// `n` more bytes at the end (zeroed), to be filled in: inline while they fit.
    fn grow(&mut self, n: usize) -> &mut [u8] {
        if let Self::Inline { len, buf } = self {
            let at = usize::from(*len);
            if at + n > INLINE {
                let mut v = Vec::with_capacity((at + n).max(2 * INLINE));
                v.extend_from_slice(&buf[..at]);
                *self = Self::Heap(v);
            }
        }
        match self {
            Self::Inline { len, buf } => {
                let at = usize::from(*len);
                // At most INLINE (< 256): fits.
                *len = (at + n) as u8;
                &mut buf[at..at + n]
            }
            Self::Heap(v) => {
                let at = v.len();
                v.resize(at + n, 0);
                &mut v[at..]
            }
        }
    }

    fn extend(&mut self, more: &[u8]) {
        self.grow(more.len()).copy_from_slice(more);
    }

    /// Removes `range` (an entry being replaced).
    fn remove(&mut self, range: std::ops::Range<usize>) {
        let mut v = self.as_slice().to_vec();
        v.drain(range);
        *self = Self::default();
        self.extend(&v);
    }
}

/// A value formatted on the stack, at most [`VALUE_MAX`] bytes, cut on a character boundary.
struct Scratch {
    buf: [u8; VALUE_MAX],
    len: usize,
    cut: bool,
}

impl Scratch {
    fn new() -> Self {
        Self {
            buf: [0; VALUE_MAX],
            len: 0,
            cut: false,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Scratch {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = self.len;
        if let Some(dst) = self.buf.get_mut(at..at + s.len()).filter(|_| !self.cut) {
            dst.copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        let (kept, _) = cap(s.as_bytes(), if self.cut { 0 } else { VALUE_MAX - at });
        self.buf[at..at + kept.len()].copy_from_slice(kept);
        self.len += kept.len();
        self.cut = true;
        // Not an error past the cap: a `Debug` impl that unwraps its writes must not panic.
        Ok(())
    }
}

/// The first `max` bytes of UTF-8 text `s`, cut on a character boundary, and whether it was
/// cut.
fn cap(s: &[u8], max: usize) -> (&[u8], bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    // Back over continuation bytes (`10xxxxxx`) to the start of a character.
    while end > 0 && s[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    (&s[..end], true)
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

    /// Appends one field (replacing an earlier value of the same name when `replace`), cut to
    /// what the caps leave. `value` is UTF-8 text.
    fn push(&mut self, name: &str, value: &[u8], cut: bool, replace: bool) {
        if replace {
            let old = self.entries().find(|e| e.0 == name).map(|e| e.3);
            if let Some(range) = old {
                self.bytes.remove(range);
                self.count = self.count.saturating_sub(1);
            }
        }
        let (name, _) = cap(name.as_bytes(), usize::from(u8::MAX));
        let room = TOTAL_MAX.saturating_sub(self.bytes.len() + 1 + name.len() + 2);
        if usize::from(self.count) >= MAX_FIELDS || room == 0 {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        let (value, more_cut) = cap(value, room.min(VALUE_MAX));
        // At most VALUE_MAX (< CUT): fits in the low 15 bits.
        let word = (value.len() as u16) | if cut || more_cut { CUT } else { 0 };
        let dst = self.bytes.grow(1 + name.len() + 2 + value.len());
        let (head, rest) = dst.split_at_mut(1 + name.len());
        head[0] = name.len() as u8; // <= u8::MAX (cut above)
        head[1..].copy_from_slice(name);
        rest[..2].copy_from_slice(&word.to_le_bytes());
        rest[2..].copy_from_slice(value);
        self.count += 1;
    }

    /// Appends a value formatted on the stack (whole characters only: UTF-8).
    fn push_formatted(&mut self, name: &str, write: impl FnOnce(&mut Scratch), replace: bool) {
        let mut s = Scratch::new();
        write(&mut s);
        self.push(name, s.bytes(), s.cut, replace);
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
        self.fields
            .push(field.name(), value.as_bytes(), false, self.replace);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        let value: &[u8] = if value { b"true" } else { b"false" };
        self.fields.push(field.name(), value, false, self.replace);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let mut digits = [0u8; 20];
        let text = decimal(value, &mut digits);
        self.fields.push(field.name(), text, false, self.replace);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let mut digits = [0u8; 21];
        let at = decimal(value.unsigned_abs(), &mut digits[1..]).len();
        let start = 21 - at - usize::from(value < 0);
        if value < 0 {
            digits[start] = b'-';
        }
        self.fields
            .push(field.name(), &digits[start..], false, self.replace);
    }

    // `%display`, `?debug`, floats and the rest: as `fmt` shows them (the value's `Debug`;
    // `%x` arrives as a `Debug` that prints its `Display`).
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields.push_formatted(
            field.name(),
            |w| {
                let _ = write!(w, "{value:?}");
            },
            self.replace,
        );
    }
}

/// `n` in decimal, written at the end of `buf` (at least 20 bytes); the digits.
fn decimal(mut n: u64, buf: &mut [u8]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
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
            let value = if *cut { format!("{v}...") } else { v.clone() };
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
