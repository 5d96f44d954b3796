//! The engine's two buffers, one per connection: ciphertext read from the
//! network that rustls has not taken yet, and cleartext read from the
//! application on its way into rustls. Each holds at most one read; the
//! tunnel reads again only once it is empty.
//!
//! Both start at one page and grow to their full size at the first read
//! that fills them: an idle or interactive session (SMTP commands, IMAP)
//! then never touches, and so never dirties, the 64 KiB a bulk transfer
//! uses (the three-idle-sessions rows of bench/README.md).

use nix::errno::Errno;
use std::os::fd::BorrowedFd;

/// Bytes read from the network in one call, once grown.
const NET_READ: usize = 32 * 1024;
/// Bytes read from the application in one call, once grown.
const APP_READ: usize = 32 * 1024;
/// What each buffer holds until a read fills it.
const FIRST_READ: usize = 4 * 1024;

pub(super) struct Buffers {
    pub net: NetBuffer,
    pub app: ReadBuffer,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            net: NetBuffer {
                buf: ReadBuffer::new(NET_READ),
                start: 0,
                end: 0,
            },
            app: ReadBuffer::new(APP_READ),
        }
    }
}

/// Room for one read, grown to `full` after a read that filled it.
pub(super) struct ReadBuffer {
    buf: Box<[u8]>,
    full: usize,
    grow: bool,
}

impl ReadBuffer {
    fn new(full: usize) -> Self {
        ReadBuffer {
            buf: vec![0; FIRST_READ.min(full)].into_boxed_slice(),
            full,
            grow: false,
        }
    }

    /// One read from `fd`, replacing what the buffer held: the count read,
    /// 0 at EOF. A full read says more may be waiting.
    pub fn read_from(&mut self, fd: BorrowedFd<'_>) -> Result<usize, Errno> {
        if self.grow {
            self.buf = vec![0; self.full].into_boxed_slice();
            self.grow = false;
        }
        let n = nix::unistd::read(fd, &mut self.buf)?;
        self.grow = n == self.buf.len() && n < self.full;
        Ok(n)
    }

    /// The first `n` bytes, as the last read left them.
    pub fn get(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }

    pub fn is_full_read(&self, n: usize) -> bool {
        n == self.buf.len()
    }
}

/// Ciphertext from the network: `buf[start..end]` is still to be given
/// to rustls.
pub(super) struct NetBuffer {
    buf: ReadBuffer,
    start: usize,
    end: usize,
}

impl NetBuffer {
    pub fn pending(&self) -> &[u8] {
        &self.buf.get(self.end)[self.start..]
    }

    /// rustls took `n` bytes of [`NetBuffer::pending`].
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Forgets what is pending: records after a bad one are not looked at.
    pub fn discard(&mut self) {
        self.start = self.end;
    }

    /// One read from `fd` into the empty buffer: the count read, 0 at EOF.
    /// A full read says more may be waiting.
    pub fn fill_from(&mut self, fd: BorrowedFd<'_>) -> Result<usize, Errno> {
        debug_assert!(self.pending().is_empty());
        self.start = 0;
        self.end = 0;
        self.end = self.buf.read_from(fd)?;
        Ok(self.end)
    }

    pub fn is_full_read(&self, n: usize) -> bool {
        self.buf.is_full_read(n)
    }

    /// The whole buffer, as scratch space for input that is discarded.
    pub fn scratch(&mut self) -> &mut [u8] {
        self.discard();
        &mut self.buf.buf
    }
}
