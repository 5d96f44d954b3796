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
//! Each direction is a small state machine. Network to application ends
//! when the peer's close_notify or EOF has been delivered (then `fdw` is
//! closed), or when the application stops reading (then the network is
//! no longer read, once the handshake is done). Application to network
//! ends when the application's EOF has been flushed and answered with a
//! half-close or a close_notify. The process exits when both have ended,
//! after making sure its last bytes are not destroyed by a TCP reset
//! (see [`Tunnel::linger`]).

use crate::cli::error::{describe_io, Fatal, EXIT_SYS};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, shutdown, sockopt, Shutdown};
use rustls::Connection;
use std::io::{self, BufRead, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Bytes read from the network in one call.
const NET_READ: usize = 32 * 1024;
/// Bytes read from the application in one call.
const APP_READ: usize = 32 * 1024;
/// How often, while lingering at the exit, we look whether the peer has
/// acknowledged everything.
const LINGER_CHECK: Duration = Duration::from_millis(5);

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

/// `io::Write` over a raw descriptor, so rustls can `writev` whole flights.
struct FdWriter<'a>(BorrowedFd<'a>);

impl Write for FdWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(self.0, buf)?)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(nix::sys::uio::writev(self.0, bufs)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes read from the network that rustls has not taken yet.
struct NetBuffer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl NetBuffer {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

pub struct Tunnel {
    conn: Connection,
    peer: Option<Peer>,
    log: Log,
    opts: Options,
    /// The network descriptors, while that direction is in use.
    net_in: Option<OwnedFd>,
    net_out: Option<OwnedFd>,
    /// The network descriptors whose direction has ended (no longer
    /// read; shut down for writing), kept open until the exit: see
    /// [`Tunnel::linger`].
    parked_in: Option<OwnedFd>,
    parked_out: Option<OwnedFd>,
    app_in: Option<OwnedFd>,
    app_out: Option<OwnedFd>,
    notify: Option<OwnedFd>,
    net_buf: NetBuffer,
    app_buf: Box<[u8]>,
    // Readiness learnt from poll (reads) or assumed until EAGAIN (writes).
    net_readable: bool,
    net_writable: bool,
    app_readable: bool,
    app_writable: bool,
    handshake_done: bool,
    /// The peer will send nothing more: close_notify or EOF seen.
    peer_done: bool,
    /// The network's EOF itself was read.
    peer_eof: bool,
    /// The application will send nothing more.
    app_eof: bool,
    /// The application's writing end was seen closed before the handshake.
    app_in_hung_up: bool,
    /// After the application's EOF, the half-close or close_notify is queued.
    closing_queued: bool,
    /// A TLS error after the handshake, reported once the plaintext
    /// decrypted before it has been delivered.
    failed: Option<Fatal>,
    started: Instant,
    last_activity: Instant,
}

fn set_nonblocking(fd: BorrowedFd<'_>, what: &str) -> Result<(), Fatal> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Fatal::sys(format!("use {what}"), e))?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags))
        .map_err(|e| Fatal::sys(format!("set {what} non-blocking"), e))?;
    Ok(())
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
        let now = Instant::now();
        Ok(Tunnel {
            conn,
            peer: Some(peer),
            log,
            opts: opts.clone(),
            net_in: Some(fds.net_in),
            net_out: Some(fds.net_out),
            parked_in: None,
            parked_out: None,
            app_in: Some(fds.app_in),
            app_out: Some(fds.app_out),
            notify: fds.notify,
            net_buf: NetBuffer {
                buf: vec![0; NET_READ].into_boxed_slice(),
                start: 0,
                end: 0,
            },
            app_buf: vec![0; APP_READ].into_boxed_slice(),
            net_readable: true,
            net_writable: true,
            app_readable: false,
            app_writable: true,
            handshake_done: false,
            peer_done: false,
            peer_eof: false,
            app_eof: false,
            app_in_hung_up: false,
            closing_queued: false,
            failed: None,
            started: now,
            last_activity: now,
        })
    }

    /// Runs the connection to its end.
    pub fn run(mut self) -> Result<(), Fatal> {
        loop {
            self.pump()?;
            if let Some(fatal) = self.failure_due() {
                return Err(fatal);
            }
            if self.finished() {
                return self.linger();
            }
            self.wait()?;
        }
    }

    /// Before the descriptors are closed at the exit. Closing a TCP socket
    /// that holds unread input makes the kernel send a reset instead of
    /// a FIN, and a reset destroys whatever the peer has not acknowledged
    /// yet: the application's last bytes, our close_notify, our FIN. That
    /// input exists when we stopped reading before the peer's EOF (the
    /// application stopped reading, -S under TLS 1.2) and the peer kept
    /// sending. So, unless the peer's EOF was read (or it sent its
    /// close_notify and nothing after it is waiting), discard its input
    /// until everything we sent is acknowledged, the connection fails, or
    /// -K passes without progress. On a descriptor that is not a TCP
    /// socket there is nothing to wait for.
    fn linger(&mut self) -> Result<(), Fatal> {
        let input = self.net_in.take().or_else(|| self.parked_in.take());
        let output = self.net_out.take().or_else(|| self.parked_out.take());
        let (Some(input), Some(output)) = (input, output) else {
            return Ok(());
        };
        if self.peer_eof || (self.peer_done && queued_input(input.as_fd()) == Some(0)) {
            return Ok(());
        }
        let Some(mut unacked) = unacked_output(output.as_fd()) else {
            return Ok(());
        };
        self.log
            .debug("waiting for the peer to acknowledge our last bytes");
        loop {
            // Only what is queued now (FIONREAD): a read must not block,
            // and a peer that keeps sending must not keep us from looking
            // at the acknowledgements.
            let mut queued = queued_input(input.as_fd()).unwrap_or(0);
            while queued > 0 {
                let len = queued.min(self.net_buf.buf.len());
                match nix::unistd::read(&input, &mut self.net_buf.buf[..len]) {
                    Ok(0) => break,
                    Ok(n) => {
                        queued -= n.min(queued);
                        self.last_activity = Instant::now();
                    }
                    Err(Errno::EINTR) => {}
                    Err(_) => return Ok(()),
                }
            }
            let pending = match unacked_output(output.as_fd()) {
                Some(n) if n > 0 => n,
                _ => return Ok(()),
            };
            // A reset leaves the unacknowledged count as it was.
            let failed = nix::sys::socket::getsockopt(&output, sockopt::SocketError);
            if !matches!(failed, Ok(0)) {
                return Ok(());
            }
            if pending < unacked {
                unacked = pending;
                self.last_activity = Instant::now();
            }
            self.check_deadlines()?;
            // No event says "acknowledged": look again shortly.
            std::thread::sleep(LINGER_CHECK);
        }
    }

    fn finished(&self) -> bool {
        // Even when the application stopped reading before the handshake
        // completed, what it wrote (or still writes) on fdr must go out
        // once the handshake is done: only the end of both directions
        // ends the tunnel.
        let both_ended = self.app_out.is_none() && self.net_out.is_none();
        // Before the handshake, an application that closed both its ends
        // without writing anything has nothing for us to carry.
        let app_gone_early = !self.handshake_done && self.app_out.is_none() && self.app_eof;
        both_ended || app_gone_early
    }

    /// Moves every byte that can move without blocking.
    fn pump(&mut self) -> Result<(), Fatal> {
        loop {
            let mut progress = self.net_to_app()?;
            progress |= self.app_to_net()?;
            progress |= self.flush_net()?;
            progress |= self.close_transitions()?;
            if !progress {
                return Ok(());
            }
        }
    }

    /// Network to application: deliver decrypted data, feed rustls what
    /// we hold, read the socket when both are empty.
    fn net_to_app(&mut self) -> Result<bool, Fatal> {
        let mut progress = false;
        loop {
            // Without a reader, the network is still read until the
            // handshake is done (see app_stopped_reading).
            if self.app_out.is_none() && self.handshake_done {
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
            if !self.net_buf.pending().is_empty() {
                self.feed_rustls()?;
                progress = true;
                continue;
            }
            if self.peer_done || !self.net_readable || self.net_in.is_none() {
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
        let Some(fd) = self.net_in.as_ref() else {
            return Ok(false);
        };
        loop {
            match nix::unistd::read(fd, &mut self.net_buf.buf) {
                Ok(0) => {
                    self.peer_eof = true;
                    self.on_peer_eof()?;
                    return Ok(true);
                }
                Ok(n) => {
                    self.net_buf.start = 0;
                    self.net_buf.end = n;
                    self.last_activity = Instant::now();
                    if n < self.net_buf.buf.len() {
                        self.net_readable = false;
                    }
                    return Ok(true);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    self.net_readable = false;
                    return Ok(false);
                }
                Err(e) => {
                    self.send_alerts();
                    return Err(Fatal::sys("read from network", e));
                }
            }
        }
    }

    /// Hands the bytes we hold to rustls and processes them.
    fn feed_rustls(&mut self) -> Result<(), Fatal> {
        let mut pending = self.net_buf.pending();
        let before = pending.len();
        let taken = match self.conn.read_tls(&mut pending) {
            Ok(n) => n,
            Err(e) => return Err(self.tls_failure(&e.to_string())),
        };
        debug_assert!(taken <= before);
        self.net_buf.start += taken;
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
            let fatal = self.tls_failure(&e.to_string());
            if !self.handshake_done {
                return Err(fatal);
            }
            // The records before the bad one were authentic, and rustls
            // may have decrypted several at once: deliver their plaintext
            // first (see failure_due), and read nothing more.
            self.failed = Some(fatal);
            self.net_buf.start = self.net_buf.end;
            self.stop_reading_network();
        }
        Ok(())
    }

    /// Best-effort: push out the alert rustls queued, then describe the failure.
    fn tls_failure(&mut self, reason: &str) -> Fatal {
        self.send_alerts();
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
        self.failed.as_ref()?;
        if self.app_out.is_some() && self.plaintext_waiting() {
            return None;
        }
        self.failed.take()
    }

    fn plaintext_waiting(&mut self) -> bool {
        matches!(self.conn.reader().fill_buf(), Ok(c) if !c.is_empty())
    }

    fn send_alerts(&mut self) {
        if let Some(fd) = self.net_out.as_ref() {
            let _ = self.conn.write_tls(&mut FdWriter(fd.as_fd()));
        }
    }

    fn on_peer_eof(&mut self) -> Result<(), Fatal> {
        // Let rustls see the EOF so it can tell close_notify from truncation.
        let _ = self.conn.read_tls(&mut io::empty());
        self.net_readable = false;
        if !self.handshake_done {
            return Err(Fatal::tls(
                "TLS handshake failed: peer closed the connection",
            ));
        }
        self.process()?;
        self.peer_done = true;
        Ok(())
    }

    /// Writes decrypted data to the application.
    fn deliver(&mut self) -> Result<Delivery, Fatal> {
        let Some(fd) = self.app_out.as_ref() else {
            // Nobody to deliver to (only reachable during the handshake,
            // when there is no application data yet).
            return Ok(Delivery::Empty);
        };
        let mut reader = self.conn.reader();
        let chunk = match reader.fill_buf() {
            Ok([]) => {
                // close_notify received: everything before it is delivered.
                self.peer_done = true;
                self.app_out = None;
                return Ok(Delivery::Blocked);
            }
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.peer_done && self.handshake_done && self.failed.is_none() {
                    // EOF without close_notify, all delivered.
                    return self.unclean_eof();
                }
                return Ok(Delivery::Empty);
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return self.unclean_eof(),
            Err(e) => return Err(Fatal::tls(format!("TLS error: {e}"))),
        };
        if !self.app_writable {
            return Ok(Delivery::Blocked);
        }
        match nix::unistd::write(fd, chunk) {
            Ok(n) => {
                reader.consume(n);
                Ok(Delivery::Some)
            }
            // Interrupted: nothing written, try again at once.
            Err(Errno::EINTR) => Ok(Delivery::Some),
            Err(Errno::EAGAIN) => {
                self.app_writable = false;
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
        if self.opts.enforce_close_notify {
            return Err(Fatal::tls(
                "remote closed connection without a close_notify",
            ));
        }
        self.peer_done = true;
        self.app_out = None;
        Ok(Delivery::Blocked)
    }

    /// The application closed its reading end: nothing we receive can be
    /// delivered any more, so stop receiving — once the handshake is done,
    /// since the handshake itself needs the network, and the application
    /// may still be writing (its data goes out after the handshake).
    fn app_stopped_reading(&mut self) {
        self.log.debug("application stopped reading");
        self.app_out = None;
        if self.handshake_done {
            self.stop_reading_network();
        }
    }

    /// Stops reading the network: the peer's data stays in the socket,
    /// and flow control soon stops the peer. The descriptor stays open
    /// until the exit (see [`Tunnel::linger`]).
    ///
    /// No `shutdown(SHUT_RD)`: it sends nothing, but on Linux a socket
    /// shut down for reading whose FIN has been sent answers any further
    /// data from the peer with an immediate reset, which destroys what
    /// the peer has not acknowledged yet — the application's last bytes,
    /// which must be delivered.
    fn stop_reading_network(&mut self) {
        if let Some(fd) = self.net_in.take() {
            self.parked_in = Some(fd);
        }
    }

    /// The application closed its writing end before the handshake. If it
    /// wrote nothing, that is its EOF; otherwise its data goes out after
    /// the handshake and the EOF is read then. Either way poll would keep
    /// reporting the hang-up, so it is not watched again.
    fn app_hung_up_early(&mut self) {
        self.app_in_hung_up = true;
        if let Some(fd) = &self.app_in {
            if queued_input(fd.as_fd()) == Some(0) {
                self.app_eof = true;
                self.app_in = None;
            }
        }
    }

    /// Application to network: read cleartext while rustls's backlog is small.
    fn app_to_net(&mut self) -> Result<bool, Fatal> {
        if !self.handshake_done
            || self.app_eof
            || !self.app_readable
            || self.net_out.is_none()
            || self.failed.is_some()
        {
            return Ok(false);
        }
        // Only read more once everything encrypted so far is on the wire:
        // the backlog never exceeds one read.
        if self.conn.wants_write() {
            return Ok(false);
        }
        let Some(fd) = self.app_in.as_ref() else {
            return Ok(false);
        };
        match nix::unistd::read(fd, &mut self.app_buf) {
            Ok(0) => {
                self.app_eof = true;
                self.app_in = None;
                Ok(true)
            }
            Ok(n) => {
                if n < self.app_buf.len() {
                    self.app_readable = false;
                }
                self.last_activity = Instant::now();
                self.conn
                    .writer()
                    .write_all(&self.app_buf[..n])
                    .map_err(|e| Fatal::tls(format!("TLS error: {e}")))?;
                Ok(true)
            }
            Err(Errno::EINTR) => Ok(true),
            Err(Errno::EAGAIN) => {
                self.app_readable = false;
                Ok(false)
            }
            Err(e) => Err(Fatal::sys("read from application", e)),
        }
    }

    /// Sends what rustls has encrypted.
    fn flush_net(&mut self) -> Result<bool, Fatal> {
        let mut progress = false;
        while self.net_writable && self.conn.wants_write() {
            let Some(fd) = self.net_out.as_ref() else {
                return Ok(progress);
            };
            match self.conn.write_tls(&mut FdWriter(fd.as_fd())) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.net_writable = false,
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

    /// After the application's EOF and a full flush: half-close or
    /// close_notify, per -s/-S.
    fn close_transitions(&mut self) -> Result<bool, Fatal> {
        if !self.app_eof || !self.handshake_done || self.net_out.is_none() || self.failed.is_some()
        {
            return Ok(false);
        }
        if !self.closing_queued {
            if self.conn.wants_write() {
                return Ok(false);
            }
            self.closing_queued = true;
            if self.opts.close_notify {
                self.conn.send_close_notify();
            }
            return Ok(true);
        }
        if self.conn.wants_write() {
            return Ok(false);
        }
        let fd = self.net_out.take().expect("checked above");
        if shutdown(fd.as_raw_fd(), Shutdown::Write).is_ok() {
            self.parked_out = Some(fd);
        } else {
            // Not a socket: closing our end is the only EOF we can give.
            drop(fd);
        }
        if self.opts.close_notify
            && self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2)
        {
            // TLS 1.2 has no half-close: the connection ends here.
            self.app_out = None;
            if let Some(fd) = self.net_in.take() {
                self.parked_in = Some(fd);
            }
        }
        Ok(true)
    }

    fn on_handshake(&mut self) {
        self.handshake_done = true;
        self.app_readable = true;
        if self.app_out.is_none() {
            // The application stopped reading during the handshake.
            self.stop_reading_network();
        }
        let Some(peer) = self.peer.take() else {
            return;
        };
        let entries = (peer.entries)(&self.conn);
        if self.log.verbosity >= 2 {
            let value = |i: usize| entries[i].1.as_deref().unwrap_or("-").to_owned();
            self.log.info(&format!(
                "handshake done in {} ms: protocol={} cipher={} sni={} {}={}",
                self.started.elapsed().as_millis(),
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
        let plaintext_waiting = self.plaintext_waiting();
        let want_net_read = (self.app_out.is_some() || !self.handshake_done)
            && !self.peer_done
            && !self.net_readable
            && self.net_buf.pending().is_empty()
            && !plaintext_waiting;
        let want_net_write = self.conn.wants_write() && !self.net_writable;
        let want_app_read = self.handshake_done
            && !self.app_eof
            && !self.app_readable
            && !self.conn.wants_write()
            && self.failed.is_none();
        let want_app_write = plaintext_waiting && !self.app_writable;

        // The application's reading end is always watched, even with
        // nothing to write, so that its closing is noticed (POLLERR).
        let app_flags = if want_app_write {
            PollFlags::POLLOUT
        } else {
            PollFlags::empty()
        };
        // Before the handshake the application is not read, but its
        // hanging up is watched for, as above.
        let watch_app_hangup = !self.handshake_done && !self.app_in_hung_up;
        let app_in_flags = if want_app_read {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let candidates = [
            (watch(&self.net_in, want_net_read), PollFlags::POLLIN),
            (watch(&self.net_out, want_net_write), PollFlags::POLLOUT),
            (
                watch(&self.app_in, want_app_read || watch_app_hangup),
                app_in_flags,
            ),
            (watch(&self.app_out, true), app_flags),
        ];
        let mut slots = [None; 4];
        let mut fds = Vec::with_capacity(4);
        for (slot, (fd, flags)) in candidates.into_iter().enumerate() {
            if let Some(fd) = fd {
                slots[slot] = Some(fds.len());
                fds.push(PollFd::new(fd, flags));
            }
        }

        let timeout = self.poll_timeout()?;
        let n = loop {
            match poll(&mut fds, timeout) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Fatal::sys("poll", e)),
            }
        };
        if n == 0 {
            return self.check_deadlines();
        }
        let ready = |slot: usize| -> PollFlags {
            slots[slot]
                .and_then(|i| fds[i].revents())
                .unwrap_or(PollFlags::empty())
        };
        let any = PollFlags::all();
        let (net_r, net_w, app_r, app_w) = (ready(0), ready(1), ready(2), ready(3));
        drop(fds);
        if net_r.intersects(any) {
            self.net_readable = true;
        }
        if net_w.intersects(any) {
            self.net_writable = true;
        }
        if self.handshake_done && app_r.intersects(any) {
            self.app_readable = true;
        } else if app_r.contains(PollFlags::POLLHUP) {
            self.app_hung_up_early();
        }
        if app_w.contains(PollFlags::POLLOUT) {
            self.app_writable = true;
        } else if app_w.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
            self.app_stopped_reading();
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Result<PollTimeout, Fatal> {
        let mut deadline: Option<Instant> = None;
        let mut consider = |d: Instant| deadline = Some(deadline.map_or(d, |old| old.min(d)));
        if self.opts.kimeout_ms > 0 {
            consider(self.last_activity + Duration::from_millis(self.opts.kimeout_ms.into()));
        }
        if !self.handshake_done && self.opts.handshake_timeout_ms > 0 {
            consider(self.started + Duration::from_millis(self.opts.handshake_timeout_ms.into()));
        }
        let Some(deadline) = deadline else {
            return Ok(PollTimeout::NONE);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.check_deadlines()?;
        }
        // Round up so we never wake a hair before the deadline and spin.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        Ok(PollTimeout::try_from(ms.max(1)).unwrap_or(PollTimeout::MAX))
    }

    fn check_deadlines(&self) -> Result<(), Fatal> {
        if let Some(fatal) = &self.failed {
            // Out of time to deliver what came before the error: the
            // error is the story.
            return Err(fatal.clone());
        }
        let now = Instant::now();
        let stage = if self.handshake_done {
            "after"
        } else {
            "during"
        };
        if self.opts.kimeout_ms > 0
            && now >= self.last_activity + Duration::from_millis(self.opts.kimeout_ms.into())
        {
            return Err(Fatal::tls(format!(
                "timed out: no data for {} ms {stage} the handshake",
                self.opts.kimeout_ms
            )));
        }
        if !self.handshake_done
            && self.opts.handshake_timeout_ms > 0
            && now >= self.started + Duration::from_millis(self.opts.handshake_timeout_ms.into())
        {
            return Err(Fatal::tls(format!(
                "timed out: handshake not complete after {} ms",
                self.opts.handshake_timeout_ms
            )));
        }
        Ok(())
    }
}

/// Bytes received on a socket or pipe and not read yet (FIONREAD); `None` if the
/// descriptor cannot tell.
fn queued_input(fd: BorrowedFd<'_>) -> Option<usize> {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
    (rc == 0).then(|| usize::try_from(n).unwrap_or(0))
}

/// Bytes sent on a TCP socket and not acknowledged by the peer yet
/// (SIOCOUTQ, which also counts our FIN); `None` if not a TCP socket.
fn unacked_output(fd: BorrowedFd<'_>) -> Option<usize> {
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

fn watch(fd: &Option<OwnedFd>, wanted: bool) -> Option<BorrowedFd<'_>> {
    fd.as_ref().filter(|_| wanted).map(|f| f.as_fd())
}

enum Delivery {
    /// Some bytes went to the application.
    Some,
    /// Nothing decrypted is waiting.
    Empty,
    /// The application cannot take more now (or is gone).
    Blocked,
}

/// Writes a short message to a descriptor that may be non-blocking.
fn write_all_blocking(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut pfd = [PollFd::new(fd, PollFlags::POLLOUT)];
                poll(&mut pfd, PollTimeout::NONE)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
