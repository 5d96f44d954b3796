//! The tunnel: one TLS connection, server or client, between the network
//! and the application (cleartext in, cleartext out), driven by a
//! single-threaded `poll` loop over at most four descriptors, with the
//! close rules of doc/s6-tlsd-io.md ("Closing").
//!
//! # What a role gives the tunnel
//!
//! The loop is the same for both roles; the caller hands it what differs:
//!
//! - the connection, as a [`Connection`] (`Connection::Server` or
//!   `Connection::Client`, over rustls's unbuffered connections), freshly
//!   made from the role's configuration;
//! - the four descriptors, already owned, in [`Fds`]: which numbers are
//!   the network and which the application is the caller's business
//!   (fds 0/1 and `fdr fdw` for s6-tlsd-io, the reverse for s6-tlsc-io),
//!   plus the optional notification descriptor;
//! - a [`Peer`]: what the information string says about the finished
//!   handshake (for the server, [`info::server_entries`] with the name the
//!   client sent, which the certificate selector saw; a client builds its
//!   entries with [`info::entries`] and the name it sent), and how the
//!   handshake summary at -v2 names the peer.
//!
//! ```no_run
//! # use s6_tls::{cli::{log::Log, opts::Options}, info, tunnel::{Fds, Peer, Tunnel}};
//! # fn f(config: std::sync::Arc<rustls::ServerConfig>, fds: Fds, opts: &Options, log: Log)
//! # -> Result<(), s6_tls::cli::error::Fatal> {
//! let conn = rustls::server::UnbufferedServerConnection::new(config).expect("a usable configuration");
//! let peer = Peer {
//!     called: "client",
//!     entries: Box::new(|conn: &rustls::CommonState| info::server_entries(conn, None)),
//! };
//! Tunnel::new(conn.into(), peer, opts, fds, log)?.run()
//! # }
//! ```
//!
//! # How it is built
//!
//! - `state.rs`: the network connection and the state of each direction
//!   (network to application: `Down`; application to network: `Up`), as
//!   the close rules name them.
//! - `records.rs`: rustls's unbuffered API for both roles, and what is
//!   done in each of its states: records decrypted in place in our network
//!   buffer, the plaintext rustls hands out written to the application,
//!   our records encoded and encrypted into our outgoing buffer.
//! - `down.rs` and `up.rs`: what moves each direction's bytes, and its
//!   transitions; this file: the loop that runs both and rustls, and the
//!   poll.
//! - `buffers.rs`: the buffers (rustls keeps none of its own), each
//!   bounded: the network is read only when rustls needs more and no
//!   plaintext waits; the application only when all we encrypted is
//!   sent.
//! - `clock.rs`: `-K` and `--handshake-timeout`.
//! - `linger.rs`: the end, whatever ended the tunnel (a normal end or an
//!   error): the queued alert encoded and written, the half-close, and
//!   the peer's input discarded until its EOF or until our last bytes are
//!   acknowledged, so that no TCP reset destroys them.
//! - `sys.rs`: non-blocking mode, kernel queue lengths.
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
mod down;
mod linger;
mod records;
mod state;
mod sys;
mod up;

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use buffers::Buffers;
use clock::Clock;
use linger::{Limit, Linger};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{setsockopt, sockopt};
use records::{Io, Outcome, Sink};
use state::{AppOut, Down, Network, Up};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;
use sys::{set_nonblocking, write_all_blocking};

pub use records::Connection;

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
pub type Describe = dyn FnOnce(&rustls::CommonState) -> Vec<info::Entry>;

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
    /// A record's plaintext waits in rustls (the application cannot take
    /// it now), as of the last look at the records.
    record_waiting: bool,
    /// A close_notify is to be queued at rustls's next chance.
    close_notify_wanted: bool,
}

impl Tunnel {
    pub fn new(
        conn: Connection,
        peer: Peer,
        opts: &Options,
        fds: Fds,
        log: Log,
    ) -> Result<Self, Fatal> {
        set_nonblocking(fds.net_in.as_fd(), "network input")?;
        set_nonblocking(fds.net_out.as_fd(), "network output")?;
        set_nonblocking(fds.app_in.as_fd(), "application input")?;
        set_nonblocking(fds.app_out.as_fd(), "application output")?;
        // Each flight goes out in one write; Nagle could only delay it.
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
            record_waiting: false,
            close_notify_wanted: false,
        })
    }

    /// Runs the connection to its end, then lingers (see `linger.rs`).
    pub fn run(mut self) -> Result<(), Fatal> {
        let end = self.carry();
        // The application learns of the end now, not after the linger,
        // which only concerns the network.
        self.down = Down::Closed;
        self.up = Up::Closed;
        self.notify = None;
        let limit = match end {
            Ok(()) => Limit::Progress {
                handshake_done: self.handshake_done,
            },
            Err(_) => Limit::Until(Instant::now() + self.clock.linger_after_failure()),
        };
        let lingered = Linger {
            conn: &mut self.conn,
            net: &self.net,
            incoming: &mut self.buffers.net,
            out: &mut self.buffers.out,
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
            let mut progress = self.drive()?;
            progress |= self.net_to_app()?;
            progress |= self.app_to_net()?;
            progress |= self.flush_net()?;
            progress |= self.close_transitions();
            if !progress {
                return Ok(());
            }
        }
    }

    /// Lets rustls work on what we hold until it needs the network or
    /// the application: the records read, their plaintext delivered, our
    /// records encoded and the application's cleartext encrypted.
    fn drive(&mut self) -> Result<bool, Fatal> {
        let mut progress = false;
        // The information string goes out before the first plaintext.
        let mut hold_back = !self.handshake_done;
        loop {
            let failed = self.down.failed();
            // After a failure rustls only hands out its alert: any record
            // it looked at could fail again, with a second alert.
            if failed && !self.conn.wants_write() {
                return Ok(progress);
            }
            let must_pass =
                !self.buffers.app.is_empty() || self.close_notify_wanted || self.conn.wants_write();
            let Tunnel {
                conn,
                buffers,
                down,
                close_notify_wanted,
                ..
            } = self;
            let Buffers {
                net,
                app,
                out,
                held,
            } = buffers;
            let mut io = Io {
                out,
                // Nothing more is encrypted once a record failed.
                plain: (!failed).then_some(app),
                close_notify: close_notify_wanted,
                sink: down.out().map(|app| Sink { app, held }),
                hold_back,
                must_pass,
            };
            let (done, outcome) = conn.step(net.pending(), &mut io);
            net.consume(done);
            // One step can finish the handshake and go on to application
            // data, or to a bad record: the handshake is done even then.
            let announced = !self.handshake_done && !self.conn.is_handshaking();
            if announced {
                self.on_handshake();
                hold_back = false;
                progress = true;
            }
            self.record_waiting = false;
            match outcome? {
                Outcome::Progress => progress = true,
                Outcome::Idle => return Ok(progress),
                // Announced now, or not to be: the plaintext can go.
                Outcome::Waiting if announced || hold_back => hold_back = false,
                Outcome::Waiting => {
                    self.record_waiting = true;
                    return Ok(progress);
                }
                Outcome::PeerClosed => {
                    self.net.close_notify = true;
                    progress = true;
                }
                Outcome::AppGone => {
                    self.app_stopped_reading();
                    progress = true;
                }
                Outcome::Failed(e) => {
                    self.fail(e)?;
                    progress = true;
                }
            }
        }
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
        let want_net_read = self.reads_network() && !self.net.readable && !plaintext_waiting;
        let want_net_write = !self.buffers.out.is_empty() && !self.net.writable;
        let want_app_read = matches!(
            self.up,
            Up::Open {
                readable: false,
                ..
            }
        ) && self.buffers.out.is_empty()
            && self.buffers.app.is_empty()
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
