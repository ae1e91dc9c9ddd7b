//! Verdicts a start read but never got into the logs (it was killed in its first
//! milliseconds, between reading the record and logging what it found). The record's `run`
//! line carries the verdict that start read (`previous`) and the ones it carried itself
//! (`carried`); a `verdict_logged` note says they reached the logs. The next start reports
//! what was not confirmed, so a verdict is never lost to a second kill.

use serde_json::Value;

use crate::sys::logfmt::escape_hidden;

/// At most this many unconfirmed verdicts are carried from start to start (the latest).
pub(crate) const MAX_CARRIED: usize = 3;
/// Characters kept of each carried message.
pub(crate) const MESSAGE_MAX: usize = 600;
/// The note a start appends once its verdicts are logged.
pub(crate) const LOGGED_NOTE: &str = "verdict_logged";
/// A record line keeps strings up to 256 characters (`record/line_caps.rs`): a message is
/// written as an array of pieces shorter than that.
const PIECE: usize = 200;

/// `message` (capped at [`MESSAGE_MAX`]) as the pieces a `run` line holds it in.
pub(crate) fn pieces(message: &str) -> Vec<String> {
    let chars: Vec<char> = message.chars().take(MESSAGE_MAX).collect();
    chars.chunks(PIECE).map(|c| c.iter().collect()).collect()
}

/// A message as a `run` line holds it: pieces, or (older lines) one string.
fn joined(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()
            .map(|p| p.concat())
            .filter(|m| !m.is_empty()),
        _ => None,
    }
}

/// The messages the last run in `text` read at its start and never confirmed as logged,
/// oldest first, at most [`MAX_CARRIED`], each capped, as written (untrusted: [`shown`]
/// escapes one for a log line; the raw text is what the next `run` line carries, so that a
/// message passed along twice is not escaped twice). Empty when the run confirmed them, or
/// when its `run` line is not in `text`.
pub(crate) fn unconfirmed(text: &str) -> Vec<String> {
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    let kind = |v: &Value| v.get("kind").and_then(Value::as_str).map(str::to_owned);
    let Some(start) = records
        .iter()
        .rposition(|r| kind(r).as_deref() == Some("run"))
    else {
        return Vec::new();
    };
    let logged = records[start + 1..].iter().any(|r| {
        kind(r).as_deref() == Some("note")
            && r.get("note").and_then(Value::as_str) == Some(LOGGED_NOTE)
    });
    if logged {
        return Vec::new();
    }
    let run = &records[start];
    let mut out: Vec<String> = run
        .get("carried")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(run.get("previous"))
        .filter_map(joined)
        .map(|m| m.chars().take(MESSAGE_MAX).collect())
        .collect();
    let skip = out.len().saturating_sub(MAX_CARRIED);
    out.drain(..skip);
    out
}

/// A carried message, safe in a log line (it came from a file).
pub(crate) fn shown(message: &str) -> String {
    escape_hidden(message, MESSAGE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_start_did_not_confirm_is_carried_and_what_it_did_is_not() {
        let run = r#"{"kind":"run","pid":2,"previous":"Previous shutdown did not complete: pid 1 was killed during phase drain","carried":["older one"]}"#;
        assert_eq!(
            unconfirmed(run),
            [
                "older one",
                "Previous shutdown did not complete: pid 1 was killed during phase drain"
            ]
        );
        let confirmed =
            format!("{run}\n{{\"kind\":\"note\",\"note\":\"verdict_logged\",\"t\":0}}\n");
        assert!(unconfirmed(&confirmed).is_empty());
        // Only the last run counts; a first run has nothing to carry.
        assert!(unconfirmed(&format!("{run}\n{{\"kind\":\"run\",\"pid\":3}}\n")).is_empty());
        assert!(unconfirmed("").is_empty());
        assert!(unconfirmed("not json\n").is_empty());
    }

    #[test]
    fn carried_messages_are_bounded_and_escaped_when_shown() {
        let many: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        let run = serde_json::json!({
            "kind": "run",
            "previous": "line\nforged=1 \u{1b}[31m",
            "carried": many,
        })
        .to_string();
        let out = unconfirmed(&run);
        assert_eq!(out.len(), MAX_CARRIED);
        assert_eq!(out[0], "m8");
        let line = shown(&out[2]);
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line:?}");
        let long = serde_json::json!({"kind": "run", "previous": "x".repeat(10_000)}).to_string();
        assert_eq!(unconfirmed(&long)[0].chars().count(), MESSAGE_MAX);
        // Not strings: ignored.
        let odd = r#"{"kind":"run","previous":7,"carried":[1,null,"ok",["a",2]]}"#;
        assert_eq!(unconfirmed(odd), ["ok"]);
    }

    #[test]
    fn a_long_message_is_carried_whole_in_pieces_a_record_line_keeps() {
        let long = format!("Previous shutdown did not complete: {}", "x".repeat(400));
        let run = serde_json::json!({"kind": "run", "previous": pieces(&long)});
        // Through the record's own line caps, as the file holds it.
        let line = String::from_utf8(crate::record::line_caps::line(&run)).unwrap();
        assert_eq!(unconfirmed(&line), std::slice::from_ref(&long));
        let carried = serde_json::json!({"kind": "run", "carried": [pieces(&long)]});
        let line = String::from_utf8(crate::record::line_caps::line(&carried)).unwrap();
        assert_eq!(unconfirmed(&line), [long]);
    }
}
