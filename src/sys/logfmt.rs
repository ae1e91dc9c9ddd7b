//! logfmt rendering: bare values when safe, quoted and escaped otherwise.
//!
//! Process names are chosen by whoever starts the process (`prctl(PR_SET_NAME)`, `argv[0]`),
//! so a name like `x\nERROR forged line` must not be able to start a new log line or pass for
//! another key. Everything that could do so is escaped.

use std::fmt::{self, Write as _};

use tracing_core::field::{display, DisplayValue, Value};

/// A value rendered as logfmt: bare when it holds only safe characters, else double-quoted with
/// `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` escapes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logfmt<'a>(pub(crate) &'a str);

/// True when `c` must not appear bare (or at all, unescaped) in a logfmt value.
fn is_unsafe(c: char) -> bool {
    c == '"' || c == '=' || c == '\\' || c.is_whitespace() || is_hidden(c)
}

/// Characters that are invisible or reorder text on a terminal: controls (including ESC, which
/// starts ANSI sequences), zero-width and bidirectional formatting characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

impl fmt::Display for Logfmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if !s.is_empty() && !s.chars().any(is_unsafe) {
            return f.write_str(s);
        }
        write!(f, "\"{}\"", Escaped(s))
    }
}

/// `s` safe to put inside a log line's text: hidden characters (controls, ESC, zero-width and
/// bidirectional marks) and backslashes escaped, spaces and quotes kept, cut after `max`
/// characters (`...` marks the cut). For untrusted text shown as it is, such as span fields
/// and thread names in a stuck snapshot: it cannot start a new line or recolour a terminal.
pub(crate) fn escape_hidden(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push_str("...");
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hidden(c) || (c.is_whitespace() && c != ' ') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A value inside a span's braces (`request{method=POST ua="curl/8.5 (x)"}`): logfmt, and
/// quoted also when it holds `;`, `{` or `}`, so that field text cannot close the braces or
/// pass for the next finding (`ua="x} idle 0.1s; 10.9.9.9:5432 ..."` stays one quoted value).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanValue<'a>(pub(crate) &'a str);

impl fmt::Display for SpanValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if !s.is_empty()
            && !s
                .chars()
                .any(|c| is_unsafe(c) || matches!(c, ';' | '{' | '}'))
        {
            return f.write_str(s);
        }
        write!(f, "\"{}\"", Escaped(s))
    }
}

/// The inside of a quoted logfmt value.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                ' ' => f.write_char(' ')?,
                c if c.is_whitespace() || is_hidden(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A string as an event field: a text formatter shows exactly what [`Logfmt`] renders (the
/// lines users grep stay the same), while a structured one (JSON, journald) gets the string
/// itself whenever the text formatter's rendering of a plain string (Rust's `Debug`, quoted)
/// is the same as the logfmt one. Only text with characters the two escape differently (NUL:
/// `\0` against `\u{0}`, some invisible ones) reaches a structured subscriber logfmt-quoted.
#[derive(Debug)]
pub(crate) enum TextField<'a> {
    /// Rendered through [`Logfmt`] (bare when safe, quoted otherwise).
    Shown(DisplayValue<Logfmt<'a>>),
    /// The string itself (recorded with `record_str`).
    Raw(&'a str),
}

impl<'a> TextField<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        let quoted = s.is_empty() || s.chars().any(is_unsafe);
        // Compared whole (a few short strings per event, never on a span's path): which
        // characters `Debug` escapes depends on Unicode tables std keeps to itself.
        if quoted && format!("{s:?}") == Logfmt(s).to_string() {
            Self::Raw(s)
        } else {
            Self::Shown(display(Logfmt(s)))
        }
    }

    /// The value to give tracing.
    pub(crate) fn value(&self) -> &dyn Value {
        match self {
            Self::Shown(d) => d,
            Self::Raw(s) => s,
        }
    }
}

/// Appends ` key=value` (or `key=value` at the start) to `out`.
pub(crate) fn push_pair(out: &mut String, key: &str, value: impl fmt::Display) {
    if !out.is_empty() {
        out.push(' ');
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "{key}={value}");
}

/// Appends a string value as logfmt.
pub(crate) fn push_str_pair(out: &mut String, key: &str, value: &str) {
    push_pair(out, key, Logfmt(value));
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_hidden_keeps_text_readable_and_lines_whole() {
        assert_eq!(
            escape_hidden("method=POST path=\"/x\"", 100),
            "method=POST path=\"/x\""
        );
        assert_eq!(
            escape_hidden("a\nERROR forged\x1b[31m", 100),
            "a\\nERROR forged\\u{1b}[31m"
        );
        assert_eq!(escape_hidden("back\\slash", 100), "back\\\\slash");
        assert_eq!(escape_hidden("abcdef", 3), "abc...");
        assert_eq!(escape_hidden("\u{202e}rtl", 10), "\\u{202e}rtl");
    }

    use super::*;

    fn r(s: &str) -> String {
        Logfmt(s).to_string()
    }

    #[test]
    fn safe_values_stay_bare() {
        assert_eq!(r("systemd"), "systemd");
        assert_eq!(r("kworker/0:1"), "kworker/0:1");
        assert_eq!(r("héllo"), "héllo");
    }

    #[test]
    fn unsafe_values_are_quoted_and_escaped() {
        assert_eq!(r(""), "\"\"");
        assert_eq!(r("a b"), "\"a b\"");
        assert_eq!(r("a=b"), "\"a=b\"");
        assert_eq!(r("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(r("x\nERROR forged"), "\"x\\nERROR forged\"");
        assert_eq!(r("\u{1b}[31mred"), "\"\\u{1b}[31mred\"");
        assert_eq!(r("a\\b"), "\"a\\\\b\"");
        assert_eq!(r("rtl\u{202E}txt"), "\"rtl\\u{202e}txt\"");
    }

    #[test]
    fn rendered_values_never_contain_raw_controls() {
        for s in ["\n", "\r\n", "a\u{7}b", "\u{2028}", "x\u{0}y"] {
            let out = r(s);
            assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
        }
    }

    #[test]
    fn span_values_quote_separators_too() {
        let v = |s: &str| SpanValue(s).to_string();
        assert_eq!(v("POST"), "POST");
        assert_eq!(v("/a:b"), "/a:b");
        assert_eq!(v("x}y"), "\"x}y\"");
        assert_eq!(v("a;b"), "\"a;b\"");
        assert_eq!(v("{"), "\"{\"");
        assert_eq!(v("a\n\u{1b}"), "\"a\\n\\u{1b}\"");
    }

    #[test]
    fn text_fields_are_raw_only_where_debug_renders_them_as_logfmt() {
        let raw = |s: &str| matches!(TextField::new(s), TextField::Raw(_));
        // Bare in logfmt: shown as is (Display), which JSON gets unquoted too.
        assert!(!raw("drain"));
        for s in [
            "x y",
            "say \"hi\"",
            "a\nb",
            "\u{1b}[2J",
            "k=v",
            "it's x",
            "",
        ] {
            assert!(raw(s), "{s:?}");
            assert_eq!(format!("{s:?}"), r(s));
        }
        for s in ["a\0b", "\u{301}x y"] {
            assert!(!raw(s), "{s:?}: Debug {:?} vs logfmt {}", s, r(s));
        }
    }

    #[test]
    fn push_pair_separates_with_one_space() {
        let mut out = String::new();
        push_str_pair(&mut out, "a", "1");
        push_pair(&mut out, "b", 2);
        push_str_pair(&mut out, "c", "x y");
        assert_eq!(out, "a=1 b=2 c=\"x y\"");
    }
}
