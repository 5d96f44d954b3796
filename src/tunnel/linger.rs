//! The end of a connection, whatever ended it. Closing a TCP socket that
//! holds unread input makes the kernel send a reset instead of a FIN, and
//! a reset destroys whatever the peer has not read yet: the application's
//! last bytes, our close_notify, the alert that says why we fail, our FIN.
//! That input exists when we stopped reading before the peer's EOF (the
//! application stopped reading, `-S` under TLS 1.2, a failure) and the
//! peer kept sending. So before the descriptors are closed: push out what
//! is still to be sent (after a failure: the alert, which rustls encodes
//! for us now), half-close, then discard the peer's input until its EOF
//! or until everything we sent is acknowledged. On a descriptor that is
//! not a TCP socket there is nothing to wait for.

use super::buffers::{NetBuffer, OutBuffer};
use super::clock::{self, Clock};
use super::records::{Connection, Io, Outcome};
use super::state::Network;
use super::sys::{queued_input, socket_failed, unacked_output, wait_for};
use crate::cli::error::Fatal;
use crate::cli::log::Log;
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{shutdown, Shutdown};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How often we look whether the peer has acknowledged everything (no
/// event says so), and drop what it sent meanwhile.
const ACK_CHECK: Duration = Duration::from_millis(5);

/// How long the linger may last.
pub(super) enum Limit {
    /// A normal end: as long as the peer acknowledges something within
    /// each `-K` (running out of it is the usual `-K` timeout).
    Progress { handshake_done: bool },
    /// After a failure: until this instant at most, in all, however much
    /// the peer sends (running out of it is no new error).
    Until(Instant),
}

/// What the linger works on, lent by the tunnel at its exit.
pub(super) struct Linger<'a> {
    pub conn: &'a mut Connection,
    pub net: &'a Network,
    /// What rustls had not consumed; then scratch space.
    pub incoming: &'a mut NetBuffer,
    pub out: &'a mut OutBuffer,
    pub clock: &'a mut Clock,
    pub log: &'a Log,
}

impl Linger<'_> {
    pub fn run(mut self, limit: Limit) -> Result<(), Fatal> {
        if let Limit::Until(deadline) = limit {
            self.flush(deadline);
        }
        let Some(output) = self.net.output.as_ref().map(|fd| fd.as_fd()) else {
            return Ok(());
        };
        // Our FIN after our last bytes (it may have been sent already).
        let _ = shutdown(output.as_raw_fd(), Shutdown::Write);
        let input = self.net.input.as_fd();
        let scratch = self.incoming.scratch();
        if self.net.eof || (self.net.close_notify && queued_input(input) == Some(0)) {
            return Ok(());
        }
        let Some(mut unacked) = unacked_output(output) else {
            return Ok(());
        };
        self.log
            .debug("waiting for the peer to acknowledge our last bytes");
        loop {
            if discard_queued(input, scratch) {
                return Ok(());
            }
            let pending = match unacked_output(output) {
                Some(n) if n > 0 => n,
                _ => return Ok(()),
            };
            // A reset leaves the unacknowledged count as it was.
            if socket_failed(output) {
                return Ok(());
            }
            if pending < unacked {
                unacked = pending;
                self.clock.activity();
            }
            let wait = match limit {
                Limit::Progress { handshake_done } => {
                    if let Some(timeout) = self.clock.expired(handshake_done) {
                        return Err(timeout);
                    }
                    ACK_CHECK
                }
                Limit::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(());
                    }
                    left.min(ACK_CHECK)
                }
            };
            // A sleep, not a poll for input: discarding the peer's data as
            // fast as it comes would invite a peer that sends before it
            // reads to send on instead of reading our last bytes.
            std::thread::sleep(wait);
        }
    }

    /// Writes what is still to be sent, as far as the deadline allows.
    fn flush(&mut self, deadline: Instant) {
        let Some(output) = self.net.output.as_ref().map(|fd| fd.as_fd()) else {
            return;
        };
        self.encode_queued();
        while !self.out.is_empty() {
            match nix::unistd::write(output, self.out.pending()) {
                Ok(n) => self.out.consume(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    let _ = wait_for(output, PollFlags::POLLOUT, clock::poll_timeout(left));
                }
                Err(_) => return,
            }
        }
    }

    /// Has rustls encode what it queued (the alert of a failure) into the
    /// outgoing buffer. It hands that out before it looks at any further
    /// record, and nothing is looked at once that is done.
    fn encode_queued(&mut self) {
        let mut nothing_wanted = false;
        while self.conn.wants_write() {
            let mut io = Io {
                out: self.out,
                plain: None,
                close_notify: &mut nothing_wanted,
                sink: None,
                hold_back: false,
                must_pass: true,
            };
            let (done, outcome) = self.conn.step(self.incoming.pending(), &mut io);
            self.incoming.consume(done);
            if !matches!(outcome, Ok(Outcome::Progress)) {
                return;
            }
        }
    }
}

/// Reads and drops what is queued now (FIONREAD, or one read to see an
/// EOF): a read must not block, and a peer that keeps sending must not
/// keep us from looking at the acknowledgements. True when nothing
/// more can come: the peer's EOF, or a failed read.
fn discard_queued(input: BorrowedFd<'_>, scratch: &mut [u8]) -> bool {
    let budget = queued_input(input).unwrap_or(0).max(1);
    let mut read = 0;
    while read < budget {
        match nix::unistd::read(input, scratch) {
            Ok(0) => return true,
            Ok(n) => read += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
    false
}
