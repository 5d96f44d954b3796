//! The state of the tunnel, one part per concern: the network connection,
//! and each direction as the close rules of doc/s6-tlsd-io.md ("Closing")
//! describe it. A direction's state owns the application descriptor it
//! uses, so a direction that has ended has nothing left to misuse.

use crate::cli::error::Fatal;
use std::os::fd::OwnedFd;

/// The network connection. Both descriptors stay open until the exit,
/// even once a direction no longer uses them: see the linger.
pub(super) struct Network {
    pub input: OwnedFd,
    /// `None` once closed to give the peer an EOF, on a descriptor that
    /// is not a socket and cannot be shut down for writing.
    pub output: Option<OwnedFd>,
    /// Readiness learnt from poll, until a read would block.
    pub readable: bool,
    /// Assumed until a write would block, then learnt from poll.
    pub writable: bool,
    /// The peer's EOF has been read: it can send nothing more.
    pub eof: bool,
    /// The peer's close_notify has been received.
    pub close_notify: bool,
}

/// The application's reading end: where decrypted data goes.
pub(super) struct AppOut {
    pub fd: OwnedFd,
    /// Assumed until a write would block, then learnt from poll.
    pub writable: bool,
}

/// Network to application: records from the peer, their plaintext to
/// the application. During the handshake the network is read whatever
/// this state (the handshake needs it); afterwards only while `Open`.
pub(super) enum Down {
    /// The peer is read and its plaintext delivered.
    Open(AppOut),
    /// The peer's EOF was read: what rustls holds decrypted is delivered,
    /// then the EOF itself (without close_notify) ends the direction, or
    /// the tunnel with `-J`.
    Draining(AppOut),
    /// A record failed after the handshake: nothing more is read, the
    /// plaintext decrypted before it is delivered while the application
    /// reads (`out`), then the error ends the tunnel.
    Failed { out: Option<AppOut>, error: Fatal },
    /// The application's reading end is closed: the peer's close_notify
    /// or EOF has been delivered, or the application stopped reading.
    Closed,
}

impl Down {
    pub fn out(&mut self) -> Option<&mut AppOut> {
        match self {
            Down::Open(out) | Down::Draining(out) => Some(out),
            Down::Failed { out, .. } => out.as_mut(),
            Down::Closed => None,
        }
    }

    /// Nothing more goes to the application: its reading end is closed
    /// (a failure stays pending).
    pub fn stop_delivering(&mut self) {
        match self {
            Down::Failed { out, .. } => *out = None,
            other => *other = Down::Closed,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Down::Open(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, Down::Closed)
    }

    pub fn failed(&self) -> bool {
        matches!(self, Down::Failed { .. })
    }
}

/// Application to network: cleartext from the application, records to
/// the peer. Nothing is read from the application once a record failed.
pub(super) enum Up {
    /// Before the handshake: the application is not read (what it writes
    /// waits in the pipe, and goes out once the handshake is done); its
    /// hanging up is watched, until `hung_up` says it was seen with data
    /// left in the pipe.
    Waiting { fdr: OwnedFd, hung_up: bool },
    /// The application is read and its cleartext encrypted and sent.
    Open { fdr: OwnedFd, readable: bool },
    /// The application's EOF was read: what rustls holds is sent, then the
    /// close_notify with `-S` (`close_notify_queued`), then the half-close.
    Ending { close_notify_queued: bool },
    /// The network is shut down for writing: nothing more is sent.
    Closed,
}

impl Up {
    pub fn is_closed(&self) -> bool {
        matches!(self, Up::Closed)
    }
}
