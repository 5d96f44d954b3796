//! Network to application: reading the peer into the network buffer
//! (rustls decrypts there, see `records.rs`), delivering the plaintext
//! the application could not take at once, and the transitions of
//! [`Down`] (close_notify, EOF, a failed record, the application no
//! longer reading).

use super::state::Down;
use super::Tunnel;
use crate::cli::error::Fatal;
use nix::errno::Errno;
use rustls::InvalidMessage;
use std::os::fd::AsFd;

/// A fatal decode_error alert record, in plaintext (RFC 8446, 6.2).
const DECODE_ERROR_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 50];

impl Tunnel {
    /// The network is read during the handshake (it needs it), and after
    /// it while the peer's data is delivered.
    pub(super) fn reads_network(&self) -> bool {
        !self.handshake_done || self.down.is_open()
    }

    /// Network to application, once rustls has done what it could with
    /// the records we hold: deliver the held plaintext, see the end of
    /// the peer's data, read the socket when nothing decrypted waits.
    pub(super) fn net_to_app(&mut self) -> Result<bool, Fatal> {
        let progress = self.deliver_held()?;
        if self.plaintext_waiting() {
            return Ok(progress);
        }
        if self.down.out().is_some() {
            if self.net.close_notify {
                // Everything before the close_notify is delivered.
                self.down.stop_delivering();
                return Ok(true);
            }
            if matches!(self.down, Down::Draining(_)) {
                // EOF without close_notify, all delivered.
                return self.unclean_eof();
            }
        }
        if !self.reads_network() {
            return Ok(progress);
        }
        if self.buffers.net.is_full() {
            self.fail(rustls::Error::InvalidMessage(
                InvalidMessage::HandshakePayloadTooLarge,
            ))?;
            return Ok(true);
        }
        if !self.net.readable {
            return Ok(progress);
        }
        Ok(self.read_net()? || progress)
    }

    /// Reads the socket; false if nothing came (would block).
    fn read_net(&mut self) -> Result<bool, Fatal> {
        loop {
            match self.buffers.net.fill_from(self.net.input.as_fd()) {
                Ok(0) => {
                    self.on_peer_eof()?;
                    return Ok(true);
                }
                Ok(_) => {
                    self.clock.activity();
                    if !self.buffers.net.was_full_read() {
                        self.net.readable = false;
                    }
                    return Ok(true);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    self.net.readable = false;
                    return Ok(false);
                }
                Err(e) => return Err(Fatal::sys("read from network", e)),
            }
        }
    }

    /// rustls failed on what the peer sent.
    pub(super) fn fail(&mut self, e: rustls::Error) -> Result<(), Fatal> {
        if let rustls::Error::InvalidMessage(_) = e {
            self.alert_if_rustls_did_not();
        }
        let error = self.tls_failure(&crate::tls::errors::describe(&e));
        if !self.handshake_done {
            return Err(error);
        }
        // The records before the bad one were authentic: deliver their
        // plaintext first (see failure_due), and read nothing more.
        let out = match std::mem::replace(&mut self.down, Down::Closed) {
            Down::Open(out) | Down::Draining(out) => Some(out),
            Down::Failed { out, .. } => out,
            Down::Closed => None,
        };
        self.down = Down::Failed { out, error };
        Ok(())
    }

    /// rustls sends no alert for a first message it cannot take because
    /// of its size (announcing more than a handshake message may hold),
    /// where an OpenSSL server does; nor do we for one larger than our
    /// buffer. Before anything is negotiated nothing is encrypted: the
    /// alert can be ours, in plaintext, and the peer learns why instead of
    /// seeing a bare EOF.
    fn alert_if_rustls_did_not(&mut self) {
        if self.conn.protocol_version().is_some() || self.conn.wants_write() {
            return;
        }
        let out = &mut self.buffers.out;
        out.reserve(DECODE_ERROR_ALERT.len());
        out.room()[..DECODE_ERROR_ALERT.len()].copy_from_slice(&DECODE_ERROR_ALERT);
        out.wrote(DECODE_ERROR_ALERT.len());
    }

    /// The pending TLS error, once nothing decrypted before it is left to
    /// deliver (or nobody reads it).
    pub(super) fn failure_due(&mut self) -> Option<Fatal> {
        if !self.down.failed() {
            return None;
        }
        if self.down.out().is_some() && self.plaintext_waiting() {
            return None;
        }
        match std::mem::replace(&mut self.down, Down::Closed) {
            Down::Failed { error, .. } => Some(error),
            _ => unreachable!("checked above"),
        }
    }

    pub(super) fn plaintext_waiting(&self) -> bool {
        self.record_waiting || !self.buffers.held.is_empty()
    }

    fn on_peer_eof(&mut self) -> Result<(), Fatal> {
        self.net.eof = true;
        self.net.readable = false;
        if !self.handshake_done {
            return Err(Fatal::tls(
                "TLS handshake failed: peer closed the connection",
            ));
        }
        // What rustls has not taken is a partial record: it never comes.
        if let Down::Open(_) = self.down {
            let Down::Open(out) = std::mem::replace(&mut self.down, Down::Closed) else {
                unreachable!("matched above");
            };
            self.down = Down::Draining(out);
        }
        Ok(())
    }

    /// Writes the held plaintext to the application; dropped if nobody
    /// reads it any more.
    fn deliver_held(&mut self) -> Result<bool, Fatal> {
        let held = &mut self.buffers.held;
        let Some(out) = self.down.out() else {
            held.clear();
            return Ok(false);
        };
        if held.is_empty() || !out.writable {
            return Ok(false);
        }
        loop {
            match nix::unistd::write(&out.fd, held.pending()) {
                Ok(n) => {
                    held.consume(n);
                    return Ok(true);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    out.writable = false;
                    return Ok(false);
                }
                Err(Errno::EPIPE) => {
                    self.app_stopped_reading();
                    return Ok(true);
                }
                Err(e) => return Err(Fatal::sys("write to application", e)),
            }
        }
    }

    fn unclean_eof(&mut self) -> Result<bool, Fatal> {
        if self.opts.enforce_close_notify {
            return Err(Fatal::tls(
                "remote closed connection without a close_notify",
            ));
        }
        self.down = Down::Closed;
        Ok(true)
    }

    /// The application closed its reading end: nothing we receive can be
    /// delivered any more, so stop receiving — once the handshake is done,
    /// since the handshake itself needs the network, and the application
    /// may still be writing (its data goes out after the handshake).
    ///
    /// The network is not `shutdown(SHUT_RD)`: it sends nothing, but on
    /// Linux a socket shut down for reading whose FIN has been sent answers
    /// any further data from the peer with an immediate reset, which
    /// destroys what the peer has not acknowledged yet — the application's
    /// last bytes, which must be delivered. The peer's data stays in the
    /// socket, and flow control soon stops the peer.
    pub(super) fn app_stopped_reading(&mut self) {
        self.log.debug("application stopped reading");
        self.down.stop_delivering();
    }
}
