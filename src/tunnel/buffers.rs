//! The engine's two buffers, allocated once per connection: ciphertext
//! read from the network that rustls has not taken yet, and cleartext read
//! from the application on its way into rustls. Each holds at most one
//! read; the tunnel reads again only once it is empty.

use nix::errno::Errno;
use std::os::fd::BorrowedFd;

/// Bytes read from the network in one call.
const NET_READ: usize = 32 * 1024;
/// Bytes read from the application in one call.
const APP_READ: usize = 32 * 1024;

pub(super) struct Buffers {
    pub net: NetBuffer,
    pub app: Box<[u8]>,
}

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            net: NetBuffer {
                buf: vec![0; NET_READ].into_boxed_slice(),
                start: 0,
                end: 0,
            },
            app: vec![0; APP_READ].into_boxed_slice(),
        }
    }
}

/// Ciphertext from the network: `buf[start..end]` is still to be given
/// to rustls.
pub(super) struct NetBuffer {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl NetBuffer {
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
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
        let n = nix::unistd::read(fd, &mut self.buf)?;
        self.start = 0;
        self.end = n;
        Ok(n)
    }

    pub fn is_full_read(&self, n: usize) -> bool {
        n == self.buf.len()
    }

    /// The whole buffer, as scratch space for input that is discarded.
    pub fn scratch(&mut self) -> &mut [u8] {
        self.discard();
        &mut self.buf
    }
}
