//! The system calls the tunnel makes on its descriptors beyond plain
//! reads and writes: non-blocking mode and the kernel's queue lengths.

use crate::cli::error::Fatal;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::sockopt;
use std::os::fd::{AsRawFd, BorrowedFd};

pub(super) fn set_nonblocking(fd: BorrowedFd<'_>, what: &str) -> Result<(), Fatal> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Fatal::sys(format!("use {what}"), e))?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags))
        .map_err(|e| Fatal::sys(format!("set {what} non-blocking"), e))?;
    Ok(())
}

/// Bytes received on a socket or pipe and not read yet (FIONREAD); `None`
/// if the descriptor cannot tell.
pub(super) fn queued_input(fd: BorrowedFd<'_>) -> Option<usize> {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    (rc == 0).then(|| usize::try_from(n).unwrap_or(0))
}

/// Bytes sent on a TCP socket and not acknowledged by the peer yet
/// (SIOCOUTQ, which also counts our FIN); `None` if not a TCP socket.
pub(super) fn unacked_output(fd: BorrowedFd<'_>) -> Option<usize> {
    nix::sys::socket::getsockopt(&fd, sockopt::SockType)
        .ok()
        .filter(|t| *t == nix::sys::socket::SockType::Stream)?;
    nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .filter(|a| a.as_sockaddr_in().is_some() || a.as_sockaddr_in6().is_some())?;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCOUTQ, &mut n) };
    (rc == 0).then(|| usize::try_from(n).unwrap_or(0))
}

/// Whether the socket has seen an error (a reset, for one).
pub(super) fn socket_failed(fd: BorrowedFd<'_>) -> bool {
    !matches!(
        nix::sys::socket::getsockopt(&fd, sockopt::SocketError),
        Ok(0)
    )
}

/// Writes a short message to a descriptor that may be non-blocking.
pub(super) fn write_all_blocking(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => wait_for(fd, PollFlags::POLLOUT, PollTimeout::NONE)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sleeps until `fd` is ready for `what` or `timeout` passes.
pub(super) fn wait_for(
    fd: BorrowedFd<'_>,
    what: PollFlags,
    timeout: PollTimeout,
) -> Result<(), Errno> {
    let mut pfd = [PollFd::new(fd, what)];
    match poll(&mut pfd, timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e),
    }
}
