//! The engine's buffers. rustls's unbuffered API keeps no data of its
//! own beyond the record it is working on: the bytes live here.
//!
//! - [`NetBuffer`]: ciphertext read from the network. rustls decrypts the
//!   records in place there; what it has not consumed (a partial record,
//!   a handshake message still being joined) stays for the next read.
//! - [`ReadBuffer`]: cleartext read from the application, until rustls
//!   encrypts it.
//! - [`OutBuffer`]: the records to send, written to the network from
//!   there; the application is read again only once it is empty.
//! - [`Held`]: plaintext decrypted while the application could not take
//!   it; the network is not read while it holds anything.
//!
//! The network and application buffers start at one page and grow to
//! their full size at the first read that fills them, and the other two
//! are empty until something goes into them and grow to what it needs:
//! an idle or interactive session (SMTP commands, IMAP) then never
//! touches, and so never dirties, the 32 KiB each way a bulk transfer
//! reads and the records encrypted from such a read (the
//! three-idle-sessions rows of bench/README.md).

use nix::errno::Errno;
use std::os::fd::BorrowedFd;

/// The largest TLS record on the wire: header, 16 KiB, and the most
/// overhead TLS 1.2 allows. A record must be whole in the network buffer
/// to be decrypted.
const MAX_RECORD: usize = 5 + 16384 + 2048;
/// Bytes read from the network in one call, once grown.
const NET_READ: usize = 32 * 1024;
/// The network buffer once grown: a read and room for a whole record
/// after it (see [`NetBuffer::fill_from`]).
const NET_SIZE: usize = NET_READ + MAX_RECORD;
/// Bytes read from the application in one call, once grown.
const APP_READ: usize = 32 * 1024;
/// What each read buffer holds until a read fills it.
const FIRST_READ: usize = 4 * 1024;
/// The most the network buffer ever holds: the largest handshake message
/// rustls takes (its header and 64 KiB) with the headers and overhead of
/// the records it came in, and what follows it of the next record. Only a
/// handshake message spans records.
const NET_MOST: usize = 4 + 0xffff + MAX_RECORD;

pub(super) struct Buffers {
    pub net: NetBuffer,
    pub app: ReadBuffer,
    pub out: OutBuffer,
    pub held: Held,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            net: NetBuffer {
                buf: vec![0; FIRST_READ],
                start: 0,
                end: 0,
                full_read: false,
            },
            app: ReadBuffer {
                buf: vec![0; FIRST_READ].into_boxed_slice(),
                len: 0,
                grow: false,
            },
            out: OutBuffer {
                buf: Vec::new(),
                sent: 0,
                end: 0,
            },
            held: Held {
                buf: Vec::new(),
                start: 0,
            },
        }
    }
}

/// Cleartext from the application: one read, until it is encrypted.
pub(super) struct ReadBuffer {
    buf: Box<[u8]>,
    len: usize,
    grow: bool,
}

impl ReadBuffer {
    /// One read from `fd` into the empty buffer: the count read, 0 at EOF.
    /// A full read says more may be waiting.
    pub fn read_from(&mut self, fd: BorrowedFd<'_>) -> Result<usize, Errno> {
        debug_assert!(self.is_empty());
        if self.grow {
            self.buf = vec![0; APP_READ].into_boxed_slice();
            self.grow = false;
        }
        let n = nix::unistd::read(fd, &mut self.buf)?;
        self.grow = n == self.buf.len() && n < APP_READ;
        self.len = n;
        Ok(n)
    }

    /// What the last read brought and is not encrypted yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// rustls took it all.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn is_full_read(&self, n: usize) -> bool {
        n == self.buf.len()
    }
}

/// Ciphertext from the network: `buf[start..end]` is what rustls has not
/// consumed yet.
pub(super) struct NetBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled all the room there was.
    full_read: bool,
}

impl NetBuffer {
    /// What rustls is to look at (again): it may decrypt and join there.
    pub fn pending(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// rustls is done with the first `n` bytes of [`NetBuffer::pending`].
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Holds as much as it ever may, and rustls still wants more: no
    /// record or message that fits can be in it.
    pub fn is_full(&self) -> bool {
        self.end - self.start >= NET_MOST
    }

    /// One read from `fd` after what is pending: the count read, 0 at EOF.
    /// A full read says more may be waiting. The buffer grows to its full
    /// size after a full read, and beyond it when what is pending fills
    /// it (a large handshake message), up to [`NET_MOST`].
    pub fn fill_from(&mut self, fd: BorrowedFd<'_>) -> Result<usize, Errno> {
        debug_assert!(!self.is_full());
        // What is pending is a partial record, or a handshake message
        // being joined: it must grow contiguously. It moves to the front
        // only when the room after it could not take a full read: a bulk
        // read mostly ends inside a record, and moving that part at every
        // read would copy about as much as the read brought.
        if self.start > 0 && self.buf.len() - self.end < NET_READ {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let size = self.buf.len();
        if self.end == size {
            self.buf.resize((size * 2).clamp(NET_SIZE, NET_MOST), 0);
        } else if self.full_read && size < NET_SIZE {
            self.buf.resize(NET_SIZE, 0);
        }
        // The room beyond one read is for the record a read ends in: a
        // read takes no more than the engine ever read at once. Reads of
        // up to 50 KiB left more of the peer's data waiting in the socket
        // when the application stopped reading, and the linger then
        // lasted as long as the peer kept sending (tlsd_io_hostile's
        // app_exiting_mid_transfer failed at times).
        let room = (self.buf.len() - self.end).min(NET_READ);
        let n = nix::unistd::read(fd, &mut self.buf[self.end..self.end + room])?;
        self.end += n;
        self.full_read = n == room;
        Ok(n)
    }

    pub fn was_full_read(&self) -> bool {
        self.full_read
    }

    /// The whole buffer, as scratch space for input that is discarded.
    pub fn scratch(&mut self) -> &mut [u8] {
        self.start = 0;
        self.end = 0;
        &mut self.buf
    }
}

/// Records to send: `buf[sent..end]` is still to be written.
pub(super) struct OutBuffer {
    buf: Vec<u8>,
    sent: usize,
    end: usize,
}

impl OutBuffer {
    /// Where rustls encodes or encrypts next.
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// rustls put `n` bytes at the start of [`OutBuffer::room`].
    pub fn wrote(&mut self, n: usize) {
        self.end += n;
    }

    /// Makes [`OutBuffer::room`] at least `n` bytes.
    pub fn reserve(&mut self, n: usize) {
        if self.buf.len() - self.end < n {
            self.buf.resize(self.end + n, 0);
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.sent == self.end
    }

    /// `n` bytes of [`OutBuffer::pending`] are on the wire.
    pub fn consume(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.end {
            self.sent = 0;
            self.end = 0;
            // Kept for the next full read only: a handshake flight or an
            // interactive session's records would otherwise stay
            // allocated, and dirty, for the whole session.
            if self.buf.len() < APP_READ {
                self.buf = Vec::new();
            }
        }
    }
}

/// Plaintext the application could not take when it was decrypted:
/// `buf[start..]` is still to be delivered.
pub(super) struct Held {
    buf: Vec<u8>,
    start: usize,
}

impl Held {
    pub fn push(&mut self, plaintext: &[u8]) {
        self.buf.extend_from_slice(plaintext);
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// `n` bytes of [`Held::pending`] are delivered.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.is_empty() {
            self.clear();
        }
    }

    /// Nobody will read it.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn pipe_with(bytes: &[u8]) -> (OwnedFd, OwnedFd) {
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            &r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut left = bytes;
        while !left.is_empty() {
            left = &left[nix::unistd::write(&w, left).unwrap()..];
        }
        (r, w)
    }

    #[test]
    fn network_buffer_starts_small_and_grows_at_a_full_read() {
        let mut net = Buffers::new().net;
        let (r, _w) = pipe_with(&[7; 60 * 1024]);
        assert_eq!(net.fill_from(r.as_fd()).unwrap(), FIRST_READ);
        assert!(net.was_full_read());
        assert_eq!(net.fill_from(r.as_fd()).unwrap(), NET_READ);
        assert!(net.was_full_read());
        assert_eq!(net.buf.len(), NET_SIZE);
    }

    #[test]
    fn a_partial_record_moves_only_when_no_full_read_fits_after_it() {
        let mut net = Buffers::new().net;
        let (r, w) = pipe_with(&[1; FIRST_READ]);
        net.fill_from(r.as_fd()).unwrap();
        let mut more = vec![2; NET_SIZE - FIRST_READ - NET_READ];
        more[..3].copy_from_slice(b"abc");
        nix::unistd::write(&w, &more).unwrap();
        net.fill_from(r.as_fd()).unwrap();
        // A record taken: what follows stays where it is while a full
        // read still fits after it.
        net.consume(FIRST_READ);
        nix::unistd::write(&w, &[3; 10]).unwrap();
        net.fill_from(r.as_fd()).unwrap();
        assert_eq!(net.start, FIRST_READ);
        // Then it moves to the front.
        nix::unistd::write(&w, &[4; 5]).unwrap();
        net.fill_from(r.as_fd()).unwrap();
        assert_eq!(net.start, 0);
        assert_eq!(&net.pending()[..3], b"abc");
        assert_eq!(net.pending().len(), more.len() + 15);
    }

    #[test]
    fn network_buffer_holds_a_large_handshake_message_then_is_full() {
        let mut net = Buffers::new().net;
        let (r, w) = pipe_with(&[]);
        let mut total = 0;
        while !net.is_full() {
            let chunk = vec![5; 16 * 1024];
            nix::unistd::write(&w, &chunk).unwrap();
            while let Ok(n) = net.fill_from(r.as_fd()) {
                total += n;
                if net.is_full() {
                    break;
                }
            }
        }
        assert_eq!(total, NET_MOST);
        assert_eq!(net.pending().len(), NET_MOST);
    }

    #[test]
    fn outgoing_buffer_is_freed_unless_a_full_read_needs_it_again() {
        let mut out = Buffers::new().out;
        out.reserve(3000);
        out.room()[..3000].fill(1);
        out.wrote(3000);
        out.consume(1000);
        assert_eq!(out.pending().len(), 2000);
        out.consume(2000);
        assert!(out.is_empty());
        assert_eq!(out.buf.capacity(), 0);
        out.reserve(APP_READ + 44);
        out.wrote(APP_READ + 44);
        out.consume(APP_READ + 44);
        assert_eq!(out.buf.len(), APP_READ + 44);
    }
}
