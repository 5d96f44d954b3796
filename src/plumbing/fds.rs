//! Taking ownership of descriptors named on a command line or in the
//! environment, after checking that they are open.

use crate::cli::error::Fatal;
use crate::cli::opts::parse_decimal;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Parses a descriptor number (not decimal: usage error 100).
pub fn parse_fd(what: &str, text: &str) -> Result<RawFd, Fatal> {
    parse_decimal(text)
        .and_then(|n| RawFd::try_from(n).ok())
        .ok_or_else(|| {
            Fatal::usage(format!(
                "invalid {what}: {text:?} is not a descriptor number"
            ))
        })
}

/// Takes ownership of an open descriptor (not open: 111).
pub fn own_fd(what: &str, fd: RawFd) -> Result<OwnedFd, Fatal> {
    // SAFETY: F_GETFD only inspects the descriptor table entry.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
        return Err(Fatal::sys(
            format!("use {what} (fd {fd})"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the descriptor is open, and every caller names each number
    // once, so this is its only owner in the process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
