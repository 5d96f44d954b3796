//! The tunnel: one TLS connection, server or client, between the network
//! and the application (cleartext in, cleartext out), driven by a
//! single-threaded `poll` loop over at most four descriptors, with the
//! close rules of doc/s6-tlsd-io.md ("Closing").
//!
//! # What a role gives the tunnel
//!
//! The loop is the same for both roles; the caller hands it what differs:
//!
//! - the connection, as a [`rustls::Connection`] (`Connection::Server` or
//!   `Connection::Client`), freshly made from the role's configuration;
//! - the four descriptors, already owned, in [`Fds`]: which numbers are
//!   the network and which the application is the caller's business
//!   (fds 0/1 and `fdr fdw` for s6-tlsd-io, the reverse for s6-tlsc-io),
//!   plus the optional notification descriptor;
//! - a [`Peer`]: what the information string says about the finished
//!   handshake (for the server, [`info::server_entries`]; a client builds
//!   its entries with [`info::entries`] and the name it sent), and how the
//!   handshake summary at -v2 names the peer.
//!
//! ```no_run
//! # use s6_tls::{cli::{log::Log, opts::Options}, info, tunnel::{Fds, Peer, Tunnel}};
//! # fn f(config: std::sync::Arc<rustls::ServerConfig>, fds: Fds, opts: &Options, log: Log)
//! # -> Result<(), s6_tls::cli::error::Fatal> {
//! let conn = rustls::ServerConnection::new(config).expect("a usable configuration");
//! let peer = Peer { called: "client", entries: Box::new(info::server_entries) };
//! Tunnel::new(conn.into(), peer, opts, fds, log)?.run()
//! # }
//! ```
//!
//! # How it is built
//!
//! - `state.rs`: the network connection and the state of each direction
//!   (network to application: `Down`; application to network: `Up`), as
//!   the close rules name them; each rule below is one transition there.
//! - `buffers.rs`: the two buffers, one read each.
//! - `clock.rs`: `-K` and `--handshake-timeout`.
//! - `linger.rs`: the end, whatever ended the tunnel (a normal end or an
//!   error): the queued alert written, the half-close, and the peer's
//!   input discarded until its EOF or until our last bytes are
//!   acknowledged, so that no TCP reset destroys them.
//! - `sys.rs`: non-blocking mode, kernel queue lengths, `writev`.
//!
//! Network to application ends when the peer's close_notify or EOF has
//! been delivered (then the application's reading end is closed), or when
//! the application stops reading (then the network is no longer read,
//! once the handshake is done). Application to network ends when the
//! application's EOF has been flushed and answered with a half-close or a
//! close_notify. The tunnel ends when both have ended, or at the first
//! error; then it lingers.

mod buffers;
mod clock;
mod linger;
mod state;
mod sys;

use crate::cli::error::{describe_io, Fatal, EXIT_SYS};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use buffers::Buffers;
use clock::Clock;
use linger::{Limit, Linger};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{setsockopt, shutdown, sockopt, Shutdown};
use rustls::Connection;
use state::{AppOut, Down, Network, Up};
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;
use sys::{queued_input, set_nonblocking, write_all_blocking, FdWriter};

/// The four descriptors of the tunnel, whatever their numbers, and the
/// one the information string goes to after the handshake.
pub struct Fds {
    pub net_in: OwnedFd,
    pub net_out: OwnedFd,
    pub app_in: OwnedFd,
    pub app_out: OwnedFd,
    pub notify: Option<OwnedFd>,
}

/// What the tunnel needs to know about the other end of the connection.
pub struct Peer {
    /// The peer's name in the -v2 handshake summary (`client=SUBJECT`).
    pub called: &'static str,
    /// The information entries of the finished handshake, computed once
    /// when it completes.
    pub entries: Box<Describe>,
}

/// Builds the information entries from a finished connection.
pub type Describe = dyn FnOnce(&Connection) -> Vec<info::Entry>;

pub struct Tunnel {
    conn: Connection,
    /// Until the handshake is done: then it describes it.
    peer: Option<Peer>,
    log: Log,
    opts: Options,
    net: Network,
    down: Down,
    up: Up,
    notify: Option<OwnedFd>,
    buffers: Buffers,
    clock: Clock,
    handshake_done: bool,
}

/// What one attempt to deliver plaintext did.
enum Delivery {
    /// Some bytes went to the application.
    Some,
    /// Nothing decrypted is waiting.
    Empty,
    /// The application cannot take more now (or is gone).
    Blocked,
}

impl Tunnel {
    pub fn new(
        mut conn: Connection,
        peer: Peer,
        opts: &Options,
        fds: Fds,
        log: Log,
    ) -> Result<Self, Fatal> {
        // We bound both buffers ourselves: the application is read only
        // after the handshake and only when everything before is sent.
        conn.set_buffer_limit(None);
        set_nonblocking(fds.net_in.as_fd(), "network input")?;
        set_nonblocking(fds.net_out.as_fd(), "network output")?;
        set_nonblocking(fds.app_in.as_fd(), "application input")?;
        set_nonblocking(fds.app_out.as_fd(), "application output")?;
        // Each flight goes out in one writev; Nagle could only delay it.
        let _ = setsockopt(&fds.net_out, sockopt::TcpNoDelay, &true);
        Ok(Tunnel {
            conn,
            peer: Some(peer),
            log,
            opts: opts.clone(),
            net: Network {
                input: fds.net_in,
                output: Some(fds.net_out),
                readable: true,
                writable: true,
                eof: false,
                close_notify: false,
            },
            down: Down::Open(AppOut {
                fd: fds.app_out,
                writable: true,
            }),
            up: Up::Waiting {
                fdr: fds.app_in,
                hung_up: false,
            },
            notify: fds.notify,
            buffers: Buffers::new(),
            clock: Clock::new(opts),
            handshake_done: false,
        })
    }

    /// Runs the connection to its end, then lingers (see `linger.rs`).
    pub fn run(mut self) -> Result<(), Fatal> {
        let end = self.carry();
        let limit = match end {
            Ok(()) => Limit::Progress {
                handshake_done: self.handshake_done,
            },
            Err(_) => Limit::Until(Instant::now() + self.clock.linger_after_failure()),
        };
        let lingered = Linger {
            conn: &mut self.conn,
            net: &self.net,
            scratch: self.buffers.net.scratch(),
            clock: &mut self.clock,
            log: &self.log,
        }
        .run(limit);
        end.and(lingered)
    }

    /// Moves data until both directions have ended or something fails.
    fn carry(&mut self) -> Result<(), Fatal> {
        loop {
            self.pump()?;
            if let Some(error) = self.failure_due() {
                return Err(error);
            }
            if self.finished() {
                return Ok(());
            }
            self.wait()?;
        }
    }

    fn finished(&self) -> bool {
        // Even when the application stopped reading before the handshake
        // completed, what it wrote (or still writes) must go out once the
        // handshake is done: only the end of both directions ends the
        // tunnel.
        let both_ended = self.down.is_closed() && self.up.is_closed();
        // Before the handshake, an application that closed both its ends
        // without writing anything has nothing for us to carry.
        let app_gone_early =
            !self.handshake_done && self.down.is_closed() && matches!(self.up, Up::Ending { .. });
        both_ended || app_gone_early
    }

    /// Moves every byte that can move without blocking.
    fn pump(&mut self) -> Result<(), Fatal> {
        loop {
            let mut progress = self.net_to_app()?;
            progress |= self.app_to_net()?;
            progress |= self.flush_net()?;
            progress |= self.close_transitions();
            if !progress {
                return Ok(());
            }
        }
    }

    /// The network is read during the handshake (it needs it), and after
    /// it while the peer's data is delivered.
    fn reads_network(&self) -> bool {
        !self.handshake_done || self.down.is_open()
    }

    /// Network to application: deliver decrypted data, feed rustls what
    /// we hold, read the socket when both are empty.
    fn net_to_app(&mut self) -> Result<bool, Fatal> {
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
            Err(e) => return Err(self.tls_failure(&e.to_string())),
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

    /// A TLS failure as the one line that reports it.
    fn tls_failure(&self, reason: &str) -> Fatal {
        let stage = if self.handshake_done {
            "TLS error"
        } else {
            "TLS handshake failed"
        };
        Fatal::tls(format!("{stage}: {reason}"))
    }

    /// The pending TLS error, once nothing decrypted before it is left to
    /// deliver (or nobody reads it).
    fn failure_due(&mut self) -> Option<Fatal> {
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

    fn plaintext_waiting(&mut self) -> bool {
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
    fn app_stopped_reading(&mut self) {
        self.log.debug("application stopped reading");
        self.down.stop_delivering();
    }

    /// The application closed its writing end before the handshake. If it
    /// wrote nothing, that is its EOF; otherwise its data goes out after
    /// the handshake and the EOF is read then. Either way poll would keep
    /// reporting the hang-up, so it is not watched again.
    fn app_hung_up_early(&mut self) {
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
    fn app_to_net(&mut self) -> Result<bool, Fatal> {
        let Up::Open { fdr, readable } = &mut self.up else {
            return Ok(false);
        };
        // Only read more once everything encrypted so far is on the wire:
        // the backlog never exceeds one read.
        if !*readable || self.down.failed() || self.conn.wants_write() {
            return Ok(false);
        }
        let buf = &mut self.buffers.app;
        match nix::unistd::read(&*fdr, buf) {
            Ok(0) => {
                self.up = Up::Ending {
                    close_notify_queued: false,
                };
                Ok(true)
            }
            Ok(n) => {
                if n < buf.len() {
                    *readable = false;
                }
                self.clock.activity();
                self.conn
                    .writer()
                    .write_all(&buf[..n])
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
    fn flush_net(&mut self) -> Result<bool, Fatal> {
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
    fn close_transitions(&mut self) -> bool {
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

    fn on_handshake(&mut self) {
        self.handshake_done = true;
        if let Up::Waiting { .. } = self.up {
            let Up::Waiting { fdr, .. } = std::mem::replace(&mut self.up, Up::Closed) else {
                unreachable!("matched above");
            };
            self.up = Up::Open {
                fdr,
                readable: true,
            };
        }
        let Some(peer) = self.peer.take() else {
            return;
        };
        let entries = (peer.entries)(&self.conn);
        if self.log.verbosity >= 2 {
            let value = |i: usize| entries[i].1.as_deref().unwrap_or("-").to_owned();
            self.log.info(&format!(
                "handshake done in {} ms: protocol={} cipher={} sni={} {}={}",
                self.clock.since_start().as_millis(),
                value(0),
                value(1),
                value(2),
                peer.called,
                value(4)
            ));
        }
        if let Some(fd) = self.notify.take() {
            if let Err(e) = write_all_blocking(fd.as_fd(), &info::encode(&entries)) {
                self.log.warn(&format!(
                    "unable to send the connection information: {}",
                    e.desc()
                ));
            }
        }
    }

    /// Sleeps in poll until a descriptor is ready or a deadline passes.
    fn wait(&mut self) -> Result<(), Fatal> {
        if let Some(timeout) = self.clock.expired(self.handshake_done) {
            return Err(self.timed_out(timeout));
        }
        let plaintext_waiting = self.plaintext_waiting();
        let want_net_read = self.reads_network()
            && !self.net.readable
            && self.buffers.net.pending().is_empty()
            && !plaintext_waiting;
        let want_net_write = self.conn.wants_write() && !self.net.writable;
        let want_app_read = matches!(
            self.up,
            Up::Open {
                readable: false,
                ..
            }
        ) && !self.conn.wants_write()
            && !self.down.failed();
        // Before the handshake the application is not read, but its
        // hanging up is watched for.
        let watch_app_hangup = matches!(self.up, Up::Waiting { hung_up: false, .. });
        let fdr = match &self.up {
            Up::Waiting { fdr, .. } | Up::Open { fdr, .. } => Some(fdr.as_fd()),
            _ => None,
        };
        let app_in_flags = if want_app_read {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        // The application's reading end is always watched, even with
        // nothing to write, so that its closing is noticed (POLLERR).
        let fdw = match &self.down {
            Down::Open(out) | Down::Draining(out) | Down::Failed { out: Some(out), .. } => {
                Some((out.fd.as_fd(), out.writable))
            }
            _ => None,
        };
        let app_out_flags = match fdw {
            Some((_, false)) if plaintext_waiting => PollFlags::POLLOUT,
            _ => PollFlags::empty(),
        };
        let candidates = [
            (
                Some(self.net.input.as_fd()).filter(|_| want_net_read),
                PollFlags::POLLIN,
            ),
            (
                sending(&self.up, &self.net).filter(|_| want_net_write),
                PollFlags::POLLOUT,
            ),
            (
                fdr.filter(|_| want_app_read || watch_app_hangup),
                app_in_flags,
            ),
            (fdw.map(|(fd, _)| fd), app_out_flags),
        ];
        let mut slots = [None; 4];
        let mut fds = Vec::with_capacity(4);
        for (slot, (fd, flags)) in candidates.into_iter().enumerate() {
            if let Some(fd) = fd {
                slots[slot] = Some(fds.len());
                fds.push(PollFd::new(fd, flags));
            }
        }

        let timeout = self.clock.poll_timeout(self.handshake_done);
        let n = loop {
            match poll(&mut fds, timeout) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Fatal::sys("poll", e)),
            }
        };
        let ready = |slot: usize| -> PollFlags {
            slots[slot]
                .and_then(|i| fds[i].revents())
                .unwrap_or(PollFlags::empty())
        };
        let (net_r, net_w, app_r, app_w) = (ready(0), ready(1), ready(2), ready(3));
        drop(fds);
        if n == 0 {
            return match self.clock.expired(self.handshake_done) {
                Some(timeout) => Err(self.timed_out(timeout)),
                None => Ok(()),
            };
        }
        let any = PollFlags::all();
        if net_r.intersects(any) {
            self.net.readable = true;
        }
        if net_w.intersects(any) {
            self.net.writable = true;
        }
        match &mut self.up {
            Up::Open { readable, .. } if app_r.intersects(any) => *readable = true,
            Up::Waiting { .. } if app_r.contains(PollFlags::POLLHUP) => self.app_hung_up_early(),
            _ => {}
        }
        if app_w.contains(PollFlags::POLLOUT) {
            if let Some(out) = self.down.out() {
                out.writable = true;
            }
        } else if app_w.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
            self.app_stopped_reading();
        }
        Ok(())
    }

    /// A deadline passed. Out of time to deliver what came before a
    /// failure, the failure is the story.
    fn timed_out(&mut self, timeout: Fatal) -> Fatal {
        match std::mem::replace(&mut self.down, Down::Closed) {
            Down::Failed { error, .. } => error,
            _ => timeout,
        }
    }
}

/// The network output, while something may still be sent on it.
fn sending<'a>(up: &Up, net: &'a Network) -> Option<BorrowedFd<'a>> {
    if up.is_closed() {
        return None;
    }
    net.output.as_ref().map(|fd| fd.as_fd())
}
