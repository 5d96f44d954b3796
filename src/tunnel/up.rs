//! Application to network: reading the application once the handshake is
//! done, sending what rustls has encrypted, and the transitions of [`Up`]
//! (the application's EOF, close_notify, the half-close).

use super::state::Up;
use super::sys::{queued_input, FdWriter};
use super::{sending, Tunnel};
use crate::cli::error::{describe_io, Fatal, EXIT_SYS};
use nix::errno::Errno;
use nix::sys::socket::{shutdown, Shutdown};
use std::io::{self, Write};
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

    /// Application to network: read cleartext while rustls's backlog is small.
    pub(super) fn app_to_net(&mut self) -> Result<bool, Fatal> {
        let Up::Open { fdr, readable } = &mut self.up else {
            return Ok(false);
        };
        // Only read more once everything encrypted so far is on the wire:
        // the backlog never exceeds one read.
        if !*readable || self.down.failed() || self.conn.wants_write() {
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
                self.conn
                    .writer()
                    .write_all(buf.get(n))
                    .map_err(|e| self.tls_failure(&e.to_string()))?;
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

    /// Sends what rustls has encrypted.
    pub(super) fn flush_net(&mut self) -> Result<bool, Fatal> {
        let mut progress = false;
        while self.net.writable && self.conn.wants_write() {
            let Some(fd) = sending(&self.up, &self.net) else {
                return Ok(progress);
            };
            match self.conn.write_tls(&mut FdWriter(fd)) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.net.writable = false,
                Err(e) => {
                    return Err(Fatal::new(
                        EXIT_SYS,
                        format!("unable to write to network: {}", describe_io(&e)),
                    ))
                }
            }
        }
        Ok(progress)
    }

    /// After the application's EOF and a full flush: close_notify with
    /// -S, then (once that is flushed too) the half-close.
    pub(super) fn close_transitions(&mut self) -> bool {
        let Up::Ending {
            close_notify_queued,
        } = &mut self.up
        else {
            return false;
        };
        if !self.handshake_done || self.down.failed() || self.conn.wants_write() {
            return false;
        }
        if !*close_notify_queued {
            *close_notify_queued = true;
            if self.opts.close_notify {
                self.conn.send_close_notify();
            }
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
