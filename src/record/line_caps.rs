//! Caps on what one flight-record line may hold, so that the next start can always read and
//! judge the last line: the reader looks at the last 64 KiB, and a label or field chosen by
//! the app (a 100 kB adapter name, a huge span field) must not push a line past that.

use serde_json::{Map, Value};

/// Longest string value kept whole, in characters; longer ones are cut and end in `…`.
pub(crate) const MAX_STRING_CHARS: usize = 256;
/// Most elements kept of an array (the last ones: a checkpoint lists its innermost open phase
/// last) and keys of an object (the first ones).
const MAX_ITEMS: usize = 32;
/// Deeper values are replaced by `"…"`.
const MAX_DEPTH: usize = 6;
/// Longest line written. A line still longer after the caps above keeps only its identifying
/// scalars (`kind`, `t`, `id`, `pid`, `phase`, ...) and says `"capped": true`.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Keys a line keeps when it has to be cut down to its skeleton: what the verdict reads.
const SKELETON: [&str; 10] = [
    "kind",
    "t",
    "id",
    "pid",
    "phase",
    "parent",
    "note",
    "begun",
    "start_time",
    "total_s",
];

/// `value` serialized as one record line (without the newline), within [`MAX_LINE`].
pub(crate) fn line(value: &Value) -> Vec<u8> {
    let capped;
    let value = if fits(value, 0) {
        value
    } else {
        capped = cap(value, 0);
        &capped
    };
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    if bytes.len() <= MAX_LINE {
        return bytes;
    }
    let mut skeleton = Map::new();
    for key in SKELETON {
        if let Some(v) = value.get(key).filter(|v| !v.is_array() && !v.is_object()) {
            skeleton.insert(key.to_owned(), v.clone());
        }
    }
    skeleton.insert("capped".to_owned(), Value::Bool(true));
    serde_json::to_vec(&Value::Object(skeleton)).unwrap_or_default()
}

/// Whether `v` is within every cap already (the common case: no copy is made).
fn fits(v: &Value, depth: usize) -> bool {
    match v {
        Value::String(s) => s.len() <= MAX_STRING_CHARS,
        Value::Array(a) => {
            depth < MAX_DEPTH && a.len() <= MAX_ITEMS && a.iter().all(|v| fits(v, depth + 1))
        }
        Value::Object(o) => {
            depth < MAX_DEPTH && o.len() <= MAX_ITEMS && o.values().all(|v| fits(v, depth + 1))
        }
        _ => true,
    }
}

fn cap(v: &Value, depth: usize) -> Value {
    match v {
        Value::String(s) => Value::String(cap_str(s)),
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => Value::String("…".into()),
        Value::Array(a) => {
            let skip = a.len().saturating_sub(MAX_ITEMS);
            Value::Array(a[skip..].iter().map(|v| cap(v, depth + 1)).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .take(MAX_ITEMS)
                .map(|(k, v)| (cap_str(k), cap(v, depth + 1)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `s` cut to [`MAX_STRING_CHARS`] characters plus `…` when longer.
pub(crate) fn cap_str(s: &str) -> String {
    match s.char_indices().nth(MAX_STRING_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// The kernel writes a buffer to a file page by page and, between two pages, gives up on a
/// write whose process got a `SIGKILL` (`generic_perform_write`: `fatal_signal_pending`), so a
/// line that crosses a page can be cut in two by a kill: the record would end in a torn line
/// and its verdict would be unknown. The newlines (blank lines, which the reader skips) that
/// make a line of `len` bytes written at `at` start on the next page when it would cross one
/// and fits in one page; 0 otherwise. A kill then leaves the line whole or not written.
/// Pages are at least 4 KiB, and a larger page holds whole 4 KiB blocks.
pub(crate) fn page_padding(at: u64, len: usize) -> usize {
    const PAGE: u64 = 4096;
    let room = PAGE - at % PAGE;
    let len = len as u64;
    if len > room && len <= PAGE {
        room as usize
    } else {
        0
    }
}

/// Asserts that no line of `bytes` (blank ones aside) crosses a 4 KiB page of the file;
/// returns how many lines it holds.
#[cfg(test)]
pub(crate) fn assert_no_line_crosses_a_page(bytes: &[u8]) -> usize {
    let (mut at, mut lines) = (0, 0);
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if line != b"\n" {
            let last = at + line.len() - 1;
            assert_eq!(
                at / 4096,
                last / 4096,
                "a line at {at} of {} bytes crosses a page",
                line.len()
            );
            lines += 1;
        }
        at += line.len();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_lines_are_unchanged() {
        let v = json!({"kind": "phase_start", "t": 0.5, "id": 1, "phase": "drain"});
        assert_eq!(line(&v), serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn long_labels_and_fields_are_cut() {
        let name = format!("disconnect<{}>", "A".repeat(100_000));
        let v = json!({"kind": "phase_start", "t": 0.5, "id": 1, "phase": name,
                       "fields": {"x": "é".repeat(10_000)}});
        let out: Value = serde_json::from_slice(&line(&v)).unwrap();
        let phase = out["phase"].as_str().unwrap();
        assert!(phase.starts_with("disconnect<AAA") && phase.ends_with('…'));
        assert_eq!(phase.chars().count(), MAX_STRING_CHARS + 1);
        assert_eq!(out["id"], 1);
        assert!(out["fields"]["x"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn wide_and_deep_values_are_cut_to_a_skeleton_at_worst() {
        let open: Vec<Value> = (0..4096)
            .map(|i| json!({"id": i, "phase": "p".repeat(600), "t": 1.0}))
            .collect();
        let v = json!({"kind": "checkpoint", "t": 2.0, "pid": 7, "begun": true, "open": open});
        let bytes = line(&v);
        assert!(bytes.len() <= MAX_LINE, "{}", bytes.len());
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(out["kind"], "checkpoint");
        assert_eq!(out["begun"], true);
        let mut deep = json!("x");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        let out: Value =
            serde_json::from_slice(&line(&json!({"kind": "note", "value": deep}))).unwrap();
        assert_eq!(out["kind"], "note");
        // A huge object of short keys.
        let wide: Map<String, Value> = (0..100_000).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(line(&json!({"kind": "note", "value": wide})).len() <= MAX_LINE);
    }
}
