//! Messages on stderr, one line each, as `PROGNAME: level: text`, filtered
//! by the verbosity the user chose (fatal errors are always printed).

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
        let line = format!("{}: {text}\n", self.prog);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    pub fn fatal(&self, text: &str) {
        self.line("fatal", text);
    }

    /// The last words of a program that fails: the usage line as skalibs
    /// prints it (`PROGNAME: usage: ...`), anything else as fatal.
    pub fn exit_message(&self, err: &crate::cli::error::Fatal) {
        if err.message.is_empty() {
            return;
        }
        if err.is_usage_line {
            self.write_line(&err.message);
        } else {
            self.fatal(&err.message);
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
