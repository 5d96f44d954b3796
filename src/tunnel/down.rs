//! Network to application: reading the peer, feeding rustls, delivering
//! the plaintext, and the transitions of [`Down`] (close_notify, EOF, a
//! failed record, the application no longer reading).

use super::state::Down;
use super::{sending, Delivery, Tunnel};
use crate::cli::error::Fatal;
use nix::errno::Errno;
use std::io::{self, BufRead};
use std::os::fd::AsFd;

/// A fatal decode_error alert record, in plaintext (RFC 8446, 6.2).
const DECODE_ERROR_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 50];

impl Tunnel {
    /// The network is read during the handshake (it needs it), and after
    /// it while the peer's data is delivered.
    pub(super) fn reads_network(&self) -> bool {
        !self.handshake_done || self.down.is_open()
    }

    /// Network to application: deliver decrypted data, feed rustls what
    /// we hold, read the socket when both are empty.
    pub(super) fn net_to_app(&mut self) -> Result<bool, Fatal> {
        let mut progress = false;
        loop {
            if self.handshake_done && self.down.is_closed() {
                return Ok(progress);
            }
            match self.deliver()? {
                Delivery::Blocked => return Ok(progress),
                Delivery::Some => {
                    progress = true;
                    continue;
                }
                Delivery::Empty => {}
            }
            if !self.buffers.net.pending().is_empty() {
                self.feed_rustls()?;
                progress = true;
                continue;
            }
            if !self.reads_network() || !self.net.readable {
                return Ok(progress);
            }
            if !self.read_net()? {
                return Ok(progress);
            }
            progress = true;
        }
    }

    /// Reads the socket; false if nothing came (would block).
    fn read_net(&mut self) -> Result<bool, Fatal> {
        loop {
            match self.buffers.net.fill_from(self.net.input.as_fd()) {
                Ok(0) => {
                    self.on_peer_eof()?;
                    return Ok(true);
                }
                Ok(n) => {
                    self.clock.activity();
                    if !self.buffers.net.is_full_read(n) {
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

    /// Hands the bytes we hold to rustls and processes them.
    fn feed_rustls(&mut self) -> Result<(), Fatal> {
        let mut pending = self.buffers.net.pending();
        let taken = match self.conn.read_tls(&mut pending) {
            Ok(n) => n,
            Err(e) => {
                self.alert_if_rustls_did_not();
                return Err(self.tls_failure(&e.to_string()));
            }
        };
        self.buffers.net.consume(taken);
        self.process()
    }

    fn process(&mut self) -> Result<(), Fatal> {
        let processed = self.conn.process_new_packets();
        // One batch of records can complete the handshake, carry
        // application data, and end with a bad record: the handshake is
        // done even if the batch then failed.
        if !self.handshake_done && !self.conn.is_handshaking() {
            self.on_handshake();
        }
        if let Err(e) = processed {
            if let rustls::Error::InvalidMessage(_) = e {
                self.alert_if_rustls_did_not();
            }
            let error = self.tls_failure(&e.to_string());
            if !self.handshake_done {
                return Err(error);
            }
            // The records before the bad one were authentic, and rustls
            // may have decrypted several at once: deliver their plaintext
            // first (see failure_due), and read nothing more.
            self.buffers.net.discard();
            let out = match std::mem::replace(&mut self.down, Down::Closed) {
                Down::Open(out) | Down::Draining(out) => Some(out),
                Down::Failed { out, .. } => out,
                Down::Closed => None,
            };
            self.down = Down::Failed { out, error };
        }
        Ok(())
    }

    /// rustls sends no alert for a first message it cannot take because
    /// of its size (more than its buffer holds, or announcing more than a
    /// handshake message may hold), where an OpenSSL server does. Before
    /// anything is negotiated nothing is encrypted: the alert can be ours,
    /// in plaintext, and the peer learns why instead of seeing a bare EOF.
    fn alert_if_rustls_did_not(&mut self) {
        if self.conn.protocol_version().is_some() || self.conn.wants_write() {
            return;
        }
        if let Some(fd) = sending(&self.up, &self.net) {
            let _ = nix::unistd::write(fd, &DECODE_ERROR_ALERT);
        }
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

    pub(super) fn plaintext_waiting(&mut self) -> bool {
        matches!(self.conn.reader().fill_buf(), Ok(c) if !c.is_empty())
    }

    fn on_peer_eof(&mut self) -> Result<(), Fatal> {
        self.net.eof = true;
        self.net.readable = false;
        // Let rustls see the EOF so it can tell close_notify from truncation.
        let _ = self.conn.read_tls(&mut io::empty());
        if !self.handshake_done {
            return Err(Fatal::tls(
                "TLS handshake failed: peer closed the connection",
            ));
        }
        self.process()?;
        if let Down::Open(_) = self.down {
            let Down::Open(out) = std::mem::replace(&mut self.down, Down::Closed) else {
                unreachable!("matched above");
            };
            self.down = Down::Draining(out);
        }
        Ok(())
    }

    /// Writes decrypted data to the application.
    fn deliver(&mut self) -> Result<Delivery, Fatal> {
        let draining = matches!(self.down, Down::Draining(_));
        let Some(out) = self.down.out() else {
            // Nobody to deliver to (only reachable during the handshake,
            // when there is no application data yet, or after a failure).
            return Ok(Delivery::Empty);
        };
        let mut reader = self.conn.reader();
        let chunk = match reader.fill_buf() {
            Ok([]) => {
                // close_notify received: everything before it is delivered.
                self.net.close_notify = true;
                self.down.stop_delivering();
                return Ok(Delivery::Blocked);
            }
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if draining {
                    // EOF without close_notify, all delivered.
                    return self.unclean_eof();
                }
                return Ok(Delivery::Empty);
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return self.unclean_eof(),
            Err(e) => return Err(self.tls_failure(&e.to_string())),
        };
        if !out.writable {
            return Ok(Delivery::Blocked);
        }
        match nix::unistd::write(&out.fd, chunk) {
            Ok(n) => {
                reader.consume(n);
                Ok(Delivery::Some)
            }
            // Interrupted: nothing written, try again at once.
            Err(Errno::EINTR) => Ok(Delivery::Some),
            Err(Errno::EAGAIN) => {
                out.writable = false;
                Ok(Delivery::Blocked)
            }
            Err(Errno::EPIPE) => {
                self.app_stopped_reading();
                Ok(Delivery::Blocked)
            }
            Err(e) => Err(Fatal::sys("write to application", e)),
        }
    }

    fn unclean_eof(&mut self) -> Result<Delivery, Fatal> {
        if self.down.failed() {
            // The failure, not the EOF after it, is the story.
            return Ok(Delivery::Empty);
        }
        if self.opts.enforce_close_notify {
            return Err(Fatal::tls(
                "remote closed connection without a close_notify",
            ));
        }
        self.down = Down::Closed;
        Ok(Delivery::Blocked)
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
