//! s6-ucspitlsd: UCSPI-TLS for a STARTTLS server, with the server's engine
//! and the network on fds 0/1 (see [`super::starttls`]).

use super::engine::{NetFds, SERVER};
use super::starttls;
use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use std::ffi::OsString;

/// Returns only on failure (or when the helper ends without starting
/// TLS, with `Ok`).
pub fn run(opts: &Options, prog: &[OsString], log: &Log) -> Result<(), Fatal> {
    starttls::run(&SERVER, opts, prog, NetFds::STANDARD, log)
}
