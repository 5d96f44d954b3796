//! The deadlines of a connection: `-K` (no data from either side for that
//! long) and `--handshake-timeout`, the poll timeout that wakes the loop
//! for the nearest one, and how long the linger after a failure may last.

use crate::cli::error::Fatal;
use crate::cli::opts::Options;
use nix::poll::PollTimeout;
use std::time::{Duration, Instant};

/// The longest linger after a failure: enough for the peer to read the
/// alert and our FIN, too short for a peer to hold the process with it.
const LINGER_AFTER_FAILURE: Duration = Duration::from_secs(2);

pub(super) struct Clock {
    started: Instant,
    last_activity: Instant,
    kimeout: Option<Duration>,
    handshake_timeout: Option<Duration>,
}

fn millis(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms.into()))
}

impl Clock {
    pub fn new(opts: &Options) -> Self {
        let now = Instant::now();
        Clock {
            started: now,
            last_activity: now,
            kimeout: millis(opts.kimeout_ms),
            handshake_timeout: millis(opts.handshake_timeout_ms),
        }
    }

    /// Data moved: the `-K` clock starts again.
    pub fn activity(&mut self) {
        self.last_activity = Instant::now();
    }

    pub fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    fn deadline(&self, handshake_done: bool) -> Option<Instant> {
        let idle = self.kimeout.map(|k| self.last_activity + k);
        let handshake = self
            .handshake_timeout
            .filter(|_| !handshake_done)
            .map(|h| self.started + h);
        idle.into_iter().chain(handshake).min()
    }

    /// How long poll may sleep before the nearest deadline.
    pub fn poll_timeout(&self, handshake_done: bool) -> PollTimeout {
        let Some(deadline) = self.deadline(handshake_done) else {
            return PollTimeout::NONE;
        };
        poll_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// The timeout that has passed, if one has.
    pub fn expired(&self, handshake_done: bool) -> Option<Fatal> {
        let now = Instant::now();
        let stage = if handshake_done { "after" } else { "during" };
        if let Some(k) = self.kimeout.filter(|k| now >= self.last_activity + *k) {
            return Some(Fatal::tls(format!(
                "timed out: no data for {} ms {stage} the handshake",
                k.as_millis()
            )));
        }
        let handshake = self.handshake_timeout.filter(|_| !handshake_done);
        if let Some(h) = handshake.filter(|h| now >= self.started + *h) {
            return Some(Fatal::tls(format!(
                "timed out: handshake not complete after {} ms",
                h.as_millis()
            )));
        }
        None
    }

    /// The linger after a failure: a small fixed bound, never longer than
    /// the user's own timeouts.
    pub fn linger_after_failure(&self) -> Duration {
        [self.kimeout, self.handshake_timeout]
            .into_iter()
            .flatten()
            .fold(LINGER_AFTER_FAILURE, Duration::min)
    }
}

/// A poll timeout of `left`, at least 1 ms.
pub(super) fn poll_timeout(left: Duration) -> PollTimeout {
    // Round up so we never wake a hair before the deadline and spin.
    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms.max(1)).unwrap_or(PollTimeout::MAX)
}
