//! The application side of UCSPI-TLS, for programs run under
//! s6-ucspitlsd that want STARTTLS without a TLS stack of their own.
//!
//! ```no_run
//! use std::io::{BufRead, BufReader, Write};
//! use s6_tls::ucspi::Ucspi;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Cleartext phase on fds 0/1; then, when the client asks for TLS:
//! let ucspi = Ucspi::from_env()?;
//! let mut tls = ucspi.start_tls_with_info()?;
//! eprintln!("protocol: {:?}", tls.get("SSL_PROTOCOL"));
//! writeln!(tls.writer, "hello over TLS")?;
//! let mut line = String::new();
//! BufReader::new(&mut tls.reader).read_line(&mut line)?;
//! # Ok(())
//! # }
//! ```
//!
//! A client under s6-ucspitlsc makes the same calls: it talks cleartext
//! on fds 6/7 (where the UCSPI client left the connection) until the
//! server agrees to start TLS, stops using them, and then calls
//! [`Ucspi::start_tls_with_info`], whose entries describe the server's
//! verified certificate. `src/bin/ucspitls-demo-client.rs` is a complete
//! example.

use crate::info::{self, Entry};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
    // SAFETY: F_GETFD only inspects the descriptor table entry.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
        return Err(invalid());
    }
    Ok(fd)
}

impl Ucspi {
    /// Takes the descriptors named by `SSLCTLFD`, `SSLREADFD` and
    /// `SSLWRITEFD`. Call it once.
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
        // SAFETY: the three descriptors are open and distinct, and the
        // protocol hands them to this program alone: each gets exactly one
        // owner here (hence "call it once").
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
