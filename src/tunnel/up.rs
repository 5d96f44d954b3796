//! Application to network: reading the application once the handshake is
//! done (rustls encrypts it into the outgoing buffer, see `records.rs`),
//! sending the outgoing buffer, and the transitions of [`Up`] (the
//! application's EOF, close_notify, the half-close).

use super::state::Up;
use super::sys::queued_input;
use super::{sending, Tunnel};
use crate::cli::error::{describe_io, Fatal, EXIT_SYS};
use nix::errno::Errno;
use nix::sys::socket::{shutdown, Shutdown};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

impl Tunnel {
    /// The application closed its writing end before the handshake. If it
    /// wrote nothing, that is its EOF; otherwise its data goes out after
    /// the handshake and the EOF is read then. Either way poll would keep
    /// reporting the hang-up, so it is not watched again.
    pub(super) fn app_hung_up_early(&mut self) {
        let Up::Waiting { fdr, hung_up } = &mut self.up else {
            return;
        };
        if queued_input(fdr.as_fd()) == Some(0) {
            self.up = Up::Ending {
                close_notify_queued: false,
            };
        } else {
            *hung_up = true;
        }
    }

    /// Application to network: read cleartext, for rustls to encrypt at
    /// its next step.
    pub(super) fn app_to_net(&mut self) -> Result<bool, Fatal> {
        let Up::Open { fdr, readable } = &mut self.up else {
            return Ok(false);
        };
        // Only read more once everything encrypted so far is on the wire:
        // the backlog never exceeds one read.
        if !*readable
            || self.down.failed()
            || !self.buffers.out.is_empty()
            || !self.buffers.app.is_empty()
        {
            return Ok(false);
        }
        let buf = &mut self.buffers.app;
        match buf.read_from(fdr.as_fd()) {
            Ok(0) => {
                self.up = Up::Ending {
                    close_notify_queued: false,
                };
                Ok(true)
            }
            Ok(n) => {
                if !buf.is_full_read(n) {
                    *readable = false;
                }
                self.clock.activity();
                Ok(true)
            }
            Err(Errno::EINTR) => Ok(true),
            Err(Errno::EAGAIN) => {
                *readable = false;
                Ok(false)
            }
            Err(e) => Err(Fatal::sys("read from application", e)),
        }
    }

    /// Sends the outgoing buffer, as far as the network takes it.
    pub(super) fn flush_net(&mut self) -> Result<bool, Fatal> {
        let mut progress = false;
        while self.net.writable && !self.buffers.out.is_empty() {
            let Some(fd) = sending(&self.up, &self.net) else {
                return Ok(progress);
            };
            match nix::unistd::write(fd, self.buffers.out.pending()) {
                Ok(n) => {
                    self.buffers.out.consume(n);
                    progress = true;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => self.net.writable = false,
                Err(e) => {
                    return Err(Fatal::new(
                        EXIT_SYS,
                        format!(
                            "unable to write to network: {}",
                            describe_io(&io::Error::from(e))
                        ),
                    ))
                }
            }
        }
        Ok(progress)
    }

    /// Records are still to be encoded or written.
    fn sends_pending(&self) -> bool {
        !self.buffers.out.is_empty() || self.conn.wants_write() || self.close_notify_wanted
    }

    /// After the application's EOF and a full flush: close_notify with
    /// -S, then (once that is flushed too) the half-close.
    pub(super) fn close_transitions(&mut self) -> bool {
        if !self.handshake_done || self.down.failed() || self.sends_pending() {
            return false;
        }
        let Up::Ending {
            close_notify_queued,
        } = &mut self.up
        else {
            return false;
        };
        if !*close_notify_queued {
            *close_notify_queued = true;
            // rustls encrypts it at its next step.
            self.close_notify_wanted = self.opts.close_notify;
            return true;
        }
        self.up = Up::Closed;
        if let Some(fd) = self.net.output.take() {
            if shutdown(fd.as_raw_fd(), Shutdown::Write).is_ok() {
                self.net.output = Some(fd);
            }
            // Not a socket: closing our end is the only EOF we can give.
        }
        if self.opts.close_notify
            && self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2)
        {
            // TLS 1.2 has no half-close: the connection ends here.
            self.down.stop_delivering();
        }
        true
    }
}
