//! s6-ucspitlsc: UCSPI-TLS for a STARTTLS client, with the client's
//! engine and the network on fds 6/7 (`-6`/`-7`), which prog keeps for
//! its cleartext phase (see [`super::starttls`]).

use super::engine::{NetFds, CLIENT};
use super::starttls;
use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use std::ffi::OsString;

/// Returns only on failure (or when the helper ends without starting
/// TLS, with `Ok`).
pub fn run(opts: &Options, prog: &[OsString], log: &Log) -> Result<(), Fatal> {
    starttls::run(&CLIENT, opts, prog, NetFds::client(opts)?, log)
}
