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

/// Whether `fd` is an open descriptor of this process; the error says
/// why not (EBADF).
pub fn check_open(fd: RawFd) -> Result<(), std::io::Error> {
    // SAFETY: F_GETFD only inspects the descriptor table entry.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of an open descriptor (not open: 111).
pub fn own_fd(what: &str, fd: RawFd) -> Result<OwnedFd, Fatal> {
    check_open(fd).map_err(|e| Fatal::sys(format!("use {what} (fd {fd})"), e))?;
    // SAFETY: the descriptor is open, and every caller names each number
    // once, so this is its only owner in the process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes every descriptor of the process but stderr and `keep`: what a
/// process that becomes the engine holds is exactly what it uses.
pub fn close_all_but(keep: &[RawFd]) -> Result<(), Fatal> {
    let mut kept: Vec<u32> = keep
        .iter()
        .chain(&[2])
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut first = 0u32;
    for next in kept.into_iter().chain([u32::MAX]) {
        if next > first {
            // SAFETY: every descriptor this process owns is in `keep` (or
            // is stderr); the others are leftovers from the process we
            // forked from, which nothing here refers to any more.
            let rc =
                unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first, next - 1, 0u32) };
            if rc != 0 {
                return Err(Fatal::sys(
                    "close inherited descriptors",
                    std::io::Error::last_os_error(),
                ));
            }
        }
        first = next.saturating_add(1);
    }
    Ok(())
}
