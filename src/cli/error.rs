//! The one error type every program returns to its `main`: a message and
//! the exit code of that class of failure (the exit code tables of the
//! manual pages in doc/).

use std::fmt;

/// Normal end.
pub const EXIT_OK: u8 = 0;
/// TLS configuration error: a key, certificate or trust anchor that cannot be used.
pub const EXIT_CONFIG: u8 = 96;
/// The TLS engine could not be set up.
pub const EXIT_SETUP: u8 = 97;
/// TLS error while running: handshake failure, bad record, timeout.
pub const EXIT_TLS: u8 = 98;
/// Wrong usage, or a missing or invalid environment variable.
pub const EXIT_USAGE: u8 = 100;
/// A system call failed.
pub const EXIT_SYS: u8 = 111;
/// prog exists but cannot be executed (skalibs' convention).
pub const EXIT_CANNOT_EXEC: u8 = 126;
/// prog was not found (skalibs' convention).
pub const EXIT_NOT_FOUND: u8 = 127;

/// A fatal error: printed once as `PROGNAME: fatal: message`, then the
/// process exits with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
    /// For wrong usage: the usage summary (`usage: prog [ -x ] ...`),
    /// printed as `PROGNAME: usage: ...` after the fatal line.
    pub usage: Option<String>,
}

impl Fatal {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Fatal {
            code,
            message: message.into(),
            usage: None,
        }
    }

    /// Wrong usage on the command line: what is wrong (`unrecognized short
    /// option: x`), and the usage summary to print after it.
    pub fn wrong_usage(problem: impl Into<String>, usage_line: impl Into<String>) -> Self {
        Fatal {
            usage: Some(usage_line.into()),
            ..Self::new(EXIT_USAGE, problem)
        }
    }

    /// Exit with `code` without a message: another process (the engine)
    /// has already said why, and one failure gets one line.
    pub fn already_reported(code: u8) -> Self {
        Self::new(code, String::new())
    }

    /// Exit 100 for a missing or invalid environment variable or argument.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(EXIT_CONFIG, message)
    }

    pub fn tls(message: impl Into<String>) -> Self {
        Self::new(EXIT_TLS, message)
    }

    /// A failed system call: `unable to WHAT: strerror`.
    pub fn sys(what: impl fmt::Display, err: impl Into<std::io::Error>) -> Self {
        Self::new(
            EXIT_SYS,
            format!("unable to {what}: {}", describe_io(&err.into())),
        )
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An I/O error as the C library's `strerror` words it (`Permission
/// denied`), without Rust's ` (os error 13)` suffix.
pub fn describe_io(err: &std::io::Error) -> String {
    let text = err.to_string();
    match err.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}
