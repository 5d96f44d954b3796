//! Messages on stderr, one line each, as `PROGNAME: level: text`, filtered
//! by the verbosity the user chose (fatal errors are always printed), with
//! every control or invisible character escaped.

use std::io::Write;

#[derive(Debug, Clone, Copy)]
pub struct Log {
    pub prog: &'static str,
    pub verbosity: u32,
}

impl Log {
    fn line(&self, level: &str, text: &str) {
        self.write_line(&format!("{level}: {text}"));
    }

    fn write_line(&self, text: &str) {
        // One write per line, so concurrent writers on the same stderr
        // never interleave inside a line.
        let line = format!("{}: {}\n", self.prog, escape(text));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    pub fn fatal(&self, text: &str) {
        self.line("fatal", text);
    }

    /// The last words of a program that fails: the fatal line, and for
    /// wrong usage the usage summary after it (`PROGNAME: usage: ...`), so
    /// that the reader sees what is wrong and what would be right.
    pub fn exit_message(&self, err: &crate::cli::error::Fatal) {
        if err.message.is_empty() {
            return;
        }
        self.fatal(&err.message);
        if let Some(usage) = &err.usage {
            self.write_line(usage);
        }
    }

    /// Printed at the default verbosity (1) and above.
    pub fn warn(&self, text: &str) {
        if self.verbosity >= 1 {
            self.line("warning", text);
        }
    }

    /// Printed at verbosity 2 and above.
    pub fn info(&self, text: &str) {
        if self.verbosity >= 2 {
            self.line("info", text);
        }
    }

    /// Printed at verbosity 3 and above.
    pub fn debug(&self, text: &str) {
        if self.verbosity >= 3 {
            self.line("debug", text);
        }
    }
}

/// Characters a terminal or a log reader may act on rather than show:
/// the C0 and C1 controls and DEL, line and paragraph separators, and the
/// invisible formatting characters (zero-width, bidirectional overrides).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// Escapes what [`needs_escape`] as `\xHH` (ASCII) or `\u{H}`. Every line
/// goes through here, so no value from a peer (a certificate subject, an
/// SNI, an alert text) can start a forged line or hide what follows; the
/// information string, which is no log line, stays byte-exact.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !needs_escape(c) => out.push(c),
            c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn controls_and_invisible_characters_are_escaped() {
        assert_eq!(escape("plain, Zoë 🦀 \\,"), "plain, Zoë 🦀 \\,");
        assert_eq!(
            escape("CN=a\\\nx: fatal: forged\r\t\u{1b}[1m\u{7f}"),
            "CN=a\\\\x0ax: fatal: forged\\x0d\\x09\\x1b[1m\\x7f"
        );
        assert_eq!(
            escape("\u{85}\u{2028}\u{202e}\u{200b}\u{feff}"),
            "\\u{85}\\u{2028}\\u{202e}\\u{200b}\\u{feff}"
        );
    }
}
