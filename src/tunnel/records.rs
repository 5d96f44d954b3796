//! rustls's unbuffered API, for either role: the [`Connection`], and
//! what the tunnel does in each state rustls reaches when it looks at the
//! records we hold. rustls keeps no records of its own: it decrypts in
//! place in our network buffer, and encodes and encrypts into our
//! outgoing buffer. It still copies out each record's plaintext (rustls
//! 0.23 does, into a `Vec` of its own) and each record it encrypts (from
//! one of its own into ours): the plaintext goes from there straight to
//! the application, or, if the application cannot take it now, stays in
//! rustls, or is held when rustls must get past it.

use super::buffers::{Held, OutBuffer, ReadBuffer};
use super::state::AppOut;
use crate::cli::error::Fatal;
use nix::errno::Errno;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::CommonState;
use std::ops::Deref;

/// The connection of either role. rustls defines `process_tls_records`
/// for each role's data apart; everything else is the same, and the
/// information entries read the [`CommonState`] it derefs to.
pub enum Connection {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

impl From<UnbufferedServerConnection> for Connection {
    fn from(conn: UnbufferedServerConnection) -> Self {
        Connection::Server(conn)
    }
}

impl From<UnbufferedClientConnection> for Connection {
    fn from(conn: UnbufferedClientConnection) -> Self {
        Connection::Client(conn)
    }
}

impl Deref for Connection {
    type Target = CommonState;

    fn deref(&self) -> &CommonState {
        match self {
            Connection::Server(conn) => conn,
            Connection::Client(conn) => conn,
        }
    }
}

impl Connection {
    /// Lets rustls look at `incoming` until it reaches a state, and acts
    /// on that state: the count of bytes of `incoming` it is done with,
    /// and what came of it.
    pub(super) fn step(
        &mut self,
        incoming: &mut [u8],
        io: &mut Io<'_>,
    ) -> (usize, Result<Outcome, Fatal>) {
        match self {
            Connection::Server(conn) => io.act(conn.process_tls_records(incoming)),
            Connection::Client(conn) => io.act(conn.process_tls_records(incoming)),
        }
    }
}

/// Where the plaintext of a record goes.
pub(super) struct Sink<'a> {
    pub app: &'a mut AppOut,
    pub held: &'a mut Held,
}

/// What one step may use: the tunnel's side of the state.
pub(super) struct Io<'a> {
    pub out: &'a mut OutBuffer,
    /// Cleartext to encrypt as soon as rustls allows it.
    pub plain: Option<&'a mut ReadBuffer>,
    /// A close_notify to queue as soon as rustls allows it; cleared then.
    pub close_notify: &'a mut bool,
    /// `None`: nobody reads the plaintext any more, it is dropped.
    pub sink: Option<Sink<'a>>,
    /// The plaintext must wait in rustls: the end of the handshake is to
    /// be announced before anything is delivered.
    pub hold_back: bool,
    /// rustls must get past the plaintext it holds even if the
    /// application cannot take it now (then it is held), so that what is
    /// to be sent can be: rustls reaches the states that send only once
    /// the plaintext is taken.
    pub must_pass: bool,
}

/// What came of one step.
pub(super) enum Outcome {
    /// Something moved: rustls may have more to do.
    Progress,
    /// rustls needs more from the network (or has nothing to do).
    Idle,
    /// A record's plaintext waits in rustls: the application cannot take
    /// it now, or the handshake is to be announced first.
    Waiting,
    /// The peer's close_notify: its plaintext is all out of rustls.
    PeerClosed,
    /// The application closed its reading end.
    AppGone,
    /// rustls failed; the alert it queued comes out in the next steps.
    Failed(rustls::Error),
}

impl Io<'_> {
    fn act<Data>(
        &mut self,
        status: UnbufferedStatus<'_, '_, Data>,
    ) -> (usize, Result<Outcome, Fatal>) {
        let UnbufferedStatus { mut discard, state } = status;
        let outcome = match state {
            Err(e) => Ok(Outcome::Failed(e)),
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let blocked = match &self.sink {
                    Some(sink) => !sink.held.is_empty() || !sink.app.writable,
                    None => false,
                };
                if self.hold_back || (blocked && !self.must_pass) {
                    Ok(Outcome::Waiting)
                } else {
                    match traffic.next_record() {
                        Some(Ok(record)) => {
                            discard += record.discard;
                            self.deliver(record.payload)
                        }
                        Some(Err(e)) => Ok(Outcome::Failed(e)),
                        None => Ok(Outcome::Progress),
                    }
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => loop {
                match data.encode(self.out.room()) {
                    Ok(n) => {
                        self.out.wrote(n);
                        break Ok(Outcome::Progress);
                    }
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        self.out.reserve(required_size);
                    }
                    Err(EncodeError::AlreadyEncoded) => break Ok(Outcome::Progress),
                }
            },
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // The records are ours now, in the outgoing buffer, which
                // the tunnel writes out as the network takes them.
                transmit.done();
                Ok(Outcome::Progress)
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                if let Some(plain) = self.plain.as_mut().filter(|p| !p.is_empty()) {
                    let out = &mut *self.out;
                    let result = encrypt_into(out, |room| traffic.encrypt(plain.pending(), room));
                    plain.clear();
                    result.map(|()| Outcome::Progress)
                } else if *self.close_notify {
                    *self.close_notify = false;
                    let out = &mut *self.out;
                    encrypt_into(out, |room| traffic.queue_close_notify(room))
                        .map(|()| Outcome::Progress)
                } else {
                    Ok(Outcome::Idle)
                }
            }
            Ok(ConnectionState::PeerClosed) => Ok(Outcome::PeerClosed),
            // Early data is never accepted (rustls's default), so only
            // BlockedHandshake and Closed remain: nothing to do until the
            // peer sends more.
            Ok(_) => Ok(Outcome::Idle),
        };
        (discard, outcome)
    }

    /// One record's plaintext to the application, what it does not take
    /// now held.
    fn deliver(&mut self, mut plaintext: &[u8]) -> Result<Outcome, Fatal> {
        let Some(sink) = &mut self.sink else {
            return Ok(Outcome::Progress);
        };
        if sink.held.is_empty() && sink.app.writable {
            loop {
                match nix::unistd::write(&sink.app.fd, plaintext) {
                    Ok(n) => plaintext = &plaintext[n..],
                    Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => sink.app.writable = false,
                    Err(Errno::EPIPE) => return Ok(Outcome::AppGone),
                    Err(e) => return Err(Fatal::sys("write to application", e)),
                }
                break;
            }
        }
        sink.held.push(plaintext);
        Ok(Outcome::Progress)
    }
}

/// Encrypts into the outgoing buffer, grown to what rustls says it needs.
fn encrypt_into(
    out: &mut OutBuffer,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), Fatal> {
    loop {
        match encrypt(out.room()) {
            Ok(n) => {
                out.wrote(n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                out.reserve(required_size);
            }
            Err(e) => return Err(Fatal::tls(format!("TLS error: {e}"))),
        }
    }
}
