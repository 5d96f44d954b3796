//! The application side of UCSPI-TLS: for a program run as `prog` under
//! s6-ucspitlsd (a server) or s6-ucspitlsc (a client) that wants
//! STARTTLS without a TLS stack of its own.
//!
//! # The protocol, from the application's side
//!
//! The program starts in cleartext on the connection: fds 0 (read) and 1
//! (write) under s6-ucspitlsd, fds 6 (read) and 7 (write) under
//! s6-ucspitlsc. Three environment variables name three more
//! descriptors: `SSLCTLFD` (a control socket), `SSLREADFD` and
//! `SSLWRITEFD` (the cleartext ends of the tunnel, used once TLS is up).
//! [`Ucspi::from_env`] takes them, once. When the peer asks for TLS (SMTP's
//! `STARTTLS`), the program answers it in cleartext, then calls
//! [`Ucspi::start_tls`] (command `y`) or [`Ucspi::start_tls_with_info`]
//! (command `Y`); a helper process does the handshake on the connection
//! and from then on encrypts what the program writes to
//! [`Tls::writer`] and decrypts what it reads from [`Tls::reader`].
//! A program that never asks simply exits or closes `SSLCTLFD`: the
//! helper goes away quietly.
//!
//! # Rules a correct application follows
//!
//! - **Discard cleartext received before TLS.** Anything the peer sent
//!   after its STARTTLS command and that the program has already read or
//!   buffered arrived in cleartext, before the handshake: an attacker on
//!   the path can have injected it (the STARTTLS command injection
//!   attack, CVE-2011-0411). Throw the buffer away unread; never take it
//!   as commands of the encrypted session. Reading the cleartext phase
//!   through a `BufReader` is fine as long as the reader is dropped, with
//!   its buffer, when TLS starts.
//! - **Stop using the cleartext descriptors once TLS is up** (fds 0/1,
//!   or 6/7 for a client): the helper reads and writes the connection
//!   from then on. Reading them would steal TLS records, writing them
//!   would corrupt the stream. Close them: while the program holds them,
//!   the connection stays open after the helper has ended its session,
//!   and a peer waiting for the connection to close waits until the
//!   program exits. (A program that needs something on those numbers can
//!   open `/dev/null` there.)
//! - **Write the STARTTLS answer before starting TLS** and nothing in
//!   cleartext after it. What the program writes to [`Tls::writer`]
//!   before the handshake has completed is sent, encrypted, once it has.
//! - **A failed handshake** shows as [`Error::HandshakeFailed`] from
//!   `start_tls_with_info`, or as EOF on [`Tls::reader`] after
//!   `start_tls`; the helper has already closed the connection and said
//!   why on stderr. The program just ends the session.
//! - **Ending the session**: drop [`Tls::writer`] (the helper then ends
//!   its side of the connection, with or without close_notify as `-S`/`-s`
//!   say) and read [`Tls::reader`] to EOF if the peer may still send.
//!
//! # What `Y` gives
//!
//! [`Ucspi::start_tls_with_info`] waits for the handshake and returns
//! the connection information, read with [`Tls::get`]:
//!
//! | name | value |
//! |---|---|
//! | `SSL_PROTOCOL` | `TLSv1.3` or `TLSv1.2` |
//! | `SSL_CIPHER` | OpenSSL's name of the cipher suite, e.g. `TLS_AES_256_GCM_SHA384` |
//! | `SSL_TLS_SNI_SERVERNAME` | the server name the client sent (SNI); unset if none |
//! | `SSL_PEER_CERT_HASH` | `SHA256:` and the hex SHA-256 of the peer's certificate; unset if none was verified |
//! | `SSL_PEER_CERT_SUBJECT` | the subject of that certificate, `C=.., O=.., CN=..` |
//!
//! On the server side the peer certificate is the client's, present only
//! when s6-ucspitlsd was given `-Y` or `-y`; on the client side it is the
//! server's, present whenever the server's certificate was verified.
//! doc/s6-tlsd-io.md ("The connection information") gives the exact
//! format; [`Ucspi::start_tls`] returns an empty information set.
//!
//! # Example
//!
//! A line-based server: cleartext until `STARTTLS`, then one echo over TLS.
//!
//! ```no_run
//! use s6_tls::ucspi::Ucspi;
//! use std::fs::File;
//! use std::io::{BufRead, BufReader, Write};
//! use std::os::fd::{FromRawFd, OwnedFd};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // SAFETY: fds 0 and 1 are the connection the super-server gave
//!     // this program, and nothing else in it uses them.
//!     let (input, mut output) = unsafe {
//!         (File::from(OwnedFd::from_raw_fd(0)), File::from(OwnedFd::from_raw_fd(1)))
//!     };
//!     let mut input = BufReader::new(input);
//!     output.write_all(b"220 ready\r\n")?;
//!     let mut line = String::new();
//!     loop {
//!         line.clear();
//!         if input.read_line(&mut line)? == 0 {
//!             return Ok(());
//!         }
//!         if line.trim_end().eq_ignore_ascii_case("STARTTLS") {
//!             break;
//!         }
//!         output.write_all(b"500 only STARTTLS here\r\n")?;
//!     }
//!     let ucspi = match Ucspi::from_env() {
//!         Ok(ucspi) => ucspi,
//!         Err(e) => {
//!             eprintln!("example: warning: {e}");
//!             output.write_all(b"454 TLS not available\r\n")?;
//!             return Ok(());
//!         }
//!     };
//!     output.write_all(b"220 go ahead\r\n")?;
//!     // Whatever followed STARTTLS in `input`'s buffer came in cleartext:
//!     // dropped unread, and fds 0/1 closed, before TLS starts.
//!     drop(input);
//!     drop(output);
//!     let mut tls = ucspi.start_tls_with_info()?;
//!     let sni = tls.get("SSL_TLS_SNI_SERVERNAME").unwrap_or("(none)").to_owned();
//!     writeln!(tls.writer, "250 TLS is up, you asked for {sni}\r")?;
//!     let mut reader = BufReader::new(&tls.reader);
//!     line.clear();
//!     reader.read_line(&mut line)?;
//!     write!(tls.writer, "250 {line}")?;
//!     Ok(())
//! }
//! ```
//!
//! A client under s6-ucspitlsc makes the same calls: it talks cleartext
//! on fds 6/7 (where the UCSPI client left the connection) until the
//! server agrees to start TLS, stops using them, and then calls
//! [`Ucspi::start_tls_with_info`], whose entries describe the server's
//! verified certificate. `examples/ucspitls-demo-client.rs` is a complete
//! example.

use crate::info::{self, Entry};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// What can go wrong on the application side.
#[derive(Debug)]
pub enum Error {
    /// An environment variable of the protocol is not set.
    Missing(&'static str),
    /// It is set, but not to an open descriptor number.
    Invalid { var: &'static str, value: String },
    /// Two of the variables name the same descriptor.
    Shared {
        first: &'static str,
        second: &'static str,
        fd: RawFd,
    },
    /// Reading or writing the control socket failed.
    Io(io::Error),
    /// The control socket closed without information: TLS did not come up.
    HandshakeFailed,
    /// The information string could not be decoded.
    BadInformation(&'static str),
    /// [`Ucspi::from_env`] already took the descriptors in this process.
    AlreadyTaken,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(var) => {
                write!(f, "{var} is not set: not running under a UCSPI-TLS server")
            }
            Error::Invalid { var, value } => write!(f, "{var}={value:?} is not an open descriptor"),
            Error::Shared { first, second, fd } => {
                write!(f, "{first} and {second} both name descriptor {fd}")
            }
            Error::Io(e) => write!(f, "control socket: {e}"),
            Error::HandshakeFailed => f.write_str("the TLS handshake failed"),
            Error::BadInformation(why) => write!(f, "bad connection information: {why}"),
            Error::AlreadyTaken => f.write_str(
                "the UCSPI-TLS descriptors were already taken: Ucspi::from_env succeeds once per process",
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The three descriptors of the protocol, before TLS is started.
#[derive(Debug)]
pub struct Ucspi {
    control: File,
    reader: File,
    writer: File,
}

/// The cleartext side of an active TLS tunnel.
#[derive(Debug)]
pub struct Tls {
    /// Reads what the peer sent, decrypted.
    pub reader: File,
    /// Writes what the peer will receive, encrypted.
    pub writer: File,
    /// The connection information (empty after a plain `y`).
    pub info: Vec<Entry>,
}

impl Tls {
    /// The value of one information entry, if present and set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Set by the one [`Ucspi::from_env`] that took the descriptors. The
/// environment variables stay set: unsetting them would race with any
/// other thread reading the environment.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The open descriptor named by `var` (not taken yet).
fn fd_from_env(var: &'static str) -> Result<RawFd, Error> {
    let value = std::env::var(var).map_err(|_| Error::Missing(var))?;
    let invalid = || Error::Invalid {
        var,
        value: value.clone(),
    };
    let fd: RawFd = crate::cli::opts::parse_decimal(&value)
        .and_then(|n| RawFd::try_from(n).ok())
        .ok_or_else(invalid)?;
    crate::plumbing::fds::check_open(fd).map_err(|_| invalid())?;
    Ok(fd)
}

impl Ucspi {
    /// Takes the descriptors named by `SSLCTLFD`, `SSLREADFD` and
    /// `SSLWRITEFD`; it succeeds once per process, later calls return
    /// [`Error::AlreadyTaken`].
    pub fn from_env() -> Result<Ucspi, Error> {
        // Check all three before taking any: on an error, no descriptor
        // of the program's (its stderr, say) is closed behind its back.
        let names = ["SSLCTLFD", "SSLREADFD", "SSLWRITEFD"];
        let mut fds = [0; 3];
        for (i, name) in names.into_iter().enumerate() {
            fds[i] = fd_from_env(name)?;
            if let Some(j) = fds[..i].iter().position(|&fd| fd == fds[i]) {
                return Err(Error::Shared {
                    first: names[j],
                    second: name,
                    fd: fds[i],
                });
            }
        }
        // Once per process, so that no call can make a second owner of a
        // descriptor the first one owns (or has closed, and the program
        // reused). A failed check above takes nothing.
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyTaken);
        }
        // SAFETY: the three descriptors are open and distinct, the protocol
        // hands them to this program alone, and the flag above lets this
        // line run once per process: each gets exactly one owner here.
        let [control, reader, writer] =
            fds.map(|fd| File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        Ok(Ucspi {
            control,
            reader,
            writer,
        })
    }

    /// Sends `y`: TLS starts, no information comes back. If the handshake
    /// fails, reads from the tunnel see EOF.
    pub fn start_tls(mut self) -> Result<Tls, Error> {
        self.control.write_all(b"y")?;
        Ok(Tls {
            reader: self.reader,
            writer: self.writer,
            info: Vec::new(),
        })
    }

    /// Sends `Y` and waits for the handshake: returns the information, or
    /// [`Error::HandshakeFailed`] if the helper closed the socket first.
    pub fn start_tls_with_info(mut self) -> Result<Tls, Error> {
        self.control.write_all(b"Y")?;
        let mut data = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        let len = loop {
            if let Some(len) = info::complete_len(&data) {
                break len;
            }
            match self.control.read(&mut chunk) {
                Ok(0) => return Err(Error::HandshakeFailed),
                Ok(n) => data.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        };
        let info = info::decode(&data[..len]).map_err(Error::BadInformation)?;
        Ok(Tls {
            reader: self.reader,
            writer: self.writer,
            info,
        })
    }
}
