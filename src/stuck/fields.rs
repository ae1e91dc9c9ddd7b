//! Span fields captured by the crate itself, so that a snapshot names a span the same way
//! whatever formats the app's logs: a coloured `fmt` layer, a JSON one, journald or
//! OpenTelemetry only, or no formatter at all. (Borrowing `fmt`'s formatted text gave ANSI
//! escapes, JSON objects, or nothing.)
//!
//! Cost, on the span-tracking path: nothing for a span without fields (one check of its
//! static field set) or one the tracker leaves out; otherwise each value written once, raw,
//! into a buffer on the stack, then, when the encoded fields fit in [`SLOT_BYTES`], copied
//! into the span's own table slot (`stuck/spans/table.rs`: no registry lookup, no lock, no
//! allocation); longer ones go to one registry extension (the registry boxes it). Fields
//! recorded later (`span.record`) go to the extension too, seeded with the slot's; a snapshot
//! prefers the extension.
//! Escaping and quoting happen only when a snapshot renders them (`Captured::render`).
//! Bounded: at most [`MAX_FIELDS`] fields, [`VALUE_MAX`] bytes of a value, [`TOTAL_MAX`] in all.

use std::fmt::{self, Write as _};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

mod captured;

pub(crate) use captured::Captured;

/// Fields kept per span; later ones are counted, not kept.
pub(crate) const MAX_FIELDS: usize = 16;
/// Bytes kept of one value (cut on a character boundary; the cut shows as `...`).
pub(crate) const VALUE_MAX: usize = 128;
/// Bytes kept of one span's names and values together.
pub(crate) const TOTAL_MAX: usize = 1024;
/// Bytes held inline: `method=POST path=/upload peer=10.0.0.7:55512` takes 49.
const INLINE: usize = 104;
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
    pub(crate) fn record_new(&mut self, values: &Attributes<'_>) {
        values.record(&mut Recorder {
            fields: self,
            replace: false,
        });
    }

    /// Records later values (`on_record`): a field recorded again replaces its old value.
    pub(crate) fn record_more(&mut self, values: &Record<'_>) {
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

/// Bytes of fields a span's table slot holds itself (`stuck/spans/table.rs`): short fields
/// need no registry extension (no lookup, no lock, no allocation).
pub(crate) const SLOT_BYTES: usize = 56;

/// A span's captured fields as its table slot holds them: the encoded entries, their length,
/// count and dropped count. `Copy`, so a snapshot copies it out of the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotFields {
    pub(crate) bytes: [u8; SLOT_BYTES],
    pub(crate) len: u8,
    pub(crate) count: u8,
    pub(crate) dropped: u8,
}

impl SlotFields {
    pub(crate) const NONE: Self = Self {
        bytes: [0; SLOT_BYTES],
        len: 0,
        count: 0,
        dropped: 0,
    };

    /// No field kept nor dropped.
    pub(crate) fn is_none(&self) -> bool {
        self.count == 0 && self.dropped == 0
    }

    /// The fields again, to render or to add to (`on_record`).
    pub(crate) fn span_fields(&self) -> SpanFields {
        let mut f = SpanFields {
            count: self.count,
            dropped: self.dropped,
            ..SpanFields::default()
        };
        f.bytes
            .extend(&self.bytes[..usize::from(self.len).min(SLOT_BYTES)]);
        f
    }
}

impl SpanFields {
    /// These fields in a slot's form, when they fit in [`SLOT_BYTES`].
    pub(crate) fn to_slot(&self) -> Option<SlotFields> {
        let b = self.bytes.as_slice();
        if b.len() > SLOT_BYTES {
            return None;
        }
        let mut out = SlotFields {
            len: b.len() as u8, // <= SLOT_BYTES
            count: self.count,
            dropped: self.dropped,
            ..SlotFields::NONE
        };
        out.bytes[..b.len()].copy_from_slice(b);
        Some(out)
    }
}

/// A tracked span's fields, captured as it opens, in the slot's form when they fit; longer
/// ones go to the span's registry extension (and the slot holds none).
#[inline(never)]
pub(crate) fn capture_open<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>) -> SlotFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut fields = SpanFields::default();
    fields.record_new(attrs);
    if fields.is_empty() {
        return SlotFields::NONE; // every field `Empty` for now: `capture_recorded` takes them
    }
    if let Some(slot) = fields.to_slot() {
        return slot;
    }
    if let Some(span) = ctx.span(id) {
        span.extensions_mut().insert(fields);
    }
    SlotFields::NONE
}

/// Values recorded after a span opened (`span.record(..)`, `on_record`), kept with the others
/// in the span's registry extension (which a snapshot then prefers to the slot's copy). For a
/// span without one yet, `seed` gives the fields its slot holds, `None` when the tracker does
/// not keep the span.
#[inline(never)]
pub(crate) fn capture_recorded<S>(
    id: &Id,
    values: &Record<'_>,
    ctx: &Context<'_, S>,
    seed: impl FnOnce(&Metadata<'_>) -> Option<SpanFields>,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else {
        return;
    };
    let mut ext = span.extensions_mut();
    match ext.get_mut::<SpanFields>() {
        Some(fields) => fields.record_more(values),
        None => {
            if let Some(mut fields) = seed(span.metadata()) {
                fields.record_more(values);
                if !fields.is_empty() {
                    ext.insert(fields);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
