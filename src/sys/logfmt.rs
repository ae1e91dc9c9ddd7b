//! logfmt rendering: bare values when safe, quoted and escaped otherwise.
//!
//! Process names are chosen by whoever starts the process (`prctl(PR_SET_NAME)`, `argv[0]`),
//! so a name like `x\nERROR forged line` must not be able to start a new log line or pass for
//! another key. Everything that could do so is escaped.

use std::fmt::{self, Write as _};

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
        f.write_char('"')?;
        for c in s.chars() {
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
        f.write_char('"')
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
    fn push_pair_separates_with_one_space() {
        let mut out = String::new();
        push_str_pair(&mut out, "a", "1");
        push_pair(&mut out, "b", 2);
        push_str_pair(&mut out, "c", "x y");
        assert_eq!(out, "a=1 b=2 c=\"x y\"");
    }
}
